"""The process boundary: the bot never loads torch & co., the engine never loads discord.

Checked twice: statically, over every import statement, and at run time, by importing every
module of a package in a fresh interpreter and looking at what got loaded (which also catches
an import reached through another module).
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "bot": {"torch", "diffusers", "transformers", "accelerate"},
    "engine": {"discord"},
}


def _imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_forbidden_import_statements(package):
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imported_roots(path) & FORBIDDEN[package])
        for path in sorted((ROOT / package).rglob("*.py"))
    }
    assert {k: v for k, v in offenders.items() if v} == {}


_PROBE = """
import importlib, json, pkgutil, sys
package = importlib.import_module(sys.argv[1])
for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
    if info.name.endswith("__main__"):
        continue  # running it would start the program
    importlib.import_module(info.name)
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_importing_every_module_loads_nothing_forbidden(package):
    loaded = subprocess.run(
        [sys.executable, "-c", _PROBE, package],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert set(json.loads(loaded.stdout)) & FORBIDDEN[package] == set()


_EACH_FIRST = """
import importlib, pkgutil, sys
names = []
for root in ("bot", "engine"):
    package = importlib.import_module(root)
    names += [i.name for i in pkgutil.walk_packages(package.__path__, root + ".")]
failed = []
for name in names:
    if name.endswith("__main__"):
        continue
    for loaded in [m for m in sys.modules if m.split(".")[0] in ("bot", "engine")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except ImportError as error:
        failed.append(f"{name}: {error}")
print("\\n".join(failed))
"""


def test_every_module_imports_when_imported_first():
    """An import cycle shows only when one of its modules is imported first."""
    result = subprocess.run(
        [sys.executable, "-c", _EACH_FIRST],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    assert result.stdout.strip() == ""

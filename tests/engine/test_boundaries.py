"""The engine's import lines.

The engine never imports discord or the bot; the protocol imports only the standard library.
Inside the engine, dependencies point one way: the loop (``worker``, ``process``, ``cli``) ->
the runners (``run/``) -> the tasks (``tasks/``) -> the model and image helpers and the
protocol. Imports under ``if TYPE_CHECKING:`` count too: a type-only import back up the
layers is still a circle a reader has to follow.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parents[2] / "engine"
LOOP = ("engine.worker", "engine.process", "engine.cli", "engine.__main__")
# For each folder of the engine, the modules it must never import.
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "run": LOOP,
    "tasks": (*LOOP, "engine.run"),
    "models": (*LOOP, "engine.run", "engine.tasks"),
    "images": (*LOOP, "engine.run", "engine.tasks"),
}


def imported_roots(path: Path) -> set[str]:
    return {name.split(".")[0] for name in imported_modules(path)}


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, by its full dotted name (``from a import b`` gives both
    ``a`` and ``a.b``, since ``b`` may be a module)."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            raise AssertionError(f"{path}: use absolute imports, so the layers stay readable")
    return modules


def crossings(folder: str) -> list[str]:
    """Imports from ``engine/<folder>`` that point back up the layers."""
    found = []
    for path in sorted((ENGINE / folder).rglob("*.py")):
        for module in sorted(imported_modules(path)):
            if any(module == f or module.startswith(f + ".") for f in FORBIDDEN[folder]):
                found.append(f"{path.relative_to(ENGINE.parent)} imports {module}")
    return found


def test_engine_does_not_import_discord_or_the_bot() -> None:
    for path in ENGINE.rglob("*.py"):
        assert not imported_roots(path) & {"discord", "bot"}, path


@pytest.mark.parametrize("module", ["protocol.py", "prompt_syntax.py", "load_rules.py"])
def test_what_the_bot_imports_stays_import_light(module: str) -> None:
    modules = imported_modules(ENGINE / module) - {"__future__", "engine", "engine.protocol"}
    roots = {name.split(".")[0] for name in modules if not name.startswith("engine.protocol.")}
    assert roots <= set(sys.stdlib_module_names), roots


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_engine_dependencies_point_one_way(folder: str) -> None:
    assert crossings(folder) == []


def test_a_crossing_is_seen_in_every_spelling(tmp_path: Path) -> None:
    source = tmp_path / "module.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "from engine import worker\n"
        "if TYPE_CHECKING:\n"
        "    import engine.run.plain\n",
        encoding="utf-8",
    )
    assert {"engine.worker", "engine.run.plain"} <= imported_modules(source)

"""The engine never imports discord or the bot; the protocol imports only the standard library."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[2] / "engine"


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_engine_does_not_import_discord_or_the_bot() -> None:
    for path in ENGINE.rglob("*.py"):
        assert not imported_roots(path) & {"discord", "bot"}, path


def test_the_protocol_stays_import_light() -> None:
    roots = imported_roots(ENGINE / "protocol.py") - {"__future__"}
    assert roots <= set(sys.stdlib_module_names), roots

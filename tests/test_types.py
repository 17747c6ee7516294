"""mypy is part of the test command, like ruff: a type error fails the suite.

Its settings are ``[tool.mypy]`` in pyproject.toml (strict on the contract and the job
pipeline). Its cache in ``.mypy_cache`` makes a second run take seconds.
"""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# An ignore names its error codes, then says why in a comment of its own.
EXPLAINED_IGNORE = re.compile(r"# type: ignore\[[a-z0-9-]+(, *[a-z0-9-]+)*\]  # \S")


def checked_files() -> list[Path]:
    """The Python files mypy checks: what ``files`` in ``[tool.mypy]`` names."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    found: list[Path] = []
    for entry in config["tool"]["mypy"]["files"]:
        path = ROOT / entry
        found.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return found


@pytest.mark.timeout(600)  # a first run, without a cache, reads torch's and discord.py's types
def test_mypy() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=590,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_type_ignore_names_its_error_and_says_why() -> None:
    unexplained = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in checked_files()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if "type: ignore" in line and not EXPLAINED_IGNORE.search(line)
    ]
    assert unexplained == [], "\n".join(unexplained)

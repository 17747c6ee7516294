"""`python -m bot` start-up behaviour, run as a real process."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_bot(tmp_path: Path, env_file: str) -> subprocess.CompletedProcess[str]:
    # A .env of our own in an empty working folder: the developer's real .env is not read.
    (tmp_path / ".env").write_text(env_file)
    return subprocess.run(
        [sys.executable, "-m", "bot"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_missing_token_is_one_clear_line_and_exit_2(tmp_path):
    result = run_bot(tmp_path, "DISCORD_TOKEN=\n")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "DISCORD_TOKEN" in lines[0] and ".env" in lines[0]
    assert result.stdout == ""


def test_bad_setting_is_one_clear_line_and_exit_2(tmp_path):
    result = run_bot(tmp_path, "DISCORD_TOKEN=abc\nLIMITS_IMAGES_PER_HOUR=lots\n")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "LIMITS_IMAGES_PER_HOUR is not valid: Input should be a valid integer, unable to parse "
        "string as an integer. Fix it in .env (see .env.example)."
    ]


def test_with_a_token_the_database_is_migrated_before_connecting(tmp_path):
    import socket
    import sqlite3

    # A port nobody listens on stands in for an unreachable Discord.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = run_bot(
        tmp_path,
        "DISCORD_TOKEN=not-a-real-token\n"
        f"DISCORD_API_BASE_URL=http://127.0.0.1:{port}/api/v10\n"
        f"DATABASE_URL=sqlite+aiosqlite:///{tmp_path / 'data' / 'bot.db'}\n",
    )
    assert result.returncode == 2, result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"Could not reach Discord at http://127.0.0.1:{port}/api/v10")
    assert "Traceback" not in result.stderr
    assert "not-a-real-token" not in result.stderr + result.stdout
    with sqlite3.connect(tmp_path / "data" / "bot.db") as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert {"jobs", "users", "models", "alembic_version"} <= tables


def test_an_unreachable_ray_cluster_is_one_line_naming_ray_address_and_exit_2(tmp_path):
    import socket

    with socket.socket() as probe:  # a port nobody listens on: no cluster there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = run_bot(
        tmp_path,
        "DISCORD_TOKEN=not-a-real-token\n"
        "ENGINE_BACKEND=ray\n"
        f"RAY_ADDRESS=127.0.0.1:{port}\n"
        f"DATABASE_URL=sqlite+aiosqlite:///{tmp_path / 'bot.db'}\n",
    )
    assert result.returncode == 2, result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"Could not reach the Ray cluster at RAY_ADDRESS=127.0.0.1:{port}")
    assert "ray start --head" in last_line
    assert "Traceback" not in result.stderr


def test_a_database_that_cannot_be_migrated_is_one_clear_line_and_exit_2(tmp_path):
    """Migration runs in a child process (bot.store.migrate); its failure must still reach
    the person starting the bot as one line, not as the child's traceback at the end."""
    folder = tmp_path / "data"
    folder.mkdir()  # a folder where the database file should be: SQLite cannot open it
    result = run_bot(
        tmp_path, f"DISCORD_TOKEN=not-a-real-token\nDATABASE_URL=sqlite+aiosqlite:///{folder}\n"
    )
    assert result.returncode == 2, result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"Could not migrate the database at sqlite+aiosqlite:///{folder}: ")
    assert "unable to open database file" in last_line

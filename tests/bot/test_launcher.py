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

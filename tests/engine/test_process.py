"""The engine process keeps its frame stream clean of whatever libraries print."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from engine.protocol import Ready, read_message

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import os, sys
from engine.process import FrameWriter, _claim_stdout
from engine.protocol import Ready
writer = FrameWriter(_claim_stdout())
print("a stray print")
os.write(1, b"a stray write to descriptor 1\\n")
writer.write(Ready(device="cpu", dtype="float32", pid=os.getpid()))
writer.close()
"""


def test_stray_output_goes_to_stderr_and_frames_stay_whole() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD], cwd=ROOT, capture_output=True, timeout=60, check=True
    )
    stream = io.BytesIO(done.stdout)
    message = read_message(stream)
    assert isinstance(message, Ready) and message.device == "cpu"
    assert read_message(stream) is None
    assert b"a stray print" in done.stderr
    assert b"a stray write to descriptor 1" in done.stderr

"""Every benchmark script runs in its quick or toy mode, so none of them can rot.

Each runs as its own process, as a person would run it, with a bound on its time; the figures
are not checked (CI machines are noisy), only that the script finishes and prints them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Generous against a busy 2-core machine; on a quiet one each takes seconds.
LIMIT_S = 240
QUIET_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    # One OpenMP thread per process (the engine's child too): spinning threads slow down by
    # orders of magnitude when a shared CI machine's cores are busy, and figures are not checked.
    "OMP_NUM_THREADS": "1",
}

SCRIPTS = {
    "bench_gpu.py": (["--toy"], ["images/s (ratio to plain in the same run)", "compile"]),
    "bench_ack_latency.py": (
        ["--quick"],
        ["first answer (deferral)", "20 answered, 20 deferred", "every result posted"],
    ),
    "bench_bot_throughput.py": (
        ["--quick"],
        ["(40 images", "bot CPU per job", "statements", "edits (PATCH)", "RSS peak"],
    ),
    "bench_bot_memory.py": (
        ["--quick"],
        ["after import bot.app", "torch, diffusers, transformers in the bot at the end: none"],
    ),
    "bench_batching.py": (
        ["--jobs", "2", "--steps", "1", "--repeats", "1"],
        ["identical images either way: yes"],
    ),
    "bench_engine_overhead.py": (
        ["--steps", "1", "--repeats", "1"],
        [
            "engine without checker over the bare call:",
            "engine over the bare call with checker:",
            "engine over the bare call:",
            "starts: ",
            "fastest runs",
        ],
    ),
    "bench_pipeline_copies.py": (
        ["--size", "64", "--steps", "1", "--turns", "1"],
        ["copy B against copy A"],
    ),
    "bench_png_encode.py": (["--size", "64", "--repeats", "1"], ["faster than level 6"]),
    "bench_second_opinion.py": (
        ["--size", "64", "--repeats", "1"],
        ["second opinion adds per flagged image"],
    ),
    "bench_scale_out.py": (
        ["--jobs", "4", "--steps", "1", "--size", "64", "--pairs", "2", "--rounds", "1"],
        ["2 Ray replicas against 1", "per-batch overhead of Ray over the local pipe"],
    ),
}
NEEDS_RAY = {"bench_scale_out.py"}  # skipped where the [ray] extra is not installed


@pytest.mark.timeout(LIMIT_S + 30)
@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_bench_script_runs_and_prints_its_figures(script: str) -> None:
    arguments, expected = SCRIPTS[script]
    if script in NEEDS_RAY:
        pytest.importorskip("ray")
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *arguments],
        cwd=ROOT,
        env={**os.environ, **QUIET_ENV},
        capture_output=True,
        text=True,
        timeout=LIMIT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for line in expected:
        assert line in done.stdout, done.stdout

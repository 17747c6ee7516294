"""bench/gpu_check.sh: its summary reads what its phases print, and its toy run finishes.

The real run needs a CUDA machine; the toy run (GPU_CHECK_TOY=1) goes through every phase on
the CPU with toy shapes, so a change to the engine's or the bot's interfaces that the check
uses fails here rather than on a lent GPU.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import gpu_check

ROOT = Path(__file__).resolve().parents[2]
TOY_LIMIT_S = 420

LOG = """\
[   3s]   NVIDIA H200: bf16 matmul 781 TFLOP/s
[  40s]   plain diffusers b=1 :   3.10 img/s (0.323 s per call, VAE and PIL included), peak alloc 3.1 GiB
[  52s]   plain diffusers b=16:   9.80 img/s (1.633 s per call, VAE and PIL included), peak alloc 9.9 GiB
[  70s]   engine off: load + warm-up 6.2 s (loaded sd15-random); GPU util mean 3%, memory used peak 4000 MiB
[  75s]   engine off: batch-1 latency 0.420 s (median of 3 after one warm, first 0.90 s), 30 steps 512x512
[ 110s]   engine off: queue of 64 jobs (128 images, 16 users) in 20.0 s = 6.40 img/s, 1 batch(es) in flight; batch sizes {16: 8}; GPU util mean 91%, memory used peak 21000 MiB
[ 300s]   engine on: load + warm-up 150.0 s (loaded sd15-random); GPU util mean 40%, memory used peak 9000 MiB
[ 330s]   engine on: queue of 64 jobs (128 images, 16 users) in 12.8 s = 10.00 img/s, 2 batch(es) in flight; batch sizes {16: 8}; GPU util mean 98%, memory used peak 25000 MiB
"""  # noqa: E501 - the phases' own lines


def test_the_summary_reads_every_figure_the_phases_print(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "gpu_check.log"
    log.write_text(LOG)
    gpu_check.summary(log)
    rows = [line.strip() for line in capsys.readouterr().out.splitlines() if line[:2] == "  "]
    table = dict(re.split(r"\s{2,}", row, maxsplit=1) for row in rows)
    assert table["bf16 matmul"] == "781 TFLOP/s"
    assert table["plain diffusers b=1"] == "3.10 img/s, peak 3.1 GiB"
    assert table["plain diffusers b=16"] == "9.80 img/s, peak 9.9 GiB"
    assert table["plain diffusers b=4"] == "(not measured)"
    assert table["engine, fast path off: load + warm-up"] == "6.2 s"
    assert table["engine, fast path off: batch-1 latency"] == "0.420 s"
    assert table["engine, fast path off: mixed queue, 1 in flight"] == (
        "6.40 img/s; GPU util mean 91%, memory used peak 21000 MiB"
    )
    assert table["engine, fast path on: load + warm-up"] == "150.0 s"
    assert table["engine, fast path on: batch-1 latency"] == "(not measured)"
    assert table["engine, fast path on: mixed queue, 2 in flight"] == (
        "10.00 img/s; GPU util mean 98%, memory used peak 25000 MiB"
    )


def test_the_engine_settings_turn_the_whole_fast_path_off_or_on() -> None:
    off, on = gpu_check.engine_env(fast=False), gpu_check.engine_env(fast=True)
    switches = ("CHANNELS_LAST", "CUDNN_BENCHMARK", "COMPILE_UNET", "COMPILE_VAE")
    assert {off[f"ENGINE_{s}"] for s in switches} == {"false"}
    assert {on[f"ENGINE_{s}"] for s in switches} == {"true"}
    # The warm-up is measured as the load's time, so it must not run in the background.
    assert on["ENGINE_COMPILE_IN_BACKGROUND"] == "false"


@pytest.mark.timeout(TOY_LIMIT_S + 30)
@pytest.mark.skipif(shutil.which("timeout") is None, reason="needs coreutils' timeout")
def test_the_toy_run_goes_through_every_phase(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "GPU_CHECK_TOY": "1",
        "PY": sys.executable,
        "OUT": str(tmp_path / "out"),
        "WORK": str(tmp_path / "work"),
        "TOTAL_BUDGET": str(TOY_LIMIT_S - 20),
    }
    done = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_check.sh")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TOY_LIMIT_S,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    endings = dict(re.findall(r"\] (P\d) [^\n]*: rc=(\d+)", out))
    assert endings == {f"P{n}": "0" for n in range(5)}, out[-3000:]
    summary = out[out.index("SUMMARY") :]
    for row in ("plain diffusers b=1", "fast path off: mixed queue, 1 in flight"):
        line = next(line for line in summary.splitlines() if row in line)
        assert "not measured" not in line, summary
    assert "fast path on: mixed queue, 2 in flight" in summary
    # With the fast path on, batches are cut to the compiled buckets' image counts (1 and 2 in
    # the toy run, whose largest batch is 4), as the bot's SCHEDULER_PREFERRED_BATCH_SIZES
    # cuts them; with it off they are as full as the queue makes them.
    for sizes in re.findall(r"engine on: queue [^\n]* batch sizes \{([^}]*)\}", out):
        assert {int(size.split(":")[0]) for size in sizes.split(",")} <= {1, 2}, sizes
    assert re.search(r"engine on: queue [^\n]* batch sizes", out), out[-3000:]
    assert (tmp_path / "out" / "gpu_check.log").read_text().count("SUMMARY") == 1

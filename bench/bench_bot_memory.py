"""Resident memory of the bot process against the engine process, side by side.

The bot must stay small and never load torch: it imports only ``engine.protocol`` from the
engine package. This runs the real bot in a fresh child interpreter (so that nothing this
script imports counts) and reads ``VmRSS`` and ``VmHWM`` (peak) from ``/proc``:

1. at interpreter start, and after ``import bot.app`` (the bot's whole import graph);
2. connected to the Discord stub with the real engine process ready and the model loaded
   (``bench/bot_on_stub.py``), for both processes;
3. after a burst of jobs, for both processes; and whether torch, diffusers or transformers
   were imported by the bot at any point.

The Discord stub runs in its own process, so it does not count as the bot's. The engine runs
the tiny test models on the CPU: with real weights its figure grows by the weights (about
2 GB for SD 1.5 in fp16), the bot's does not.

    python bench/bench_bot_memory.py --jobs 20
    python bench/bench_bot_memory.py --quick   # the bot alone, on the instant engine (CI)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "diffusers", "transformers")


def memory_mb(pid: int | str = "self") -> tuple[float, float]:
    """(resident, peak resident) in MiB, from /proc/<pid>/status."""
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024  # kB
    return fields["VmRSS"], fields["VmHWM"]


def heavy_modules() -> list[str]:
    return [name for name in HEAVY if name in sys.modules]


def child(models: Path | None, jobs: int) -> None:
    """The measured process: prints one JSON object. ``models`` None: the instant engine."""
    figures: dict[str, Any] = {"start": memory_mb()}
    sys.path.insert(0, str(ROOT))
    import bot.app  # noqa: F401 - the bot's whole import graph

    figures["import"] = memory_mb()
    figures["modules"] = len(sys.modules)
    figures["heavy_after_import"] = heavy_modules()

    import asyncio

    from bench.bot_on_stub import InstantEngine, bot_on_stub, burst
    from tests.fixtures.tiny_models import TinyModels

    folder = models or Path("unused")
    tiny = TinyModels(
        text_to_image=folder / "tiny-sd",
        inpainting=folder / "tiny-sd-inpainting",
        safety_checker_never=folder / "tiny-safety-never",
        safety_checker_always=folder / "tiny-safety-always",
    )
    engine = None if models else InstantEngine

    async def run() -> None:
        with tempfile.TemporaryDirectory() as scratch:
            running = bot_on_stub(
                Path(scratch), tiny, max_queued_jobs=jobs, batch_images=4, engine=engine
            )
            async with running as (stub, bot):
                engine_pid = getattr(bot.engine, "pid", None) if models else None
                figures["ready"] = memory_mb()
                figures["engine_ready"] = memory_mb(engine_pid) if engine_pid else None
                await burst(stub, jobs, users=10)
                figures["after_jobs"] = memory_mb()
                figures["engine_after_jobs"] = memory_mb(engine_pid) if engine_pid else None

    asyncio.run(run())
    figures["heavy_at_end"] = heavy_modules()
    print(json.dumps(figures))


def measure_in_child(models: Path | None, jobs: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--jobs", str(jobs), "--child"]
    command.append(str(models) if models else "")
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"the measured bot failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=20, help="/imagine commands in the burst")
    parser.add_argument("--quick", action="store_true", help="5 jobs, instant engine")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(Path(args.child) if args.child else None, args.jobs)
        return
    if args.quick:
        report(measure_in_child(None, 5), 5)
        return
    with tempfile.TemporaryDirectory() as scratch:
        # Built in this process: the measured one must not import torch to build them.
        sys.path.insert(0, str(ROOT))
        from tests.fixtures.tiny_models import build_tiny_models

        models = build_tiny_models(Path(scratch))
        figures = measure_in_child(models.text_to_image.parent, args.jobs)
    report(figures, args.jobs)


def report(figures: dict[str, Any], jobs: int) -> None:
    def mb(key: str) -> str:
        if figures[key] is None:
            return "(instant engine: no model, not measured)"
        resident, peak = figures[key]
        return f"{resident:7.1f} MiB (peak {peak:7.1f})"

    heavy_at_import = ", ".join(figures["heavy_after_import"]) or "none"
    print("resident memory (VmRSS), MiB")
    print(f"bot, interpreter start       : {mb('start')}")
    print(f"bot, after import bot.app    : {mb('import')}")
    print(f"  {figures['modules']} modules; torch, diffusers, transformers: {heavy_at_import}")
    print(f"bot, engine ready            : {mb('ready')}   engine: {mb('engine_ready')}")
    print(f"bot, after {jobs:3d} jobs          : {mb('after_jobs')}", end="")
    print(f"   engine: {mb('engine_after_jobs')}")
    heavy = ", ".join(figures["heavy_at_end"]) or "none"
    print(f"torch, diffusers, transformers in the bot at the end: {heavy}")
    if figures["engine_after_jobs"] is not None:
        bot_mb, engine_mb = figures["after_jobs"][0], figures["engine_after_jobs"][0]
        print(f"engine / bot resident memory : {engine_mb / bot_mb:.1f}x")
    if figures["heavy_at_end"]:
        sys.exit("the bot process imported torch, diffusers or transformers")


if __name__ == "__main__":
    main()

"""What the engine process adds to one job, against the same bare diffusers call.

The engine path is the bot's: ``EngineClient.run_batch`` to the ``Result`` event, through the
framed pipes, checks, safety checker and PNG encoding. The bare path is ``pipeline(...)`` in
this process, with the CPU kernels the engine picks (its batch-invariant convolutions), so the
two differ only by what the engine adds. Both are loaded and warmed up first.

Three calls run in turns (bare, bare with checker, engine, bare, ...) and every engine run is
divided by the bare runs of its own turn: a change in the machine's load (other processes on
shared cores) then moves both sides of a ratio alike instead of masquerading as overhead. The
figures are the medians of those ratios. Both processes use ``--threads`` CPU threads (one by
default: on a shared machine, spinning OpenMP threads make single runs vary tenfold). Without
``--model`` the tiny test models are built in a temporary folder:

    python bench/bench_engine_overhead.py --steps 10 --size 64 --repeats 15

The engine runs its safety checker on every image. There are two bare calls to hold it
against: the pipeline without a checker, and the pipeline with the checker a plain Stable
Diffusion pipeline runs by default (the engine's checker folder, run by the pipeline's own
code), which is what a bot calling diffusers directly would run. Both figures are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.jobs.engine_client import EngineClient
from engine.protocol import JobError, JobKind, JobSpec, ModelRef, Result

PROMPT = "a photo of a cat"


def bare_call(
    source: str, args: argparse.Namespace, checker: str | None = None
) -> Callable[[int], None]:
    """One plain diffusers call per seed, with the engine's scheduler and CPU kernels; with the
    safety checker in folder ``checker`` when given, run by the pipeline itself."""
    import torch
    from diffusers import AutoPipelineForText2Image, EulerDiscreteScheduler
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPImageProcessor

    from engine.models.invariance import sample_by_sample_cpu_convolutions
    from engine.settings import SAFETENSORS_ONLY

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.float16 if device == "cuda" else torch.float32
    safety: dict[str, Any] = {"safety_checker": None, "requires_safety_checker": False}
    if checker is not None:
        safety = {
            "safety_checker": StableDiffusionSafetyChecker.from_pretrained(checker, dtype=dtype),
            "feature_extractor": CLIPImageProcessor.from_pretrained(checker),
        }
    pipe = AutoPipelineForText2Image.from_pretrained(
        source, dtype=dtype, **safety, **SAFETENSORS_ONLY
    ).to(device)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)

    def call(seed: int) -> None:
        kernels: Any = (
            sample_by_sample_cpu_convolutions() if device == "cpu" else contextlib.nullcontext()
        )
        with kernels, torch.inference_mode():
            pipe(
                PROMPT,
                num_inference_steps=args.steps,
                width=args.size,
                height=args.size,
                generator=torch.Generator().manual_seed(seed),
            )
        if device == "cuda":
            torch.cuda.synchronize()

    return call


async def engine_call(client: EngineClient, model: ModelRef, args: argparse.Namespace, seed: int):  # type: ignore[no-untyped-def]
    """One job through the engine process, from ``run_batch`` to its ``Result``."""
    spec = JobSpec(
        job_id=seed,
        kind=JobKind.TEXT_TO_IMAGE,
        model=model,
        prompt=PROMPT,
        seeds=(seed,),
        steps=args.steps,
        width=args.size,
        height=args.size,
        preview=False,
    )
    await client.run_batch([spec])
    while True:
        event = await client.events.get()
        if isinstance(event, JobError):
            raise SystemExit(f"engine error: {event.message}")
        if isinstance(event, Result) and event.job_id == seed:
            return


async def interleaved(
    source: str, env: dict[str, str], args: argparse.Namespace
) -> tuple[list[float], list[float], list[float]]:
    """Times of the bare, bare-with-checker and engine runs, taken in turns after one warm-up
    turn."""
    from engine.settings import DEFAULT_SAFETY_CHECKER

    bare = bare_call(source, args)
    checked = bare_call(source, args, env.get("ENGINE_SAFETY_CHECKER", DEFAULT_SAFETY_CHECKER))
    client = EngineClient(env=env)
    await client.start()
    model = ModelRef(name=Path(source).name, source=source)
    times: tuple[list[float], list[float], list[float]] = ([], [], [])
    try:
        for seed in range(args.repeats + 1):
            turn = []
            for call in (bare, checked):
                started = time.perf_counter()
                call(seed)
                turn.append(time.perf_counter() - started)
            started = time.perf_counter()
            await engine_call(client, model, args, seed)
            turn.append(time.perf_counter() - started)
            if seed:  # the first turn warms up (model load, checker load, first kernels)
                for kept, value in zip(times, turn, strict=True):
                    kept.append(value)
    finally:
        await client.stop()
    return times


def report(name: str, bare: list[float], engine: list[float]) -> None:
    """The engine against one of the bare calls: the median of the turns' ratios, and the
    fastest engine run against the fastest bare one.

    On a shared machine a single run can take half as long again as the next one; the
    fastest runs are the ones the least disturbed (``timeit``'s reasoning), so the second
    figure is the overhead with most of that noise left out.
    """
    ratios = [e / b for b, e in zip(bare, engine, strict=True)]
    overheads_ms = [(e - b) * 1000 for b, e in zip(bare, engine, strict=True)]
    print(
        f"over the {name:<28}: {statistics.median(overheads_ms):6.1f} ms, "
        f"ratio {statistics.median(ratios):.3f}x (turns from {min(ratios):.3f}x "
        f"to {max(ratios):.3f}x); fastest runs: {(min(engine) - min(bare)) * 1000:.1f} ms, "
        f"{min(engine) / min(bare):.3f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--model", default=None, help="id or folder; default: tiny test model")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads in each process")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        env: dict[str, str] = {
            "ENGINE_PROGRESS_INTERVAL_S": "0.5",
            "OMP_NUM_THREADS": str(args.threads),
        }
        if args.model is None:
            from tests.fixtures.tiny_models import build_tiny_models

            tiny = build_tiny_models(Path(scratch))
            source = str(tiny.text_to_image)
            env.update(ENGINE_OFFLINE="true", ENGINE_SAFETY_CHECKER=str(tiny.safety_checker_never))
        else:
            source = args.model
        bare, checked, engine = asyncio.run(interleaved(source, env, args))

    print(
        f"one {args.size}x{args.size} image, {args.steps} steps, {len(engine)} turns "
        f"(bare, bare with checker, engine, ...), {args.threads} thread(s) per process"
    )
    for name, times in (
        ("bare call", bare),
        ("bare call with checker", checked),
        ("engine", engine),
    ):
        median, fastest = statistics.median(times) * 1000, min(times) * 1000
        print(f"{name:<28}: median {median:8.1f} ms, fastest {fastest:8.1f} ms")
    report("bare call", bare, engine)
    report("bare call with checker", checked, engine)


if __name__ == "__main__":
    main()

"""What the engine process adds to one job, against the same bare diffusers call.

The engine path is the bot's: ``EngineClient.run_batch`` to the ``Result`` event, through the
framed pipes, checks, safety checker and PNG encoding. The bare path is ``pipeline(...)`` in
this process, with the CPU kernels the engine picks (its batch-invariant convolutions), so the
two differ only by what the engine adds. Both are loaded and warmed up first.

The two paths run in turns (bare, engine, bare, engine, ...) and every engine run is divided by
the bare run just before it: a change in the machine's load (other processes on shared cores)
then moves both sides of a ratio alike instead of masquerading as overhead. The figure is the
median of those ratios. Both processes use ``--threads`` CPU threads (one by default: on a
shared machine, spinning OpenMP threads make single runs vary tenfold). Without ``--model`` the
tiny test models are built in a temporary folder:

    python bench/bench_engine_overhead.py --steps 10 --size 64 --repeats 15

The headline figure's bare call runs no safety checker, while the engine runs its own on every
image. ``--bare-safety-checker`` gives the bare call the checker a plain Stable Diffusion
pipeline runs by default (the engine's checker, the pipeline's own code), for a second figure.
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
) -> tuple[list[float], list[float]]:
    """Times of bare and engine runs, taken in turns after one warm-up run of each."""
    from engine.settings import DEFAULT_SAFETY_CHECKER

    checker = None
    if args.bare_safety_checker:
        checker = env.get("ENGINE_SAFETY_CHECKER", DEFAULT_SAFETY_CHECKER)
    bare = bare_call(source, args, checker)
    client = EngineClient(env=env)
    await client.start()
    model = ModelRef(name=Path(source).name, source=source)
    bare_s: list[float] = []
    engine_s: list[float] = []
    try:
        for seed in range(args.repeats + 1):
            started = time.perf_counter()
            bare(seed)
            bare_time = time.perf_counter() - started
            started = time.perf_counter()
            await engine_call(client, model, args, seed)
            engine_time = time.perf_counter() - started
            if seed:  # the first pair warms up (model load, checker load, first kernels)
                bare_s.append(bare_time)
                engine_s.append(engine_time)
    finally:
        await client.stop()
    return bare_s, engine_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--model", default=None, help="id or folder; default: tiny test model")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads in each process")
    parser.add_argument(
        "--bare-safety-checker",
        action="store_true",
        help="the bare call runs the engine's safety checker too, as a plain SD pipeline does",
    )
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
        bare, engine = asyncio.run(interleaved(source, env, args))

    ratios = [e / b for b, e in zip(bare, engine, strict=True)]
    overheads_ms = [(e - b) * 1000 for b, e in zip(bare, engine, strict=True)]
    bare_ms, engine_ms = statistics.median(bare) * 1000, statistics.median(engine) * 1000
    print(
        f"one {args.size}x{args.size} image, {args.steps} steps, {len(ratios)} interleaved pairs "
        f"(bare, engine, bare, engine, ...), {args.threads} thread(s) per process"
    )
    if args.bare_safety_checker:
        print("the bare call runs the safety checker too (not the headline figure)")
    print(f"bare diffusers call, the engine's kernels: median {bare_ms:8.1f} ms")
    print(f"through the engine process               : median {engine_ms:8.1f} ms")
    print(
        f"engine overhead, median of pairs         : {statistics.median(overheads_ms):8.1f} ms, "
        f"ratio {statistics.median(ratios):.3f}x (pairs from {min(ratios):.3f}x "
        f"to {max(ratios):.3f}x)"
    )


if __name__ == "__main__":
    main()

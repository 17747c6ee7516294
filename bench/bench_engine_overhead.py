"""What the engine process adds to one job, against the same bare diffusers call.

The engine path is the bot's: ``EngineClient.run_batch`` to the ``Result`` event, through the
framed pipes, checks, safety checker and PNG encoding. The bare path is ``pipeline(...)`` in
this process. Both are warmed up first (model loaded). Without ``--model`` the tiny test models
are built in a temporary folder:

    python bench/bench_engine_overhead.py --steps 10 --size 64
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.jobs.engine_client import EngineClient
from engine.protocol import JobError, JobKind, JobSpec, ModelRef, Result


def bare_seconds(source: str, args: argparse.Namespace, engine_kernels: bool) -> list[float]:
    """Times of the plain call; ``engine_kernels``: with the CPU kernels the engine picks."""
    import contextlib

    import torch
    from diffusers import AutoPipelineForText2Image, EulerDiscreteScheduler

    from engine.models.invariance import sample_by_sample_cpu_convolutions
    from engine.settings import SAFETENSORS_ONLY

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.float16 if device == "cuda" else torch.float32
    pipe = AutoPipelineForText2Image.from_pretrained(
        source, dtype=dtype, safety_checker=None, requires_safety_checker=False, **SAFETENSORS_ONLY
    ).to(device)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    times = []
    for i in range(args.repeats + 1):
        kernels = (
            sample_by_sample_cpu_convolutions()
            if engine_kernels and device == "cpu"
            else contextlib.nullcontext()
        )
        started = time.perf_counter()
        with kernels:
            pipe(
                "a photo of a cat",
                num_inference_steps=args.steps,
                width=args.size,
                height=args.size,
                generator=torch.Generator().manual_seed(i),
            )
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return times[1:]  # the first call warms up


async def engine_seconds(source: str, env: dict[str, str], args: argparse.Namespace) -> list[float]:
    client = EngineClient(env=env)
    await client.start()
    model = ModelRef(name=Path(source).name, source=source)
    times = []
    try:
        for i in range(args.repeats + 1):
            spec = JobSpec(
                job_id=i,
                kind=JobKind.TEXT_TO_IMAGE,
                model=model,
                prompt="a photo of a cat",
                seeds=(i,),
                steps=args.steps,
                width=args.size,
                height=args.size,
                preview=False,
            )
            started = time.perf_counter()
            await client.run_batch([spec])
            while True:
                event = await client.events.get()
                if isinstance(event, JobError):
                    raise SystemExit(f"engine error: {event.message}")
                if isinstance(event, Result) and event.job_id == i:
                    break
            times.append(time.perf_counter() - started)
    finally:
        await client.stop()
    return times[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", default=None, help="id or folder; default: tiny test model")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        env: dict[str, str] = {"ENGINE_PROGRESS_INTERVAL_S": "0.5"}
        if args.model is None:
            from tests.fixtures.tiny_models import build_tiny_models

            tiny = build_tiny_models(Path(scratch))
            source = str(tiny.text_to_image)
            env.update(ENGINE_OFFLINE="true", ENGINE_SAFETY_CHECKER=str(tiny.safety_checker_never))
        else:
            source = args.model
        default = statistics.median(bare_seconds(source, args, engine_kernels=False))
        bare = statistics.median(bare_seconds(source, args, engine_kernels=True))
        engine = statistics.median(asyncio.run(engine_seconds(source, env, args)))

    print(f"one {args.size}x{args.size} image, {args.steps} steps, median of {args.repeats}")
    print(f"bare diffusers call, default kernels     : {default * 1000:8.1f} ms")
    print(f"bare diffusers call, the engine's kernels: {bare * 1000:8.1f} ms")
    print(f"through the engine process               : {engine * 1000:8.1f} ms")
    print(
        f"engine overhead (same kernels)           : {(engine - bare) * 1000:8.1f} ms "
        f"({engine / bare:.2f}x)"
    )


if __name__ == "__main__":
    main()

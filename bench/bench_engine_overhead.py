"""What the engine process adds to one job, against the same bare diffusers call.

The engine path is the bot's: ``EngineClient.run_batch`` to the ``Result`` event, through the
framed pipes, checks, safety checker, PNG encoding and the picture's write to the spool
folder. The bare path is ``pipeline(...)`` in this process, with the CPU kernels the engine
picks (its batch-invariant convolutions), so the two differ only by what the engine adds.
Both are loaded and warmed up first.

Four calls run in turns (``CALLS``: bare, engine with its safety checker off, bare with
checker, engine, bare, ...) and every engine run is divided by the bare run of its own turn
that does the same work: a change in the machine's load (other processes on shared cores) then
moves both sides of a ratio alike instead of masquerading as overhead. The figures are the
medians of those ratios. Both processes use ``--threads`` CPU threads (one by default: on a
shared machine, spinning OpenMP threads make single runs vary tenfold). Without ``--model``
the tiny test models are built in a temporary folder:

    python bench/bench_engine_overhead.py --steps 10 --size 64 --repeats 30 --starts 4

The engine runs its safety checker on every image, and so does a plain Stable Diffusion
pipeline by default; a bot calling diffusers directly would run it too. So the like-for-like
pairs are the engine with its checker off against the pipeline without one, and the engine
against the pipeline with the engine's checker (its folder, run by the pipeline's own code).
Both bare calls use one pipeline, the checker taken out for the first (``bare_call``).
The engine as it runs for the bot is also held against the plain call without a checker: that
figure counts the checker's own work as overhead.

Two copies of the same weights can run the same call a few per cent apart, and which copy is
faster changes from one start of the processes to the next (memory placement, see
``bench_pipeline_copies.py``). ``--starts`` loads everything afresh that many times, in turn,
and pools the turns; each start's median is printed too, so that spread is visible.
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
) -> Callable[..., float]:
    """``call(seed, checked=True)``: one plain diffusers call per seed, with the engine's
    scheduler and CPU kernels; it returns the call's seconds.

    With the safety checker in folder ``checker``, the pipeline runs it itself; ``checked=False``
    takes it out for that call. The calls with and without it then share one copy of the
    weights: two copies run a few per cent apart, the one loaded second usually the faster
    (``bench_pipeline_copies.py``), which would count as the checker's cost.
    """
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
    own_checker = pipe.safety_checker

    def call(seed: int, checked: bool = True) -> float:
        wanted = own_checker if checked else None
        if pipe.safety_checker is not wanted:  # before the clock: it rewrites the config
            pipe.safety_checker = wanted
        started = time.perf_counter()
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
        return time.perf_counter() - started

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


# The calls of one turn, in the order they run: each engine is held against the bare call that
# does the same work (with or without the safety checker) and run right after it.
BARE, ENGINE_UNCHECKED, CHECKED, ENGINE = CALLS = (
    "bare call",
    "engine without checker",
    "bare call with checker",
    "engine",
)
# (engine, bare call) pairs reported: like for like first, then the engine as it runs for the
# bot against the plain call without a checker.
PAIRS = ((ENGINE_UNCHECKED, BARE), (ENGINE, CHECKED), (ENGINE, BARE))


async def interleaved(
    source: str, env: dict[str, str], args: argparse.Namespace, scratch: Path
) -> dict[str, list[float]]:
    """Times of each of ``CALLS``, taken in turns after one warm-up turn, in one start: fresh
    pipelines in this process and two fresh engine processes, one with its safety checker
    off. Each engine writes its pictures to a spool folder in ``scratch``, as for the bot."""
    from engine.settings import DEFAULT_SAFETY_CHECKER

    # One pipeline for both bare calls, the checker taken out for the first (see bare_call).
    bare = bare_call(source, args, env.get("ENGINE_SAFETY_CHECKER", DEFAULT_SAFETY_CHECKER))
    spools = {name: Path(tempfile.mkdtemp(dir=scratch)) for name in (ENGINE_UNCHECKED, ENGINE)}
    engines = {
        ENGINE_UNCHECKED: EngineClient(
            env={**env, "ENGINE_SAFETY_ENABLED": "false"}, spool=spools[ENGINE_UNCHECKED]
        ),
        ENGINE: EngineClient(env=env, spool=spools[ENGINE]),
    }
    model = ModelRef(name=Path(source).name, source=source)
    times: dict[str, list[float]] = {name: [] for name in CALLS}
    try:
        for client in engines.values():
            await client.start()
        for seed in range(args.repeats + 1):
            turn = {}
            for name in CALLS:
                if name in engines:
                    started = time.perf_counter()
                    await engine_call(engines[name], model, args, seed)
                    turn[name] = time.perf_counter() - started
                else:
                    turn[name] = bare(seed, checked=name == CHECKED)
            if seed:  # the first turn warms up (model load, checker load, first kernels)
                for name, value in turn.items():
                    times[name].append(value)
    finally:
        for client in engines.values():
            await client.stop()
    return times


def _ratios(bare: list[float], engine: list[float]) -> list[float]:
    return [e / b for b, e in zip(bare, engine, strict=True)]


def report(engine_name: str, bare_name: str, starts: list[dict[str, list[float]]]) -> None:
    """One engine against one bare call: the median of all turns' ratios (and of each start's),
    and the fastest engine run against the fastest bare one.

    On a shared machine a single run can take half as long again as the next one; the
    fastest runs are the ones the least disturbed (``timeit``'s reasoning), so the last
    figure is the overhead with most of that noise left out.
    """
    bare = [t for start in starts for t in start[bare_name]]
    engine = [t for start in starts for t in start[engine_name]]
    ratios = _ratios(bare, engine)
    overheads_ms = [(e - b) * 1000 for b, e in zip(bare, engine, strict=True)]
    per_start = ", ".join(
        f"{statistics.median(_ratios(start[bare_name], start[engine_name])):.3f}x"
        for start in starts
    )
    print(
        f"{engine_name} over the {bare_name}: {statistics.median(overheads_ms):5.1f} ms, "
        f"ratio {statistics.median(ratios):.3f}x (starts: {per_start}; turns from "
        f"{min(ratios):.3f}x to {max(ratios):.3f}x); fastest runs: "
        f"{(min(engine) - min(bare)) * 1000:.1f} ms, {min(engine) / min(bare):.3f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=9, help="turns in each start")
    parser.add_argument(
        "--starts", type=int, default=1, help="fresh pipelines and engine processes, in turn"
    )
    parser.add_argument("--model", default=None, help="id or folder; default: tiny test model")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads in each process")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    starts = []
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
        for _ in range(args.starts):
            starts.append(asyncio.run(interleaved(source, env, args, Path(scratch))))

    print(
        f"one {args.size}x{args.size} image, {args.steps} steps, {args.starts} start(s) of "
        f"{args.repeats} turns ({', '.join(CALLS)}, ...), {args.threads} thread(s) per process"
    )
    for name in CALLS:
        times = [t for start in starts for t in start[name]]
        median, fastest = statistics.median(times) * 1000, min(times) * 1000
        print(f"{name:<23}: median {median:8.1f} ms, fastest {fastest:8.1f} ms")
    for engine_name, bare_name in PAIRS:
        report(engine_name, bare_name, starts)


if __name__ == "__main__":
    main()

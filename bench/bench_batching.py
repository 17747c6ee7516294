"""Throughput of N compatible jobs batched into one pipeline call, against one call per job.

Runs through the engine's in-process ``Worker`` (the code the engine process runs), so the
figures include everything a job costs there: checks, PNG encoding with metadata, the safety
checker, progress events. Without ``--model`` it builds the tiny test models in a temporary
folder, so it runs anywhere without downloads:

    python bench/bench_batching.py --jobs 8 --steps 10 --size 64
    python bench/bench_batching.py --model runwayml/stable-diffusion-v1-5 --size 512 --steps 20
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.protocol import JobKind, JobSpec, ModelRef, Result, RunBatch
from engine.settings import EngineSettings
from engine.worker import Worker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default=None, help="id or folder; default: tiny test model")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        overrides: dict[str, object] = {"device": args.device}
        if args.model is None:
            from tests.fixtures.tiny_models import build_tiny_models

            tiny = build_tiny_models(Path(scratch))
            source, checker = str(tiny.text_to_image), str(tiny.safety_checker_never)
            overrides.update(offline=True, safety_checker=checker)
        else:
            source = args.model
        settings = EngineSettings(_env_file=None, **overrides)  # type: ignore[call-arg]
        results: dict[int, Result] = {}
        worker = Worker(
            settings, lambda e: results.__setitem__(e.job_id, e) if isinstance(e, Result) else None
        )
        model = ModelRef(name=Path(source).name, source=source)
        jobs = [
            JobSpec(
                job_id=i,
                kind=JobKind.TEXT_TO_IMAGE,
                model=model,
                prompt=f"a photo of a cat, variation {i}",
                seeds=(1000 + i,),
                steps=args.steps,
                width=args.size,
                height=args.size,
                preview=False,
            )
            for i in range(args.jobs)
        ]
        worker.handle(RunBatch(jobs=tuple(jobs)))  # warm-up: load the model and the checker
        worker.handle(RunBatch(jobs=(jobs[0],)))

        one_by_one, batched = [], []
        for _ in range(args.repeats):
            started = time.perf_counter()
            for job in jobs:
                worker.handle(RunBatch(jobs=(job,)))
            one_by_one.append(time.perf_counter() - started)
            alone = {i: r.images[0].png for i, r in results.items()}
            started = time.perf_counter()
            worker.handle(RunBatch(jobs=tuple(jobs)))
            batched.append(time.perf_counter() - started)
            together = {i: r.images[0].png for i, r in results.items()}

    single_s, batch_s = statistics.median(one_by_one), statistics.median(batched)
    n = args.jobs
    print(
        f"device {worker.device}, model {model.name}, {n} jobs x 1 image, "
        f"{args.size}x{args.size}, {args.steps} steps, median of {args.repeats}"
    )
    print(f"one call per job : {single_s:7.3f} s  {n / single_s:7.2f} images/s")
    print(f"one batched call : {batch_s:7.3f} s  {n / batch_s:7.2f} images/s")
    print(f"batched / one-by-one throughput ratio: {single_s / batch_s:.2f}x")
    print(f"identical images either way: {'yes' if alone == together else 'NO'}")


if __name__ == "__main__":
    main()

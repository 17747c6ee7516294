"""Scale-out: the same queue through the local engine process and through 1 and 2 Ray replicas.

Each backend runs the same queue (``--jobs`` jobs from four users) through the real scheduler,
store and image folder, from the first submit until the last job is stored; the model loads
are done before the clock starts. The backends take turns, ``--rounds`` times, and the
figures are medians. Every engine process (the local child, each Ray
replica) uses one CPU thread, so on a 2-core machine two replicas can at most double the
throughput of one.

The machine's own ceiling is printed beside it, measured in every round: the same torch loop
in one process, then in two at once (one thread each). On a machine whose cores other work
shares, two processes get less than twice one, and two replicas cannot do better than that.

Then the per-batch overhead Ray adds over the local pipe: one-job batches (one 1-step 64x64
image) sent in turns to the local engine and to one replica, from ``run_batch`` to the
``Result``; the figure is the median of the differences of the pairs, so a change in the
machine's load moves both sides alike.

    python bench/bench_scale_out.py                       # 32 jobs, 128x128, 20 steps
    python bench/bench_scale_out.py --jobs 8 --pairs 5    # quicker
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.jobs.engine_client import EngineClient
from bot.jobs.image_store import ImageStore
from bot.jobs.ray_engine import RayEngine
from bot.jobs.scheduler import EngineLike, Scheduler
from bot.store.database import create_engine, create_sessionmaker, migrate
from bot.store.models import JobStatus
from bot.store.repository import Limits, NewJob, Repository
from engine.protocol import JobError, JobKind, JobSpec, ModelRef, Result

USERS = 4


class Quiet:
    """The scheduler's observer, told nothing worth showing here."""

    async def queued(self, job_id: int, position: int) -> None: ...
    async def started(self, job_id: int, accepted: Any) -> None: ...
    async def progress(self, job_id: int, progress: Any) -> None: ...
    async def retrying(self, job_id: int) -> None: ...
    async def finished(self, job: Any, result: Any, stored: Any = ()) -> None: ...
    async def failed(self, job: Any) -> None: ...
    async def cancelled(self, job: Any) -> None: ...


def new_job(source: str, user: int, seed: int, args: argparse.Namespace) -> NewJob:
    return NewJob(
        user_id=user,
        user_name=f"user{user}",
        kind=JobKind.TEXT_TO_IMAGE,
        model_name="tiny",
        model_source=source,
        model_revision=None,
        prompt="a watercolor fox in the snow",
        negative_prompt="",
        seeds=(seed,),
        steps=args.steps,
        guidance=7.5,
        width=args.size,
        height=args.size,
        scheduler="euler",
        channel_id=1,
    )


async def run_queue(
    engine: EngineLike, source: str, scratch: Path, args: argparse.Namespace
) -> float:
    """Seconds for the whole queue through ``engine``, after one warm-up job."""
    folder = Path(tempfile.mkdtemp(dir=scratch))
    database = create_engine(f"sqlite+aiosqlite:///{folder / 'bot.db'}")
    await migrate(database)
    repo = Repository(create_sessionmaker(database))
    scheduler = Scheduler(
        repo, engine, ImageStore(folder / "images"), Quiet(), max_batch_images=args.max_batch
    )
    pump = asyncio.create_task(scheduler.pump_events())
    unlimited = Limits(None, None)
    try:
        # Warm-up: every replica loads the model (one job per slot, at once).
        for slot in range(engine.slots):
            await scheduler.submit(await repo.create_job(new_job(source, 0, slot, args), unlimited))
        await scheduler.wait_idle()
        jobs = [
            await repo.create_job(new_job(source, n % USERS + 1, n, args), unlimited)
            for n in range(args.jobs)
        ]
        started = time.perf_counter()
        for job in jobs:
            await scheduler.submit(job)
        await scheduler.wait_idle()
        seconds = time.perf_counter() - started
        for job in jobs:
            stored = await repo.get_job(job.id)
            assert stored is not None and stored.status is JobStatus.DONE, stored
        return seconds
    finally:
        pump.cancel()
        await database.dispose()


async def one_batch(engine: EngineLike, source: str, job_id: int) -> float:
    """Seconds from ``run_batch`` to the ``Result`` of a one-job batch."""
    spec = JobSpec(
        job_id=job_id,
        kind=JobKind.TEXT_TO_IMAGE,
        model=ModelRef("tiny", source),
        prompt="a cat",
        seeds=(job_id,),
        steps=1,
        width=64,
        height=64,
        preview=False,
    )
    started = time.perf_counter()
    await engine.run_batch([spec])
    while True:
        event = await engine.events.get()
        if isinstance(event, JobError):
            raise SystemExit(f"engine error: {event.message}")
        if isinstance(event, Result) and event.job_id == job_id:
            return time.perf_counter() - started


async def overhead_pairs(
    local: EngineLike, ray: EngineLike, source: str, pairs: int
) -> list[float]:
    """Ray's time minus the local pipe's, per pair, after one warm-up pair."""
    differences = []
    for n in range(pairs + 1):
        local_s = await one_batch(local, source, 1_000_000 + n)
        ray_s = await one_batch(ray, source, 2_000_000 + n)
        if n:
            differences.append(ray_s - local_s)
    return differences


_SPIN = """
import time, torch
torch.set_num_threads(1)
a = torch.randn(256, 256)
started = time.perf_counter()
for _ in range(2000):
    a @ a
print(time.perf_counter() - started)
"""


def two_process_ceiling() -> float:
    """How much more two one-thread processes compute than one, on this machine now."""
    import subprocess

    def spin(count: int) -> list[float]:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        runs = [
            subprocess.Popen([sys.executable, "-c", _SPIN], stdout=subprocess.PIPE, env=env)
            for _ in range(count)
        ]
        return [float(run.communicate()[0]) for run in runs]

    alone = statistics.median(spin(1) + spin(1))
    together = max(spin(2))
    return 2 * alone / together


async def bench(source: str, env: dict[str, str], scratch: Path, args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """Every backend deployed at once, then the queue through each in turns, ``--rounds``
    times: a change in the machine's load (other processes on shared cores) then touches
    every backend alike, and the figures are the medians."""
    import ray

    # One cluster on loopback. Three replicas at half a logical CPU each fit its two; each
    # still runs one torch thread (OMP_NUM_THREADS in ``env``), and an idle one uses none.
    ray.init(
        address="local",
        _node_ip_address="127.0.0.1",
        include_dashboard=False,
        num_cpus=2,
        logging_level="WARNING",
        log_to_driver=False,
    )
    local = EngineClient(env=env)
    one = RayEngine(replicas=1, env=env, cpus_per_replica=0.5, app_prefix="scale-out-1")
    two = RayEngine(replicas=2, env=env, cpus_per_replica=0.5, app_prefix="scale-out-2")
    engines: dict[tuple[str, int], EngineLike] = {
        ("local process", 1): local,
        ("ray", 1): one,
        ("ray", 2): two,
    }
    timings: dict[tuple[str, int], list[float]] = {key: [] for key in engines}
    try:
        for engine in (local, one, two):
            await engine.start()
        ceilings = []
        for _ in range(args.rounds):
            for key, engine in engines.items():
                timings[key].append(await run_queue(engine, source, scratch, args))
            ceilings.append(await asyncio.to_thread(two_process_ceiling))
        overhead = await overhead_pairs(local, one, source, args.pairs)
    finally:
        for engine in (local, one, two):
            await engine.stop()
        ray.shutdown()
    return timings, overhead, ceilings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--max-batch", type=int, default=4, help="images per batch")
    parser.add_argument("--pairs", type=int, default=15, help="pairs for the overhead")
    parser.add_argument("--rounds", type=int, default=3, help="runs of the queue per backend")
    args = parser.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        from tests.fixtures.tiny_models import build_tiny_models

        tiny = build_tiny_models(scratch / "models")
        source = str(tiny.text_to_image)
        env = {
            "ENGINE_OFFLINE": "true",
            "ENGINE_DEVICE": "cpu",
            "ENGINE_SAFETY_CHECKER": str(tiny.safety_checker_never),
            "ENGINE_PROGRESS_INTERVAL_S": "0.5",
            "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": "1",  # one torch thread in every engine process
            "TOKENIZERS_PARALLELISM": "false",
        }
        timings, overhead, ceilings = asyncio.run(bench(source, env, scratch, args))
        ceiling = statistics.median(ceilings)

    print(
        f"{args.jobs} jobs from {USERS} users, {args.size}x{args.size}, {args.steps} steps, "
        f"batches of up to {args.max_batch} images, one CPU thread per engine process, "
        f"{os.cpu_count()} cores"
    )
    print(
        f"{'backend':<16}{'replicas':>9}{'median s':>10}{'jobs/s':>9}{'vs local':>10}"
        f"   (seconds of each of the {args.rounds} rounds)"
    )
    medians = {key: statistics.median(runs) for key, runs in timings.items()}
    base = medians["local process", 1]
    for (backend, replicas), seconds in medians.items():
        runs = ", ".join(f"{t:.2f}" for t in timings[backend, replicas])
        print(
            f"{backend:<16}{replicas:>9}{seconds:>10.2f}{args.jobs / seconds:>9.2f}"
            f"{base / seconds:>9.2f}x   ({runs})"
        )
    print(
        f"2 Ray replicas against 1: {medians['ray', 1] / medians['ray', 2]:.2f}x the throughput "
        f"(this machine meanwhile: two one-thread processes computed {ceiling:.2f}x one)"
    )
    median_ms = statistics.median(overhead) * 1000
    print(
        f"per-batch overhead of Ray over the local pipe: median {median_ms:.1f} ms "
        f"({len(overhead)} pairs of one-job batches, one 64x64 1-step image each)"
    )


if __name__ == "__main__":
    main()

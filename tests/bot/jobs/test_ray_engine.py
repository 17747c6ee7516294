"""The Ray backend: the scheduler against replicas in Serve's local testing mode (in-process,
no cluster), and the bot's side importing no torch. The real cluster, with a replica killed
mid-batch, is in ``tests/bot/e2e/test_ray_replicas.py``."""

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bot.jobs.image_store import ImageStore
from bot.jobs.ray_engine import Replica, choose_replica
from bot.jobs.scheduler import Scheduler
from bot.store.models import JobStatus
from bot.store.repository import Limits, NewJob
from engine.protocol import JobKind, LoadedModel, ModelRef, Progress, Ready
from tests.bot.e2e.harness import engine_env
from tests.bot.jobs.test_scheduler import Recorder

ROOT = Path(__file__).resolve().parents[3]
UNLIMITED = Limits(None, None)

_NO_TORCH = """
import json, sys
import ray.cloudpickle as cloudpickle
from ray import serve
from bot.jobs.ray_engine import RayEngine
from engine.serve.replica import EngineReplica
RayEngine(replicas=2)
app = serve.deployment(EngineReplica, name="engine").bind({})
pickled = cloudpickle.dumps(EngineReplica)
print(json.dumps({
    "loaded": sorted(m for m in ("torch", "diffusers", "transformers") if m in sys.modules),
    "by_reference": len(pickled) < 200 and b"engine.serve.replica" in pickled,
}))
"""


def test_the_bot_side_deploys_replicas_without_importing_torch():
    """Ray pickles the replica class by reference (its module and name), so building the
    deployment loads neither torch nor the worker in the bot's process."""
    pytest.importorskip("ray")
    done = subprocess.run(
        [sys.executable, "-c", _NO_TORCH],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "loaded": [],
        "by_reference": True,
    }


def test_a_batch_goes_to_a_free_replica_holding_its_model_else_the_emptiest():
    tiny, other = ModelRef("tiny", "/m/tiny"), ModelRef("other", "/m/other")
    ready = Ready("cpu", "float32", 1)

    def replica(index: int, *models: ModelRef) -> Replica:
        holds = tuple(LoadedModel(m, JobKind.TEXT_TO_IMAGE, 1) for m in models)
        return Replica(index, handle=None, ready=ready, holds=holds)

    empty, holding_other, holding_tiny = replica(0), replica(1, other), replica(2, other, tiny)
    free = [empty, holding_other, holding_tiny]
    assert choose_replica(free, tiny) is holding_tiny
    assert choose_replica(free, other) is holding_other  # holds it, and fewer models
    assert choose_replica(free, ModelRef("new", "/m/new")) is empty


def new_job(tiny, user_id: int, steps: int = 2) -> NewJob:
    return NewJob(
        user_id=user_id,
        user_name=f"u{user_id}",
        kind=JobKind.TEXT_TO_IMAGE,
        model_name="tiny",
        model_source=str(tiny.text_to_image),
        model_revision=None,
        prompt="a cat",
        negative_prompt="",
        seeds=(user_id,),
        steps=steps,
        guidance=7.5,
        width=64,
        height=64,
        scheduler="euler",
        channel_id=1,
    )


@pytest.fixture
async def replicas(tiny_models, monkeypatch):
    """Two replicas in Serve's local testing mode, started and stopped."""
    pytest.importorskip("ray")
    from bot.jobs.ray_engine import RayEngine

    for key, value in engine_env(tiny_models).items():
        monkeypatch.setenv(key, value)  # in-process replicas read the test's environment
    engine = RayEngine(replicas=2, local_testing=True, env=engine_env(tiny_models))
    await engine.start()
    try:
        yield engine
    finally:
        await engine.stop()


async def test_the_scheduler_runs_a_queue_on_two_replicas(replicas, repo, tmp_path, tiny_models):
    observer = Recorder()
    scheduler = Scheduler(
        repo, replicas, ImageStore(tmp_path / "img"), observer, max_batch_images=1
    )
    tiny = ModelRef("tiny", str(tiny_models.text_to_image))
    # Loaded one replica after the other: in-process replicas (this mode only) would share
    # diffusers' loading machinery. Loading on 2 keeps the replica that has it, adds one.
    first = await replicas.load_model(tiny, JobKind.TEXT_TO_IMAGE, replicas=1)
    assert first.ok and first.message.startswith("1 of 2 replicas: replica 0: tiny is loaded")
    both = await replicas.load_model(tiny, JobKind.TEXT_TO_IMAGE, replicas=2)
    assert both.ok and [m.model.name for m in both.loaded] == ["tiny", "tiny"]
    pump = asyncio.create_task(scheduler.pump_events())
    try:
        assert replicas.slots == 2 and len(replicas.replica_lines) == 2
        jobs = [await repo.create_job(new_job(tiny_models, user), UNLIMITED) for user in (1, 2, 3)]
        for job in jobs:
            await scheduler.submit(job)
        # Both replicas got a batch at once; the third waits in the bot's queue until both
        # have begun, then in the backend for the first replica to free up, never in Serve.
        assert sorted(replicas.in_flight) == [jobs[0].id, jobs[1].id]
        assert all(r.batch for r in replicas._replicas)
        async with asyncio.timeout(60):
            await scheduler.wait_idle()
        for job in jobs:
            done = await repo.get_job(job.id)
            assert done.status is JobStatus.DONE and len(done.images) == 1
        listing = await replicas.list_models()
        assert listing.ok and listing.message.startswith("2 of 2 replicas: replica 0: ")
        assert all(r.holds_model(tiny) for r in replicas._replicas)
        finished = [job_id for name, job_id in observer.calls if name == "finished"]
        assert sorted(finished) == [job.id for job in jobs]  # each once
    finally:
        pump.cancel()


async def test_cancel_reaches_the_replica_running_the_job(replicas, repo, tmp_path, tiny_models):
    observer = Recorder()
    scheduler = Scheduler(
        repo, replicas, ImageStore(tmp_path / "img"), observer, max_batch_images=1
    )
    job = await repo.create_job(new_job(tiny_models, 1, steps=100), UNLIMITED)
    await scheduler.submit(job)
    async with asyncio.timeout(60):
        while True:  # its events, until the replica is at work on it
            event = await replicas.events.get()
            await scheduler.handle_event(event)
            if isinstance(event, Progress):
                break
    assert isinstance(event, Progress) and event.step < 100
    assert await scheduler.cancel(job.id)
    async with asyncio.timeout(60):
        while job.id in replicas.in_flight or not replicas.events.empty():
            await scheduler.handle_event(await replicas.events.get())
    assert (await repo.get_job(job.id)).status is JobStatus.CANCELLED
    assert ("cancelled", job.id) in observer.calls

"""The scheduler against a scripted engine and the real store."""

import asyncio
from typing import Any
from unittest.mock import create_autospec

import pytest

from bot.jobs.image_store import ImageStore
from bot.jobs.scheduler import CRASHED_TWICE, EngineLike, JobObserver, Scheduler
from bot.store.models import JobStatus
from bot.store.repository import Limits, NewJob
from engine.protocol import (
    Accepted,
    ErrorKind,
    GeneratedImage,
    JobError,
    JobKind,
    Progress,
    Result,
)

UNLIMITED = Limits(None, None)


class ScriptedEngine:
    """The engine as the scheduler sees it; the test decides what the engine answers.

    The scheduler's calls go to a double spec'd from ``EngineLike``, so a call the protocol
    does not declare, or with arguments it would refuse, fails the test.
    """

    def __init__(self) -> None:
        self.double = create_autospec(EngineLike, instance=True, spec_set=True)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.double, name)

    @property
    def batches(self) -> list[list[int]]:
        """The job ids of each batch sent, in order."""
        return [[spec.job_id for spec in sent.args[0]] for sent in self.run_batch.call_args_list]

    @property
    def cancelled(self) -> list[int]:
        return [asked.args[0] for asked in self.cancel.call_args_list]


class Recorder:
    """The observer, a double spec'd from ``JobObserver``: what it was told, by job id."""

    def __init__(self) -> None:
        self.double = create_autospec(JobObserver, instance=True, spec_set=True)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.double, name)

    @property
    def calls(self) -> list[tuple[str, int]]:
        """(method, job id) of every call, in order."""
        return [
            (name, subject if isinstance(subject, int) else subject.id)
            for name, (subject, *_), _ in self.double.mock_calls
        ]


def new_job(user_id, prompt="p", steps=20, seeds=(1,)) -> NewJob:
    return NewJob(
        user_id=user_id,
        user_name=f"u{user_id}",
        kind=JobKind.TEXT_TO_IMAGE,
        model_name="tiny",
        model_source="/m",
        model_revision=None,
        prompt=prompt,
        negative_prompt="",
        seeds=seeds,
        steps=steps,
        guidance=7.5,
        width=64,
        height=64,
        scheduler="euler",
        channel_id=1,
    )


def result(job_id, seeds=(1,)) -> Result:
    images = tuple(GeneratedImage(s, b"\x89PNG fake", False) for s in seeds)
    return Result(job_id, images, "rev1", 0.5)


async def make(repo, tmp_path, max_batch=4):
    engine, observer = ScriptedEngine(), Recorder()
    scheduler = Scheduler(
        repo, engine, ImageStore(tmp_path / "img"), observer, max_batch_images=max_batch
    )
    return scheduler, engine, observer


async def test_round_robin_batches_and_lifecycle(repo, tmp_path):
    scheduler, engine, observer = await make(repo, tmp_path, max_batch=2)
    jobs = [await repo.create_job(new_job(1, steps=s), UNLIMITED) for s in (20, 20, 30)]
    other = await repo.create_job(new_job(2), UNLIMITED)
    for job in [*jobs, other]:
        await scheduler.submit(job)
    # The first job ran alone (the engine was free); the rest wait their turn.
    assert engine.batches == [[jobs[0].id]]
    assert scheduler.position(jobs[0].id) == 0
    # User 1's second job was queued before user 2 arrived; user 2 still goes before user 1's
    # third job.
    assert scheduler.position(jobs[1].id) == 1
    assert scheduler.position(other.id) == 2
    assert scheduler.position(jobs[2].id) == 3

    await scheduler.handle_event(Accepted(jobs[0].id))
    await scheduler.handle_event(Progress(jobs[0].id, 1, 20))
    await scheduler.handle_event(result(jobs[0].id))
    # Next: user 1's second job, batched with user 2's compatible one; 30 steps waits.
    assert engine.batches[1] == [jobs[1].id, other.id]
    for job_id in engine.batches[1]:
        await scheduler.handle_event(result(job_id))
    assert engine.batches[2] == [jobs[2].id]

    done = await repo.get_job(jobs[0].id)
    assert done.status is JobStatus.DONE and done.model_revision_used == "rev1"
    assert (tmp_path / "img" / done.images[0].path).read_bytes() == b"\x89PNG fake"
    names = [c[0] for c in observer.calls if c[1] == jobs[0].id]
    assert names[-3:] == ["started", "progress", "finished"]


async def test_cancel_queued_and_running(repo, tmp_path):
    scheduler, engine, observer = await make(repo, tmp_path)
    a = await repo.create_job(new_job(1), UNLIMITED)
    b = await repo.create_job(new_job(1), UNLIMITED)
    await scheduler.submit(a)
    await scheduler.submit(b)
    assert await scheduler.cancel(b.id)
    assert (await repo.get_job(b.id)).status is JobStatus.CANCELLED
    assert await scheduler.cancel(a.id)
    assert engine.cancelled == [a.id]
    await scheduler.handle_event(JobError(a.id, ErrorKind.CANCELLED, "Cancelled."))
    assert (await repo.get_job(a.id)).status is JobStatus.CANCELLED
    assert not await scheduler.cancel(a.id)
    assert ("cancelled", a.id) in observer.calls and ("cancelled", b.id) in observer.calls


async def test_engine_crash_retries_once_then_fails(repo, tmp_path):
    scheduler, engine, observer = await make(repo, tmp_path)
    job = await repo.create_job(new_job(1), UNLIMITED)
    await scheduler.submit(job)
    await scheduler.handle_event(JobError(job.id, ErrorKind.ENGINE_CRASHED, "crashed"))
    assert engine.batches == [[job.id], [job.id]]  # retried at once
    assert ("retrying", job.id) in observer.calls
    await scheduler.handle_event(JobError(job.id, ErrorKind.ENGINE_CRASHED, "crashed"))
    failed = await repo.get_job(job.id)
    assert (failed.status, failed.error, failed.attempts) == (JobStatus.FAILED, CRASHED_TWICE, 2)
    assert len(engine.batches) == 2


async def test_engine_error_message_reaches_the_store(repo, tmp_path):
    scheduler, _, observer = await make(repo, tmp_path)
    job = await repo.create_job(new_job(1), UNLIMITED)
    await scheduler.submit(job)
    message = "ran out of GPU memory at 1024x1024 with 4 images; try fewer or smaller"
    await scheduler.handle_event(JobError(job.id, ErrorKind.OUT_OF_MEMORY, message))
    assert (await repo.get_job(job.id)).error == message
    assert ("failed", job.id) in observer.calls


async def test_pause_stops_new_batches_and_wait_idle(repo, tmp_path):
    scheduler, engine, _ = await make(repo, tmp_path, max_batch=1)
    a = await repo.create_job(new_job(1), UNLIMITED)
    b = await repo.create_job(new_job(2), UNLIMITED)
    await scheduler.submit(a)
    await scheduler.submit(b)
    await scheduler.pause()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await scheduler.wait_idle()
    await scheduler.handle_event(result(a.id))
    async with asyncio.timeout(1):
        await scheduler.wait_idle()
    assert engine.batches == [[a.id]]  # b stays queued for the next start
    assert (await repo.get_job(b.id)).status is JobStatus.QUEUED


async def test_stalled_for_counts_silence_only_while_a_batch_runs(repo, tmp_path):
    scheduler, _, _ = await make(repo, tmp_path)
    assert scheduler.stalled_for() == 0.0
    job = await repo.create_job(new_job(1), UNLIMITED)
    await scheduler.submit(job)
    await asyncio.sleep(0.05)
    assert scheduler.stalled_for() >= 0.05
    await scheduler.handle_event(Progress(job.id, 1, 20))
    assert scheduler.stalled_for() < 0.05
    await scheduler.handle_event(result(job.id))
    assert scheduler.stalled_for() == 0.0

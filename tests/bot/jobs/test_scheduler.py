"""The scheduler against a scripted engine and the real store."""

import asyncio
import errno
import os
import sqlite3
from typing import Any
from unittest.mock import create_autospec

import pytest
from sqlalchemy.exc import OperationalError

from bot.jobs.image_store import ImageStore
from bot.jobs.scheduler import (
    CRASHED_TWICE,
    NOT_SAVED,
    EngineLike,
    JobObserver,
    Scheduler,
    position_step,
)
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
    SpooledFile,
)

UNLIMITED = Limits(None, None)


class ScriptedEngine:
    """The engine as the scheduler sees it; the test decides what the engine answers.

    The scheduler's calls go to a double spec'd from ``EngineLike``, so a call the protocol
    does not declare, or with arguments it would refuse, fails the test.
    """

    def __init__(self, slots: int = 1) -> None:
        self.double = create_autospec(EngineLike, instance=True, spec_set=True)
        self.double.slots = slots  # batches it runs at once: one, as the local process

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


async def make(repo, tmp_path, max_batch=4, slots=1, **options):
    engine, observer = ScriptedEngine(slots), Recorder()
    scheduler = Scheduler(
        repo, engine, ImageStore(tmp_path / "img"), observer, max_batch_images=max_batch, **options
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
    # User 1's running job was their turn: user 2 goes first, though user 1's second job was
    # queued before user 2 arrived.
    assert scheduler.position(other.id) == 1
    assert scheduler.position(jobs[1].id) == 2
    assert scheduler.position(jobs[2].id) == 3
    assert ("queued", other.id) in observer.calls

    await scheduler.handle_event(Accepted(jobs[0].id))
    # The engine has begun: the next batch is sent at once, to wait at the engine. It is user
    # 2's job with user 1's compatible one; 30 steps waits.
    assert engine.batches[1] == [other.id, jobs[1].id]
    await scheduler.handle_event(Progress(jobs[0].id, 1, 20))
    await scheduler.handle_event(result(jobs[0].id))
    assert len(engine.batches) == 2  # the engine has not begun the second batch yet
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


# --- fair turns from the very first job (issue 16) ----------------------------------------


async def test_a_running_job_is_its_owners_turn(repo, tmp_path):
    scheduler, engine, observer = await make(repo, tmp_path, max_batch=1)
    bob_first = await repo.create_job(new_job(1), UNLIMITED)
    await scheduler.submit(bob_first)  # the engine is idle: it starts at once
    bob_second = await repo.create_job(new_job(1), UNLIMITED)
    await scheduler.submit(bob_second)
    carol = await repo.create_job(new_job(2), UNLIMITED)
    await scheduler.submit(carol)
    # Carol has not been served; Bob's running job was his turn. The messages say so...
    queued = [c for c in observer.calls if c[0] == "queued"]
    assert set(queued[-2:]) == {("queued", carol.id), ("queued", bob_second.id)}
    assert (scheduler.position(carol.id), scheduler.position(bob_second.id)) == (1, 2)
    # ...and that is the order they run in.
    await scheduler.handle_event(result(bob_first.id))
    await scheduler.handle_event(result(carol.id))
    await scheduler.handle_event(result(bob_second.id))
    assert engine.batches == [[bob_first.id], [carol.id], [bob_second.id]]


async def run_to_the_end(scheduler, engine, observer, positions):
    """Answer every batch as the engine would, noting each job's place as it is sent."""
    answered = 0
    while answered < len(engine.batches):
        for job_id in engine.batches[answered]:
            positions.setdefault(job_id, 0)
            await scheduler.handle_event(Accepted(job_id))
        for job_id in engine.batches[answered]:
            await scheduler.handle_event(result(job_id))
        answered += 1


async def test_bursts_from_several_users_run_in_the_order_announced(repo, tmp_path):
    scheduler, engine, observer = await make(repo, tmp_path, max_batch=1)
    owners = {}

    async def burst(user, count):
        for _ in range(count):
            job = await repo.create_job(new_job(user), UNLIMITED)
            owners[job.id] = user
            await scheduler.submit(job)

    await burst(1, 1)  # starts at once
    await burst(1, 3)
    await burst(2, 2)
    await burst(3, 1)
    # Ask the scheduler, before anything more runs, where each queued job stands.
    announced = sorted(
        (scheduler.position(job_id), job_id) for job_id in owners if scheduler.position(job_id)
    )
    await scheduler.handle_event(Accepted(engine.batches[0][0]))
    await burst(4, 2)  # a fourth user arrives while the second batch waits at the engine
    await run_to_the_end(scheduler, engine, observer, {})
    ran = [batch[0] for batch in engine.batches]
    # Users 2 and 3 were not served yet when user 1 queued more; user 4's first job comes
    # before anyone's second turn except the one already at the engine.
    assert [owners[job_id] for job_id in ran] == [1, 2, 3, 4, 1, 2, 4, 1, 1]
    queued_then = [job_id for _, job_id in announced]
    assert [job_id for job_id in ran if job_id in queued_then] == queued_then


# --- two batches at the engine ------------------------------------------------------------


async def two_at_the_engine(repo, tmp_path, users):
    """One job per user, one image per batch; the engine has begun the first, so the second
    is sent too."""
    scheduler, engine, observer = await make(repo, tmp_path, max_batch=1)
    jobs = [await repo.create_job(new_job(user), UNLIMITED) for user in users]
    for job in jobs:
        await scheduler.submit(job)
    await scheduler.handle_event(Accepted(jobs[0].id))
    assert engine.batches == [[jobs[0].id], [jobs[1].id]]
    return scheduler, engine, observer, jobs


async def test_the_next_batch_is_sent_once_the_engine_has_begun_the_first(repo, tmp_path):
    scheduler, engine, _ = await make(repo, tmp_path, max_batch=1)
    jobs = [await repo.create_job(new_job(user), UNLIMITED) for user in (1, 2, 3, 4)]
    for job in jobs:
        await scheduler.submit(job)
    assert engine.batches == [[jobs[0].id]]
    await scheduler.handle_event(Accepted(jobs[0].id))
    assert engine.batches == [[jobs[0].id], [jobs[1].id]]
    await scheduler.handle_event(Accepted(jobs[1].id))  # a third batch never goes
    assert len(engine.batches) == 2
    assert scheduler.position(jobs[1].id) == 0 and scheduler.position(jobs[2].id) == 1
    await scheduler.handle_event(result(jobs[0].id))  # the second one runs: send the third
    assert engine.batches[2] == [jobs[2].id]
    # A job that ends before it was accepted (refused by the engine's checks) also shows that
    # the engine is at work on its batch.
    await scheduler.handle_event(JobError(jobs[1].id, ErrorKind.BAD_INPUT, "no"))
    await scheduler.handle_event(JobError(jobs[2].id, ErrorKind.BAD_INPUT, "no"))
    assert engine.batches[3] == [jobs[3].id]


async def test_both_batches_are_retried_after_a_crash_oldest_first(repo, tmp_path):
    scheduler, engine, observer, (first, second) = await two_at_the_engine(repo, tmp_path, (1, 2))
    # The engine client reports every job the dead process had, in the order they were sent.
    await scheduler.handle_event(JobError(first.id, ErrorKind.ENGINE_CRASHED, "crashed"))
    assert len(engine.batches) == 2  # a crash report is no sign that the engine is at work
    await scheduler.handle_event(JobError(second.id, ErrorKind.ENGINE_CRASHED, "crashed"))
    assert engine.batches[2:] == [[first.id]]
    await scheduler.handle_event(Accepted(first.id))
    assert engine.batches[3:] == [[second.id]]
    assert ("retrying", first.id) in observer.calls and ("retrying", second.id) in observer.calls
    for job in (first, second):
        await scheduler.handle_event(result(job.id))
        assert (await repo.get_job(job.id)).attempts == 2


async def test_cancel_a_job_waiting_at_the_engine(repo, tmp_path):
    scheduler, engine, observer, (_, second) = await two_at_the_engine(repo, tmp_path, (1, 2))
    assert await scheduler.cancel(second.id)
    assert engine.cancelled == [second.id]
    await scheduler.handle_event(JobError(second.id, ErrorKind.CANCELLED, "Cancelled."))
    assert (await repo.get_job(second.id)).status is JobStatus.CANCELLED
    assert ("cancelled", second.id) in observer.calls


async def test_pause_takes_back_the_batch_the_engine_has_not_begun(repo, tmp_path):
    scheduler, engine, observer, jobs = await two_at_the_engine(repo, tmp_path, (1, 2, 3))
    first, second, third = jobs
    await scheduler.pause()  # shutting down: the running batch finishes, the rest stays queued
    assert engine.cancelled == [second.id]
    await scheduler.handle_event(result(first.id))
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await scheduler.wait_idle()
    await scheduler.handle_event(JobError(second.id, ErrorKind.CANCELLED, "Cancelled."))
    async with asyncio.timeout(1):
        await scheduler.wait_idle()
    assert (await repo.get_job(second.id)).status is JobStatus.QUEUED
    assert ("cancelled", second.id) not in observer.calls
    assert scheduler.position(second.id) == 1 and scheduler.position(third.id) == 2
    await scheduler.resume()
    assert engine.batches[2:] == [[second.id]]


async def test_a_cancel_during_a_pause_still_cancels(repo, tmp_path):
    scheduler, _, _, (_, second) = await two_at_the_engine(repo, tmp_path, (1, 2))
    await scheduler.pause()
    await scheduler.cancel(second.id)  # the user's cancel wins over the withdrawal
    await scheduler.handle_event(JobError(second.id, ErrorKind.CANCELLED, "Cancelled."))
    assert (await repo.get_job(second.id)).status is JobStatus.CANCELLED


async def test_an_engine_with_two_slots_gets_one_batch_each_then_one_sent_ahead(repo, tmp_path):
    """Two replicas: both get a batch at once; the next goes ahead only once the engine has
    begun both, and no fourth until one ends. Each is the fair queue's next when sent."""
    scheduler, engine, _ = await make(repo, tmp_path, max_batch=1, slots=2)
    jobs = [await repo.create_job(new_job(user), UNLIMITED) for user in (1, 2, 3, 4, 5)]
    for job in jobs:
        await scheduler.submit(job)
    assert engine.batches == [[jobs[0].id], [jobs[1].id]]
    await scheduler.handle_event(Accepted(jobs[0].id))
    assert len(engine.batches) == 2  # the second replica has not begun its batch
    await scheduler.handle_event(Accepted(jobs[1].id))
    assert engine.batches[2:] == [[jobs[2].id]]
    assert scheduler.position(jobs[3].id) == 1
    await scheduler.handle_event(Progress(jobs[0].id, 1, 20))
    assert len(engine.batches) == 3  # never more than one ahead
    await scheduler.handle_event(result(jobs[0].id))  # a replica took the one sent ahead...
    assert len(engine.batches) == 3
    await scheduler.handle_event(Accepted(jobs[2].id))  # ...and began it: the next goes ahead
    assert engine.batches[3:] == [[jobs[3].id]]
    await scheduler.handle_event(result(jobs[1].id))
    assert len(engine.batches) == 4  # the one ahead is not begun yet
    await scheduler.handle_event(Accepted(jobs[3].id))
    assert engine.batches[4:] == [[jobs[4].id]]


async def test_pause_with_two_slots_keeps_both_running_batches(repo, tmp_path):
    scheduler, engine, _ = await make(repo, tmp_path, max_batch=1, slots=2)
    jobs = [await repo.create_job(new_job(user), UNLIMITED) for user in (1, 2, 3)]
    for job in jobs:
        await scheduler.submit(job)
    for job in jobs[:2]:
        await scheduler.handle_event(Accepted(job.id))
    assert engine.batches == [[job.id] for job in jobs]
    await scheduler.pause()
    assert engine.cancelled == [jobs[2].id]  # only the batch sent ahead is taken back


# --- batching --------------------------------------------------------------------------------


async def test_batches_are_cut_to_a_preferred_size(repo, tmp_path):
    scheduler, engine, _ = await make(repo, tmp_path, 8, preferred_batch_sizes=(1, 2, 4, 8))
    await scheduler.pause()
    jobs = [await repo.create_job(new_job(user), UNLIMITED) for user in range(7)]
    for job in jobs:
        await scheduler.submit(job)
    await scheduler.resume()
    # Seven compatible images: four now (a compiled size), then two and one.
    assert engine.batches == [[job.id for job in jobs[:4]]]
    await scheduler.handle_event(Accepted(jobs[0].id))
    assert engine.batches[1] == [job.id for job in jobs[4:6]]


# --- what queued jobs are told ---------------------------------------------------------------


def test_position_steps():
    steps = [position_step(n) for n in (1, 2, 3, 4, 5, 9, 10, 19, 20, 49, 50, 99, 100, 250, 999)]
    assert steps == [1, 2, 3, 3, 5, 5, 10, 10, 20, 20, 50, 50, 100, 200, 500]
    assert position_step(1000) == 1000 and position_step(12_345) == 10_000


async def test_positions_are_told_at_steps_not_at_every_move(repo, tmp_path):
    scheduler, engine, observer = await make(repo, tmp_path, max_batch=4)
    jobs = []
    for n in range(200):
        job = await repo.create_job(new_job(n % 20), UNLIMITED)
        jobs.append(job)
        await scheduler.submit(job)
    await run_to_the_end(scheduler, engine, observer, {})
    assert (await repo.count_by_status())[JobStatus.DONE] == len(jobs)
    told = [c[1] for c in observer.calls if c[0] == "queued"]
    # Every job was told its place once, then only when it crossed a step: about 3 per
    # factor of ten. Telling every move would be some 5,000 (each job moves once per batch).
    assert len(told) <= 6 * len(jobs)
    assert max(told.count(job.id) for job in jobs) <= 8


async def test_a_slow_refresh_tells_every_exact_place(repo, tmp_path):
    # Every chance to tell is taken.
    scheduler, _, observer = await make(repo, tmp_path, 1, position_refresh_s=0.0)
    jobs = [await repo.create_job(new_job(user), UNLIMITED) for user in range(6)]
    for job in jobs:
        await scheduler.submit(job)
    await scheduler.handle_event(result(jobs[0].id))
    # Job 6 went from place 5 to place 4: no new step, but the refresh tells it.
    assert [c for c in observer.calls if c == ("queued", jobs[5].id)] == [
        ("queued", jobs[5].id)
    ] * 2


# --- a full disk, a locked database (issue 15, items 6 and 8) -------------------------------


class FullDisk(ImageStore):
    """The real image store on a disk that is full while ``full`` is set."""

    full = False

    def _write(self, relative, data):
        if self.full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as a failed write() says it
        super()._write(relative, data)


def refused(times: int, method):
    """``method``, refused by the store ``times`` times first, as after the writer has waited
    out a lock for its whole bound."""
    left = [times]

    async def call(*args, **kwargs):
        if left[0] > 0:
            left[0] -= 1
            raise OperationalError("BEGIN IMMEDIATE", {}, sqlite3.OperationalError("locked"))
        return await method(*args, **kwargs)

    return call


async def test_a_full_disk_fails_the_job_plainly_and_tells_admins_the_cause(repo, tmp_path):
    engine, observer = ScriptedEngine(), Recorder()
    disk = FullDisk(tmp_path / "img")
    scheduler = Scheduler(repo, engine, disk, observer, max_batch_images=1)
    job = await repo.create_job(new_job(1, seeds=(1, 2)), UNLIMITED)
    later = await repo.create_job(new_job(2), UNLIMITED)
    await scheduler.submit(job)
    await scheduler.submit(later)
    disk.full = True
    await scheduler.handle_event(result(job.id, seeds=(1, 2)))

    failed = await repo.get_job(job.id)
    assert (failed.status, failed.error) == (JobStatus.FAILED, NOT_SAVED)
    assert failed.images == [] and not list((tmp_path / "img").rglob("*.*"))  # no half job
    assert ("failed", job.id) in observer.calls
    assert scheduler.position(job.id) is None
    assert [spec.job_id for spec in scheduler.running] == [later.id]
    health = disk.health
    assert health.failing and health.last_failure is not None
    assert health.last_failure.cause.startswith("[Errno 28] No space left on device: ")
    assert f"job{job.id}_0.png" in health.last_failure.cause  # the path, for the admin

    # The next batch was sent; once there is room its images are saved as usual.
    assert engine.batches == [[job.id], [later.id]]
    disk.full = False
    await scheduler.handle_event(result(later.id))
    done = await repo.get_job(later.id)
    assert done.status is JobStatus.DONE and (tmp_path / "img" / done.images[0].path).exists()
    assert not disk.health.failing and disk.health.last_failure == health.last_failure


async def test_an_ending_the_store_refuses_is_written_later_never_left_running(
    repo, tmp_path, monkeypatch
):
    scheduler, _, observer = await make(repo, tmp_path, rewrite_after_s=0)
    failing = await repo.create_job(new_job(1), UNLIMITED)
    finishing = await repo.create_job(new_job(2), UNLIMITED)
    await scheduler.submit(failing)
    monkeypatch.setattr(repo, "mark_failed", refused(1, repo.mark_failed))
    await scheduler.handle_event(JobError(failing.id, ErrorKind.BAD_INPUT, "no"))
    await scheduler.submit(finishing)  # the engine is free: it runs at once
    monkeypatch.setattr(repo, "mark_done_many", refused(2, repo.mark_done_many))
    await scheduler.handle_event(result(finishing.id))
    async with asyncio.timeout(30):
        await scheduler.wait_written()
    assert (await repo.get_job(failing.id)).status is JobStatus.FAILED
    assert (await repo.get_job(finishing.id)).status is JobStatus.DONE
    assert ("failed", failing.id) in observer.calls and ("finished", finishing.id) in observer.calls


async def test_a_batch_the_store_will_not_start_stays_queued_and_is_sent_later(
    repo, tmp_path, monkeypatch
):
    scheduler, engine, _ = await make(repo, tmp_path, rewrite_after_s=0)
    monkeypatch.setattr(repo, "mark_running_many", refused(1, repo.mark_running_many))
    job = await repo.create_job(new_job(1), UNLIMITED)
    await scheduler.submit(job)
    assert engine.batches == [] and scheduler.position(job.id) == 1
    async with asyncio.timeout(30):
        await scheduler.wait_written()
    assert engine.batches == [[job.id]]
    assert (await repo.get_job(job.id)).status is JobStatus.RUNNING


# --- pictures the engine spooled (engine.spool) ---------------------------------------------


def spooled_result(store: ImageStore, job_id: int, seeds=(1,)) -> Result:
    """A result as a local engine sends it: each picture already in the bot's spool."""
    images = []
    for index, seed in enumerate(seeds):
        name = f"job{job_id}_{index}_spooled.png"
        (store.spool / name).write_bytes(b"\x89PNG spooled %d" % seed)
        images.append(GeneratedImage(seed, SpooledFile(name, 15), False))
    return Result(job_id, tuple(images), "rev1", 0.5)


async def test_a_spooled_result_is_moved_into_the_store(repo, tmp_path):
    engine, observer = ScriptedEngine(), Recorder()
    store = ImageStore(tmp_path / "img")
    await store.clear_spool()
    scheduler = Scheduler(repo, engine, store, observer, max_batch_images=1)
    job = await repo.create_job(new_job(1, seeds=(4, 5)), UNLIMITED)
    await scheduler.submit(job)

    await scheduler.handle_event(spooled_result(store, job.id, seeds=(4, 5)))

    done = await repo.get_job(job.id)
    assert done.status is JobStatus.DONE
    assert [store.resolve(i.path).read_bytes() for i in done.images] == [
        b"\x89PNG spooled 4",
        b"\x89PNG spooled 5",
    ]
    assert not os.listdir(store.spool)
    (_finished, (told_job, _result, stored), _) = observer.finished.mock_calls[0]
    assert told_job.id == job.id and list(stored) == [i.path for i in done.images]


async def test_a_spooled_result_the_disk_refuses_leaves_nothing_behind(repo, tmp_path):
    engine, observer = ScriptedEngine(), Recorder()
    store = ImageStore(tmp_path / "img")
    await store.clear_spool()
    scheduler = Scheduler(repo, engine, store, observer, max_batch_images=1)
    job = await repo.create_job(new_job(1, seeds=(1, 2, 3)), UNLIMITED)
    await scheduler.submit(job)
    answer = spooled_result(store, job.id, seeds=(1, 2, 3))
    (store.spool / answer.images[1].png.name).unlink()  # the second cannot be moved

    await scheduler.handle_event(answer)

    failed = await repo.get_job(job.id)
    assert (failed.status, failed.error) == (JobStatus.FAILED, NOT_SAVED)
    assert not [p for p in store.root.rglob("*") if p.is_file()]  # neither stored nor spooled


async def test_a_spooled_result_for_a_job_no_longer_running_is_discarded(repo, tmp_path):
    engine, observer = ScriptedEngine(), Recorder()
    store = ImageStore(tmp_path / "img")
    await store.clear_spool()
    scheduler = Scheduler(repo, engine, store, observer, max_batch_images=1)

    await scheduler.handle_event(spooled_result(store, 999, seeds=(1, 2)))

    assert not os.listdir(store.spool)
    assert observer.calls == []

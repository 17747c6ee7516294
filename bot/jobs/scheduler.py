"""Feeds the engine one batch at a time from fair per-user queues, and keeps the store true.

The scheduler knows jobs, the engine and the database, not Discord: what users see is the
observer's business (``bot.delivery`` implements it for Discord). Every status change is
written to the store before the observer hears of it, so a restart finds the truth.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Hashable, Sequence
from dataclasses import dataclass
from typing import Protocol

from bot.jobs import lessons
from bot.jobs.fair_queue import FairQueue
from bot.jobs.image_store import ImageStore
from bot.store.models import Job
from bot.store.repository import InvalidTransition, NewImage, Repository
from engine.protocol import (
    Accepted,
    ErrorKind,
    Event,
    JobError,
    JobKind,
    JobSpec,
    ModelRef,
    Progress,
    Result,
)

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 2  # a job that was in flight when the engine died twice is not tried again
CRASHED_TWICE = (
    "The image engine stopped twice while making this job, so it will not be tried again. "
    "Try different settings, or tell an admin."
)


ENGINE_DOWN = "The image engine is not available right now; please try again later."


class EngineLike(Protocol):
    events: asyncio.Queue[Event]  # what the engine says, in order

    @property
    def in_flight(self) -> frozenset[int]:
        """Jobs it was given and has not finished."""
        ...

    async def start(self) -> object: ...

    async def stop(self) -> None: ...

    async def run_batch(self, jobs: Sequence[JobSpec]) -> None: ...

    async def cancel(self, job_id: int) -> None: ...

    def kill(self) -> None: ...


class JobObserver(Protocol):
    """Told about every step of a job, after the store has recorded it."""

    async def queued(self, job_id: int, position: int) -> None: ...

    async def started(self, job_id: int, accepted: Accepted) -> None: ...

    async def progress(self, job_id: int, progress: Progress) -> None: ...

    async def retrying(self, job_id: int) -> None: ...

    async def finished(self, job: Job, result: Result) -> None: ...

    async def failed(self, job: Job) -> None: ...

    async def cancelled(self, job: Job) -> None: ...


@dataclass(frozen=True)
class QueuedJob:
    spec: JobSpec
    owner: int

    @property
    def sequence(self) -> int:
        return self.spec.job_id

    @property
    def size(self) -> int:
        return self.spec.image_count  # a comparison makes one image per panel

    @property
    def batch_key(self) -> Hashable:
        return self.spec.batch_key


def spec_for(job: Job, inputs_root: str | None = None) -> JobSpec:
    """The engine's view of a stored job."""
    from pathlib import Path

    def input_path(ref: str | None) -> str | None:
        if ref is None:
            return None
        return str(Path(inputs_root) / ref) if inputs_root else ref

    return JobSpec(
        **job.generation_params(),
        job_id=job.id,
        kind=JobKind(job.kind),
        model=ModelRef(job.model_name, job.model_source, job.model_revision),
        image_path=input_path(job.image_ref),
        mask_path=input_path(job.mask_ref),
        variants=lessons.variants(job),  # course comparisons; () for plain jobs
        decode_steps=lessons.decode_steps(job),
    )


class Scheduler:
    """One batch in flight; the next is chosen fairly when it ends."""

    def __init__(
        self,
        repo: Repository,
        engine: EngineLike,
        images: ImageStore,
        observer: JobObserver,
        *,
        max_batch_images: int,
        inputs_root: str | None = None,
    ) -> None:
        self._repo = repo
        self._engine = engine
        self._images = images
        self._observer = observer
        self._max_batch_images = max_batch_images
        self._inputs_root = inputs_root
        self._queue: FairQueue[QueuedJob] = FairQueue()
        self._in_flight: dict[int, QueuedJob] = {}
        self._positions: dict[int, int] = {}
        self._lock = asyncio.Lock()
        self._paused = False
        self._idle = asyncio.Event()
        self._idle.set()
        # When the engine last said something about the running batch, or was given it.
        self.last_activity = time.monotonic()

    # --- what the bot asks -------------------------------------------------------------

    async def submit(self, job: Job) -> None:
        """Queue a stored job (status queued) and start it if the engine is free."""
        async with self._lock:
            self._queue.push(QueuedJob(spec_for(job, self._inputs_root), job.user_id))
            await self._dispatch()

    async def cancel(self, job_id: int) -> bool:
        """Cancel a queued or running job; False when it is neither."""
        async with self._lock:
            queued = self._queue.remove(lambda q: q.spec.job_id == job_id)
            if queued is not None:
                job = await self._repo.mark_cancelled(job_id)
                self._positions.pop(job_id, None)
                await self._observer.cancelled(job)
                await self._announce_positions()
                return True
            if job_id in self._in_flight:
                # The engine answers with a CANCELLED error, handled like any other ending.
                await self._engine.cancel(job_id)
                return True
            return False

    def position(self, job_id: int) -> int | None:
        """0 while running, 1.. while queued, None when unknown here."""
        if job_id in self._in_flight:
            return 0
        return self._positions.get(job_id)

    def queued_for(self, user_id: int) -> int:
        return len(self._queue.items_for(user_id))

    @property
    def running(self) -> list[JobSpec]:
        return [q.spec for q in self._in_flight.values()]

    @property
    def queue_length(self) -> int:
        return len(self._queue)

    async def pause(self) -> None:
        """Stop starting batches (shutdown); the one running may finish."""
        async with self._lock:
            self._paused = True

    async def resume(self) -> None:
        """Start batches again after :meth:`pause`."""
        async with self._lock:
            self._paused = False
            await self._dispatch()

    async def wait_idle(self) -> None:
        """Return once no batch is running (callers bound the wait with asyncio.timeout)."""
        await self._idle.wait()

    # --- what the engine says ----------------------------------------------------------

    def stalled_for(self) -> float:
        """Seconds the running batch has gone without a word from the engine (0: none runs)."""
        return time.monotonic() - self.last_activity if self._in_flight else 0.0

    async def pump_events(self) -> None:
        """Handle every event the engine client queues, in order, for as long as the bot runs."""
        while True:
            event = await self._engine.events.get()
            try:
                await self.handle_event(event)
            except Exception:
                log.exception("could not handle %s from the engine", type(event).__name__)

    async def handle_event(self, event: Event) -> None:
        """Called for every engine event, in order."""
        self.last_activity = time.monotonic()
        match event:
            case Accepted(job_id=job_id) if job_id in self._in_flight:
                await self._observer.started(job_id, event)
            case Progress(job_id=job_id) if job_id in self._in_flight:
                await self._observer.progress(job_id, event)
            case Result(job_id=job_id) if job_id in self._in_flight:
                await self._finish(job_id, self._on_result(event))
            case JobError(job_id=job_id) if job_id in self._in_flight:
                await self._finish(job_id, self._on_error(event))
            case _:
                pass  # model replies and readiness are the engine client's business

    async def _finish(self, job_id: int, handling: Awaitable[None]) -> None:
        async with self._lock:
            try:
                await handling
            finally:
                self._in_flight.pop(job_id, None)
                if not self._in_flight:
                    self._idle.set()
                    await self._dispatch()

    async def _on_result(self, result: Result) -> None:
        job_id = result.job_id
        saved = [
            NewImage(
                index, image.seed, image.nsfw, await self._images.save(job_id, index, image.png)
            )
            for index, image in enumerate(result.images)
        ]
        job = await self._repo.mark_done(job_id, saved, result.model_revision)
        await self._observer.finished(job, result)

    async def _on_error(self, error: JobError) -> None:
        job_id = error.job_id
        if error.kind is ErrorKind.CANCELLED:
            job = await self._repo.mark_cancelled(job_id)
            await self._observer.cancelled(job)
            return
        if error.kind is ErrorKind.ENGINE_CRASHED:
            crashed = await self._repo.get_job(job_id)
            if crashed is not None and crashed.attempts < MAX_ATTEMPTS:
                await self._repo.mark_requeued(job_id)
                self._queue.push(self._in_flight[job_id])  # its id puts it first
                await self._observer.retrying(job_id)
                return
            job = await self._repo.mark_failed(job_id, CRASHED_TWICE)
        else:
            job = await self._repo.mark_failed(job_id, error.message)
        await self._observer.failed(job)

    # --- choosing what runs ------------------------------------------------------------

    async def _dispatch(self) -> None:
        """Start the next batch if none is running. Caller holds the lock."""
        if self._in_flight or self._paused:
            await self._announce_positions()
            return
        while batch := self._queue.next_batch(self._max_batch_images):
            started = []
            for queued in batch:
                try:
                    await self._repo.mark_running(queued.spec.job_id)
                except InvalidTransition:
                    continue  # cancelled or deleted while queued
                started.append(queued)
            if not started:
                continue
            for queued in started:
                self._in_flight[queued.spec.job_id] = queued
                self._positions.pop(queued.spec.job_id, None)
            self._idle.clear()
            self.last_activity = time.monotonic()
            try:
                await self._engine.run_batch([q.spec for q in started])
            except Exception:
                log.exception("the engine refused a batch")
                for queued in started:
                    job = await self._repo.mark_failed(queued.spec.job_id, ENGINE_DOWN)
                    self._in_flight.pop(queued.spec.job_id, None)
                    await self._observer.failed(job)
                self._idle.set()
                continue
            break
        await self._announce_positions()

    async def _announce_positions(self) -> None:
        """Tell each queued job its place when it changed."""
        positions = {q.spec.job_id: n for n, q in enumerate(self._queue.service_order(), 1)}
        changed = {job_id: n for job_id, n in positions.items() if self._positions.get(job_id) != n}
        self._positions = positions
        for job_id, position in changed.items():
            await self._observer.queued(job_id, position)

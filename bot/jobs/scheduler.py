"""Feeds the engine one batch at a time from fair per-user queues, and keeps the store true.

The scheduler knows jobs, the engine and the database, not Discord: what users see is the
observer's business (``bot.delivery`` implements it for Discord). Every status change is
written to the store before the observer hears of it, so a restart finds the truth.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from bot.jobs import lessons
from bot.jobs.fair_queue import FairQueue, Turn
from bot.jobs.image_store import ImageStore, SaveFailed
from bot.store.models import OUTLINE_INDEX, Job
from bot.store.repository import Finished, NewImage, Repository, StoreError
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
# The images were made but the disk refused them (full, or a folder the bot may not write to).
# Admins see the cause on /status and in the log; the images still count for the hour, as a
# failed job's do, since the GPU time was spent and a retry would meet the same full disk.
NOT_SAVED = "The bot could not save your images; an admin has been told. Please try again later."
# When the store refuses a job's ending (the writer has already waited out a lock for minutes),
# it is written again after this long, doubling up to the cap, until it is.
REWRITE_AFTER_S = 5.0
REWRITE_MAX_S = 60.0
# How often every queued job's message is brought to its exact position; between times it is
# edited only when the position crosses a step (``position_step``).
POSITION_REFRESH_S = 60.0


class EngineLike(Protocol):
    events: asyncio.Queue[Event]  # what the engine says, in order

    @property
    def in_flight(self) -> frozenset[int]:
        """Jobs it was given and has not finished."""
        ...

    @property
    def ready(self) -> bool:
        """Whether an engine process is up (batches given meanwhile wait for it)."""
        ...

    @property
    def slots(self) -> int:
        """How many batches the engine runs at once: 1 for the local process, one per
        replica on Ray. The scheduler keeps that many at work, plus one sent ahead."""
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

    async def finished(self, job: Job, result: Result, stored: Sequence[str] = ()) -> None:
        """``stored``: where each of the result's images was saved, in order."""
        ...

    async def failed(self, job: Job) -> None: ...

    async def cancelled(self, job: Job) -> None: ...


class FlaggedImages(Protocol):
    """Where blurred images' originals go for the moderators' review (``bot.jobs.reviews``)."""

    async def keep_original(self, job_id: int, index: int, png: bytes) -> str:
        """Store an unblurred original apart from the posted images; its path. SaveFailed
        when the disk refuses."""
        ...

    async def delete_original(self, path: str) -> None: ...

    async def flagged(self, job: Job) -> None:
        """``job`` is done and has reviews waiting: show them to the moderators."""
        ...


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
        adapters=job.adapter_refs(),
    )


def position_step(position: int) -> int:
    """The step a queue position falls in: 1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000, …

    A queued job's message is edited when its step changes, so a job that waits behind n
    others is edited O(log n) times, not n times, and the first few places are exact.
    """
    if position < 5:
        return min(position, 3)
    magnitude: int = 10 ** (len(str(position)) - 1)
    lead = position // magnitude
    return magnitude * (5 if lead >= 5 else 2 if lead >= 2 else 1)


@dataclass(eq=False)
class SentBatch:
    """Jobs sent to the engine together."""

    jobs: set[int]
    # The engine has said something about one of its jobs, so it is working on it: the next
    # batch may be sent, to wait at the engine rather than at the bot.
    begun: bool = False
    withdrawn: set[int] = field(default_factory=set)  # cancelled to stay queued (pause)


class Scheduler:
    """At most ``engine.slots`` batches at work and one more sent ahead, once the engine has
    begun all of them, so it never waits for the bot between batches. With the local engine
    (one slot) that is the batch it runs and the next; with N replicas, one batch each and
    the next for whichever frees up first. Each batch is chosen fairly from the queue when it
    is sent, so the fair order is never further than one batch ahead of the engine."""

    def __init__(
        self,
        repo: Repository,
        engine: EngineLike,
        images: ImageStore,
        observer: JobObserver,
        *,
        max_batch_images: int,
        preferred_batch_sizes: Collection[int] = (),
        position_refresh_s: float = POSITION_REFRESH_S,
        inputs_root: str | None = None,
        rewrite_after_s: float = REWRITE_AFTER_S,
        flagged: FlaggedImages | None = None,
    ) -> None:
        self._repo = repo
        self._flagged = flagged  # None: no review queue, originals are dropped
        self._engine = engine
        self._images = images
        self._observer = observer
        self._max_batch_images = max_batch_images
        self._preferred_batch_sizes = frozenset(preferred_batch_sizes)
        self._inputs_root = inputs_root
        self._queue: FairQueue[QueuedJob] = FairQueue()
        self._in_flight: dict[int, QueuedJob] = {}
        self._turns: dict[int, Turn] = {}  # the turn each job at the engine was sent with
        self._sent: deque[SentBatch] = deque()  # oldest first; at most engine.slots + 1
        self._batch_of: dict[int, SentBatch] = {}
        self._positions: dict[int, int] = {}  # every queued job's place, as last worked out
        self._shown: dict[int, int] = {}  # the place each queued job's owner was last told
        self._order_changed = False  # since positions were last worked out
        self._position_refresh_s = position_refresh_s
        self._last_refresh = time.monotonic()
        self._lock = asyncio.Lock()
        self._paused = False
        self._idle = asyncio.Event()
        self._idle.set()
        # When the engine last said something about a batch, or was given one.
        self.last_activity = time.monotonic()
        self._rewrite_after_s = rewrite_after_s
        self._rewrites: set[asyncio.Task[None]] = set()  # writes the store refused, tried again
        self._redispatch: asyncio.Task[None] | None = None

    # --- what the bot asks -------------------------------------------------------------

    async def submit(self, job: Job) -> None:
        """Queue a stored job (status queued) and send it if the engine has room."""
        async with self._lock:
            self._queue.push(QueuedJob(spec_for(job, self._inputs_root), job.user_id))
            self._order_changed = True
            await self._dispatch()

    async def cancel(self, job_id: int) -> bool:
        """Cancel a queued or running job; False when it is neither."""
        async with self._lock:
            queued = self._queue.remove(lambda q: q.spec.job_id == job_id)
            if queued is not None:
                job = await self._repo.mark_cancelled(job_id)
                self._forget_position(job_id)
                self._order_changed = True
                await self._observer.cancelled(job)
                await self._announce_positions()
                return True
            if job_id in self._in_flight:
                # The engine answers with a CANCELLED error, handled like any other ending; the
                # user's cancel wins over a withdrawal.
                self._batch_of[job_id].withdrawn.discard(job_id)
                await self._engine.cancel(job_id)
                return True
            return False

    def position(self, job_id: int) -> int | None:
        """0 while at the engine, 1.. while queued, None when unknown here."""
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
        """Stop sending batches (shutdown); the ones running may finish. A batch sent ahead,
        which the engine has not begun, is taken back: its jobs stay queued."""
        async with self._lock:
            self._paused = True
            for batch in list(self._sent)[self._engine.slots :]:
                if not batch.begun:
                    batch.withdrawn |= batch.jobs
                    for job_id in batch.jobs:
                        await self._engine.cancel(job_id)

    async def resume(self) -> None:
        """Send batches again after :meth:`pause`."""
        async with self._lock:
            self._paused = False
            await self._dispatch()

    async def wait_idle(self) -> None:
        """Return once no batch is at the engine (callers bound the wait with asyncio.timeout)."""
        await self._idle.wait()

    async def wait_written(self) -> None:
        """Return once every write the store refused (a job's ending, a batch's start) has
        been made since (callers bound the wait with asyncio.timeout)."""
        while self._rewrites:
            await asyncio.wait(set(self._rewrites))

    # --- what the engine says ----------------------------------------------------------

    def stalled_for(self) -> float:
        """Seconds the engine has gone without a word about its batches (0: it has none)."""
        return time.monotonic() - self.last_activity if self._in_flight else 0.0

    async def pump_events(self) -> None:
        """Handle every event the engine client queues, in order, for as long as the bot runs.

        What arrived meanwhile is taken together, and its results are stored in one
        transaction after the other events (a job's result is its last event).
        """
        while True:
            events = [await self._engine.events.get()]
            while not self._engine.events.empty():
                events.append(self._engine.events.get_nowait())
            results: list[Result] = []
            for event in events:
                if isinstance(event, Result) and event.job_id in self._in_flight:
                    results.append(event)
                    continue
                try:
                    await self.handle_event(event)
                except Exception:
                    log.exception("could not handle %s from the engine", type(event).__name__)
            if results:
                self.last_activity = time.monotonic()
                try:
                    await self._finish([r.job_id for r in results], self._on_results(results))
                except Exception:
                    log.exception("could not store %d result(s) from the engine", len(results))

    async def handle_event(self, event: Event) -> None:
        """Called for every engine event, in order."""
        self.last_activity = time.monotonic()
        match event:
            case Accepted(job_id=job_id) if job_id in self._in_flight:
                await self._observer.started(job_id, event)
                await self._begun(job_id)
            case Progress(job_id=job_id) if job_id in self._in_flight:
                await self._observer.progress(job_id, event)
            case Result(job_id=job_id) if job_id in self._in_flight:
                await self._finish([job_id], self._on_results([event]))
            case JobError(job_id=job_id) if job_id in self._in_flight:
                # A crash is the engine client's report, not the engine at work on the batch.
                begun = event.kind is not ErrorKind.ENGINE_CRASHED
                await self._finish([job_id], self._on_error(event), begun=begun)
            case Result():  # a job no longer ours: nothing will store its pictures
                await self._images.discard([image.png for image in event.images])
            case _:
                pass  # model replies and readiness are the engine client's business

    async def _begun(self, job_id: int) -> None:
        """The engine is working on ``job_id``'s batch: the next one may be sent."""
        batch = self._batch_of[job_id]
        if not batch.begun:
            batch.begun = True
            async with self._lock:
                await self._dispatch()

    async def _finish(
        self, job_ids: Sequence[int], handling: Awaitable[None], *, begun: bool = True
    ) -> None:
        async with self._lock:
            try:
                await handling
            finally:
                for job_id in job_ids:
                    self._in_flight.pop(job_id, None)
                    self._turns.pop(job_id, None)
                    if (batch := self._batch_of.pop(job_id, None)) is not None:
                        batch.jobs.discard(job_id)
                        batch.withdrawn.discard(job_id)
                        batch.begun = batch.begun or begun
                        if not batch.jobs:
                            self._sent.remove(batch)
                if not self._in_flight:
                    self._idle.set()
                await self._dispatch()

    async def _on_results(self, results: Sequence[Result]) -> None:
        """Save the images, mark the jobs done in one transaction, then tell the observer.
        A job whose images the disk refused fails instead, with a plain message."""
        saved: list[tuple[Finished, Result]] = []
        for result in results:
            try:
                finished = await self._save_images(result)
            except SaveFailed as error:
                log.error("job %s: its images could not be saved: %s", result.job_id, error)
                await self._write_ending([result.job_id], self._failure(result.job_id, NOT_SAVED))
                continue
            saved.append((finished, result))
        if saved:
            await self._write_ending([f.job_id for f, _ in saved], self._done(saved))

    def _done(self, saved: Sequence[tuple[Finished, Result]]) -> Callable[[], Awaitable[None]]:
        async def write() -> None:
            done = {job.id: job for job in await self._repo.mark_done_many([f for f, _ in saved])}
            for finished, result in saved:
                if (job := done.get(result.job_id)) is None:
                    log.error("job %s has a result but was not running; not shown", result.job_id)
                    continue
                stored = [image.path for image in finished.images]
                await self._tell(job.id, self._observer.finished(job, result, stored))
                if self._flagged is not None and has_originals(result):
                    await self._tell(job.id, self._flagged.flagged(job))

        return write

    async def _save_images(self, result: Result) -> Finished:
        """Every image of ``result`` on disk, or SaveFailed and none of them (the ones already
        written are removed: a job has all its images or none). A blurred image's original
        is kept apart for the review queue: a plain job's image, a comparison's panel (a
        release draws its grid again from the stored panels), or an inpainting's outline."""
        job_id = result.job_id
        reviewed = self._flagged is not None
        images: list[NewImage] = []
        written: list[str] = []
        originals: list[str] = []
        try:
            for index, image in enumerate(result.images):
                path = await self._images.save(job_id, index, image.png)
                written.append(path)
                original = None
                if reviewed and image.original_png is not None and self._flagged is not None:
                    original = await self._flagged.keep_original(job_id, index, image.original_png)
                    originals.append(original)
                verdict = image.verdict
                images.append(
                    NewImage(
                        index,
                        image.seed,
                        image.nsfw,
                        path,
                        first_flag=verdict.first if verdict else None,
                        first_score=verdict.first_score if verdict else None,
                        second_flag=verdict.second if verdict else None,
                        second_score=verdict.second_score if verdict else None,
                        original_path=original,
                    )
                )
            overlay = result.mask_overlay
            outline = None
            if reviewed and overlay is not None and overlay.original_png is not None:
                assert self._flagged is not None
                outline = await self._flagged.keep_original(
                    job_id, OUTLINE_INDEX, overlay.original_png
                )
                originals.append(outline)
        except SaveFailed:
            await self._images.discard([image.png for image in result.images[len(written) :]])
            for path in written:
                try:
                    await self._images.delete(path)
                except OSError:
                    log.warning("job %s: could not remove %s", job_id, path)
            for path in originals:
                if self._flagged is not None:
                    await self._flagged.delete_original(path)
            raise
        return Finished(job_id, images, result.model_revision, outline)

    async def _on_error(self, error: JobError) -> None:
        job_id = error.job_id
        if error.kind is ErrorKind.CANCELLED:
            if job_id in self._batch_of[job_id].withdrawn:
                # Taken back at a pause: queued again.
                await self._write_ending([job_id], self._requeue(job_id, retrying=False))
                return
            await self._write_ending([job_id], self._cancelled(job_id))
            return
        if error.kind is ErrorKind.ENGINE_CRASHED:
            await self._write_ending([job_id], self._crashed(job_id))
            return
        await self._write_ending([job_id], self._failure(job_id, error.message))

    def _failure(self, job_id: int, message: str) -> Callable[[], Awaitable[None]]:
        async def write() -> None:
            job = await self._repo.mark_failed(job_id, message)
            await self._tell(job_id, self._observer.failed(job))

        return write

    def _cancelled(self, job_id: int) -> Callable[[], Awaitable[None]]:
        async def write() -> None:
            job = await self._repo.mark_cancelled(job_id)
            await self._tell(job_id, self._observer.cancelled(job))

        return write

    def _crashed(self, job_id: int) -> Callable[[], Awaitable[None]]:
        requeue = self._requeue(job_id, retrying=True)
        fail = self._failure(job_id, CRASHED_TWICE)

        async def write() -> None:
            crashed = await self._repo.get_job(job_id)
            if crashed is not None and crashed.attempts < MAX_ATTEMPTS:
                await requeue()
            else:
                await fail()

        return write

    def _requeue(self, job_id: int, *, retrying: bool) -> Callable[[], Awaitable[None]]:
        """A job that did not run goes back to the queue, in the place it had."""
        queued, turn = self._in_flight[job_id], self._turns[job_id]  # gone once it has ended

        async def write() -> None:
            await self._repo.mark_requeued(job_id)
            self._queue.push(queued, turn)
            self._order_changed = True
            if retrying:
                await self._tell(job_id, self._observer.retrying(job_id))

        return write

    async def _tell(self, job_id: int, telling: Awaitable[None]) -> None:
        """Tell the observer; what it cannot show changes nothing in the store."""
        try:
            await telling
        except Exception:
            log.exception("job %s: the observer could not show its new state", job_id)

    async def _write_ending(
        self, job_ids: Sequence[int], write: Callable[[], Awaitable[None]]
    ) -> None:
        """Write how the engine ended ``job_ids`` (then tell the observer). The jobs leave the
        engine's side whatever happens: if the store refuses the write, it is tried again in
        the background until it lands, so no job stays running with nothing at the engine."""
        try:
            await write()
        except StoreError as error:  # ended or deleted meanwhile: nothing left to write
            log.warning("job(s) %s: %s", _ids(job_ids), error)
        except Exception:
            log.exception(
                "job(s) %s: could not store how they ended; trying again in %.0f s",
                _ids(job_ids),
                self._rewrite_after_s,
            )
            task = asyncio.create_task(self._rewrite(job_ids, write), name="rewrite-ending")
            self._rewrites.add(task)
            task.add_done_callback(self._rewrites.discard)

    async def _rewrite(self, job_ids: Sequence[int], write: Callable[[], Awaitable[None]]) -> None:
        delay = self._rewrite_after_s
        while True:
            await asyncio.sleep(delay)
            try:
                await write()
            except StoreError as error:
                log.warning("job(s) %s: %s", _ids(job_ids), error)
                return
            except Exception as error:
                # A zero first pause (tests) must not become a busy loop.
                delay = min(max(delay * 2, 0.1), REWRITE_MAX_S)
                log.error(
                    "job(s) %s: still could not store how they ended (%s); again in %.0f s",
                    _ids(job_ids),
                    error,
                    delay,
                )
                continue
            log.warning("job(s) %s: their ending is stored at last", _ids(job_ids))
            try:
                async with self._lock:
                    await self._dispatch()  # a job requeued meanwhile may run now
            except Exception:
                log.exception("could not send the next batch")
            return

    # --- choosing what runs ------------------------------------------------------------

    def _may_send(self) -> bool:
        """Whether a batch may go to the engine now: it has a free slot, or every slot is busy
        with a batch it has begun and none is sent ahead yet."""
        if self._paused:
            return False
        slots = self._engine.slots
        if len(self._sent) < slots:
            return True
        return len(self._sent) == slots and all(batch.begun for batch in self._sent)

    async def _dispatch(self) -> None:
        """Send the next batch if the engine has room, then tell queued jobs their places.
        Caller holds the lock."""
        while self._may_send() and (
            batch := self._queue.take_batch(self._max_batch_images, self._preferred_batch_sizes)
        ):
            self._order_changed = True
            # One transaction for the batch; jobs cancelled or deleted while queued stay out.
            try:
                running = await self._repo.mark_running_many([q.spec.job_id for q, _ in batch])
            except Exception:
                # Not started, so not sent: back in their places, to be tried again shortly.
                log.exception("could not mark a batch running; it stays queued")
                for queued, turn in batch:
                    self._queue.push(queued, turn)
                self._dispatch_later()
                break
            started = []
            for queued, turn in batch:
                if queued.spec.job_id in running:
                    started.append(queued)
                    self._turns[queued.spec.job_id] = turn
            if not started:
                continue
            sent = SentBatch({q.spec.job_id for q in started})
            for queued in started:
                self._in_flight[queued.spec.job_id] = queued
                self._batch_of[queued.spec.job_id] = sent
                self._forget_position(queued.spec.job_id)
            self._sent.append(sent)
            self._idle.clear()
            self.last_activity = time.monotonic()
            try:
                await self._engine.run_batch([q.spec for q in started])
            except Exception:
                log.exception("the engine refused a batch")
                self._sent.remove(sent)
                for queued in started:
                    job = await self._repo.mark_failed(queued.spec.job_id, ENGINE_DOWN)
                    self._in_flight.pop(queued.spec.job_id, None)
                    self._batch_of.pop(queued.spec.job_id, None)
                    self._turns.pop(queued.spec.job_id, None)
                    await self._observer.failed(job)
                if not self._in_flight:
                    self._idle.set()
        await self._announce_positions()

    def _dispatch_later(self) -> None:
        """Try sending a batch again after a pause (the store refused to start one)."""
        if self._redispatch is not None and not self._redispatch.done():
            return

        async def again() -> None:
            await asyncio.sleep(self._rewrite_after_s)
            self._redispatch = None  # a refusal this time schedules the next try
            try:
                async with self._lock:
                    await self._dispatch()
            except Exception:
                log.exception("could not send the next batch")

        self._redispatch = asyncio.create_task(again(), name="dispatch-again")
        self._rewrites.add(self._redispatch)
        self._redispatch.add_done_callback(self._rewrites.discard)

    def _forget_position(self, job_id: int) -> None:
        self._positions.pop(job_id, None)
        self._shown.pop(job_id, None)

    async def _announce_positions(self) -> None:
        """Tell queued jobs their places: a job new to the queue, or whose place crossed a
        step, at once; every job whose place changed at all, every ``position_refresh_s``.

        Edits so grow with the log of the queue per job, not with the queue, whatever the
        size of the burst.
        """
        now = time.monotonic()
        refresh = now - self._last_refresh >= self._position_refresh_s
        if not (self._order_changed or refresh):
            return
        self._order_changed = False
        if refresh:
            self._last_refresh = now
        self._positions = {q.spec.job_id: n for n, q in enumerate(self._queue.service_order(), 1)}
        told = []
        for job_id, position in self._positions.items():
            shown = self._shown.get(job_id)
            if shown is None:
                tell = True
            elif refresh:
                tell = position != shown
            else:
                tell = position_step(position) != position_step(shown)
            if tell:
                self._shown[job_id] = position
                told.append((job_id, position))
        for job_id, position in told:
            await self._observer.queued(job_id, position)


def has_originals(result: Result) -> bool:
    """Whether ``result`` has blurred pictures whose originals wait for a moderator."""
    overlay = result.mask_overlay
    return any(image.original_png for image in result.images) or bool(
        overlay and overlay.original_png
    )


def _ids(job_ids: Sequence[int]) -> str:
    return ", ".join(str(job_id) for job_id in job_ids)

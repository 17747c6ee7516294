"""The end of a pipeline call, off the GPU's thread: pictures to PNGs to ``Result`` events.

The worker's thread drives the GPU. What a batch needs after its pipeline call is mostly CPU
work (turning pixels into PIL images, obscuring flagged ones, PNG encoding with parameters,
building the results), so the runner does on its own thread only what needs the device (the
safety checker, one copy of the batch's pixels to host memory) and hands the rest to a
``Finisher``: a few threads that make the events and emit them while the next batch's
pipeline call already runs. zlib and Pillow release the GIL while they encode, so the threads
really run beside the GPU's thread.

Order: a job's ``Accepted`` and ``Progress`` events are all emitted before its finishing is
handed over, and its ``Result`` (or, if the finishing breaks, a ``JobError``) comes from the
finisher after that, so each job's events stay in order; jobs of different batches may finish
in either order. The finisher holds at most a few batches at once, so a GPU faster than the
encoding waits instead of filling memory. ``drain`` waits until every handed-over batch is out.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from engine.protocol import ErrorKind, Event, JobError, JobSpec

log = logging.getLogger(__name__)

MakeEvents = Callable[[], Sequence[Event]]
Emit = Callable[[Event], None]


def internal_message(error_id: str, what: str = "this image") -> str:
    """What a user reads when something unexpected broke; the id ties it to the log line."""
    return f"something went wrong while making {what} (error {error_id})"


def finish_now(jobs: Sequence[JobSpec], make_events: MakeEvents, emit: Emit) -> None:
    """Make ``jobs``' last events and emit them, in this thread; if making them fails, every
    job in ``jobs`` ends with an internal error instead (none is left without an end)."""
    try:
        events = make_events()
    except Exception:
        error_id = uuid.uuid4().hex[:8]
        log.exception("finishing jobs %s failed (error %s)", [j.job_id for j in jobs], error_id)
        events = [
            JobError(job_id=job.job_id, kind=ErrorKind.INTERNAL, message=internal_message(error_id))
            for job in jobs
        ]
    for event in events:
        emit(event)


class Finisher:
    """Runs ``finish_now`` in a few threads; ``submit`` waits while too many batches are in."""

    def __init__(self, threads: int) -> None:
        self._threads = threads
        self._pool: ThreadPoolExecutor | None = None  # started on the first batch
        self._slots = threading.BoundedSemaphore(2 * threads)
        self._lock = threading.Lock()
        self._pending: set[Future[None]] = set()

    def submit(self, jobs: Sequence[JobSpec], make_events: MakeEvents, emit: Emit) -> None:
        """Finish ``jobs`` in a finishing thread (see ``finish_now``)."""
        self._slots.acquire()
        try:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="finish")
                future = self._pool.submit(finish_now, jobs, make_events, emit)
                self._pending.add(future)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(self._done)

    def _done(self, future: Future[None]) -> None:
        with self._lock:
            self._pending.discard(future)
        self._slots.release()

    def drain(self) -> None:
        """Wait until every submitted batch has emitted its events."""
        while True:
            with self._lock:
                pending = list(self._pending)
            if not pending:
                return
            for future in pending:
                future.exception()  # waits; finish_now reports its own errors

    def close(self) -> None:
        """Drain, then stop the threads."""
        self.drain()
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

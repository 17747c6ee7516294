"""The bot's side of the engine: start the engine process, talk to it, survive its death.

Only ``engine.protocol`` is imported from the engine package: no torch, no diffusers. The
engine runs as ``python -m engine serve`` with framed messages on its stdin and stdout; its
stderr is forwarded to this process's logging.

Events reach the bot through ``EngineClient.events``, an ``asyncio.Queue``: every ``Ready``,
``Accepted``, ``Progress``, ``Result`` and ``JobError``, in the order the engine sent them.
Answers to model requests (``ModelsReply``) are not queued; ``load_model``, ``unload_model`` and
``list_models`` return them.

When the process dies (crash, out-of-memory kill, ``kill -9``) every job sent to it that had not
finished gets a ``JobError`` of kind ``ENGINE_CRASHED`` (retryable) in the queue, waiting model
requests raise ``EngineUnavailable``, and the process is started again after a growing pause. After
too many deaths in a short time it keeps trying, at a long pause (``retry_every_s``), saying so in
the log and in ``/status`` (``retry_at``): jobs wait in the queue meanwhile, where giving up would
fail every one of them at once and leave the bot without an engine until someone restarts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.settings import bot_env_prefixes
from engine.protocol import (
    Accepted,
    Cancel,
    ErrorKind,
    Event,
    JobError,
    JobKind,
    JobSpec,
    ListModels,
    LoadModel,
    ModelRef,
    ModelsReply,
    Progress,
    Ready,
    Request,
    Result,
    RunBatch,
    Shutdown,
    UnloadModel,
    frame,
    read_message_async,
)

log = logging.getLogger(__name__)
engine_log = logging.getLogger(f"{__name__}.engine")  # what the engine process logs

CRASHED_MESSAGE = "the image engine stopped while working on this; it is being restarted"
STOPPED_MESSAGE = "the image engine shut down before this finished"
NOT_STARTED_MESSAGE = "The image engine could not be started; an admin has been told."
# The generation of a job whose batch waits for the engine to be ready (real ones start at 1).
WAITING = 0
_ROOT = Path(__file__).resolve().parents[1]  # holds the `engine` package in a checkout
_STREAM_LIMIT = 1024 * 1024
# The longest line of the engine's stderr that is logged; the rest of a longer one is counted
# and dropped. (Its event stream is bounded by the protocol: MAX_FRAME_BYTES.)
MAX_LOG_LINE_BYTES = 16 * 1024
_READ_BYTES = 64 * 1024


class EngineUnavailable(Exception):
    """The engine cannot take requests now; ``str(error)`` is safe to show to users."""


class EngineClient:
    """Runs the engine as a child process and exchanges requests and events with it."""

    def __init__(
        self,
        *,
        command: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        start_timeout: float = 300.0,
        request_timeout: float = 60.0,
        load_timeout: float = 900.0,
        stop_timeout: float = 30.0,
        max_restarts: int = 5,
        restart_window_s: float = 600.0,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        retry_every_s: float = 300.0,
        spool: Path | None = None,
    ) -> None:
        """``command`` defaults to ``python -m engine serve``; ``env`` is added to our
        environment, from which the bot's own settings are dropped (``_child_env``).
        ``spool``: the folder where the engine writes result pictures instead of piping them
        (``ImageStore.spool``, which moves them into place); None: they come in the frames.

        The pause before a restart doubles from ``backoff_s`` up to ``max_backoff_s``; past
        ``max_restarts`` deaths within ``restart_window_s`` it is ``retry_every_s``.
        """
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self._command = list(command or [sys.executable, "-m", "engine", "serve"])
        self._env = dict(env or {})
        if spool is not None:
            self._env["ENGINE_SPOOL_DIR"] = str(spool)
        self._cwd = cwd
        self._start_timeout = start_timeout
        self._request_timeout = request_timeout
        self._load_timeout = load_timeout
        self._stop_timeout = stop_timeout
        self._max_restarts = max_restarts
        self._restart_window_s = restart_window_s
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._retry_every_s = retry_every_s

        self._proc: asyncio.subprocess.Process | None = None
        self._generation = 0  # which process a job was sent to
        self._in_flight: dict[int, int] = {}  # job id -> generation (WAITING: not sent yet)
        # Batches given while the engine was (re)starting, sent in order once it is ready.
        self._waiting: deque[tuple[JobSpec, ...]] = deque()
        self._pending: dict[int, asyncio.Future[ModelsReply]] = {}
        self._request_ids = itertools.count(1)
        self._write_lock = asyncio.Lock()
        self._state = asyncio.Condition()
        self._ready = False
        self._failure: str | None = None  # set when the engine cannot be started at all
        self._stopping = False
        self._stop_requested = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._crashes: deque[float] = deque()
        self._retry_due: float | None = None  # monotonic time of the next start while pausing
        self._failing_often = False  # past max_restarts deaths in the window: long pauses

        self.restarts = 0
        self.started_at: datetime | None = None  # when the running process became ready
        self.last_ready: Ready | None = None
        self.retry_at: datetime | None = None  # when the next start is due, while failing often

    # --- status ------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The engine process id, while one runs."""
        return self._proc.pid if self._proc is not None else None

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def slots(self) -> int:
        """One process, one batch at a time."""
        return 1

    @property
    def failed(self) -> str | None:
        """Why the engine cannot be started at all (it exits by itself before it is ever ready:
        a setting or a package is wrong); None otherwise, since after deaths it is always
        tried again."""
        return self._failure

    @property
    def recent_deaths(self) -> int:
        """How often the engine died within the restart window."""
        now = time.monotonic()
        return sum(1 for at in self._crashes if now - at <= self._restart_window_s)

    @property
    def in_flight(self) -> frozenset[int]:
        """Jobs sent to the engine that have not finished."""
        return frozenset(self._in_flight)

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> Ready:
        """Start the engine and wait until it is ready; raises ``EngineUnavailable`` if not."""
        if self._supervisor is not None:
            raise RuntimeError("the engine client was already started")
        self._supervisor = asyncio.create_task(self._supervise(), name="engine-supervisor")
        await self._wait_ready(self._start_timeout)
        assert self.last_ready is not None
        return self.last_ready

    async def stop(self) -> None:
        """Ask the engine to finish its batch and exit; kill it if it does not in time."""
        self._stopping = True
        self._stop_requested.set()
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(EngineUnavailable):
                await self._send(Shutdown())
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), self._stop_timeout)
            except TimeoutError:
                log.warning("the engine did not stop in %.0fs; killing it", self._stop_timeout)
                proc.kill()
        if self._supervisor is not None:
            await self._supervisor
        self._fail_jobs(WAITING, STOPPED_MESSAGE)  # stopped during a pause: never sent

    def kill(self) -> None:
        """Kill the engine process now (it hangs, say): it is restarted, bounded as for any
        crash, and the jobs it had are reported as crashed."""
        proc = self._proc
        if proc is not None and proc.returncode is None:
            log.error("killing engine process %d", proc.pid)
            proc.kill()

    # --- requests ----------------------------------------------------------------------

    async def run_batch(self, jobs: Iterable[JobSpec]) -> None:
        """Send jobs to run; their events arrive in ``events``.

        Returns at once: while the engine is (re)starting, the batch waits here and is sent
        when it is ready, so a caller holding a lock (the scheduler) never holds it through a
        restart. Raises ``EngineUnavailable`` when the engine cannot be started at all.
        """
        if self._failure is not None:
            raise EngineUnavailable(self._failure)
        if self._stopping:
            raise EngineUnavailable("the image engine is shutting down")
        batch = tuple(jobs)
        for job in batch:
            self._in_flight[job.job_id] = WAITING
        self._waiting.append(batch)
        await self._send_waiting()

    async def _send_waiting(self) -> None:
        """Send the waiting batches, oldest first, while the engine is ready."""
        while self._ready and self._waiting:
            batch = self._waiting.popleft()
            jobs = tuple(j for j in batch if self._in_flight.get(j.job_id) == WAITING)
            if not jobs:
                continue  # all cancelled while waiting
            # No await between recording the jobs and queueing the write (the lock is fair),
            # so batches go out in order and a process that dies from here on is known to
            # have had them.
            for job in jobs:
                self._in_flight[job.job_id] = self._generation
            await self._send(RunBatch(jobs=jobs), quiet=True)

    async def cancel(self, job_id: int) -> None:
        """Ask the engine to cancel a job; it ends with a ``JobError`` of kind CANCELLED.

        A job still waiting for the engine to be ready is taken out at once, here."""
        generation = self._in_flight.get(job_id)
        if generation == WAITING:
            del self._in_flight[job_id]
            self.events.put_nowait(
                JobError(job_id=job_id, kind=ErrorKind.CANCELLED, message="cancelled")
            )
        elif generation is not None and self._ready:
            await self._send(Cancel(job_id=job_id), quiet=True)

    async def load_model(
        self, model: ModelRef, kind: JobKind, *, replicas: int | None = None
    ) -> ModelsReply:
        """Load a model (a no-op when loaded); the reply says whether it worked and why not.
        ``replicas`` is for engines of several replicas: this one process is all of them.

        Raises ``TimeoutError`` after ``load_timeout`` seconds, ``EngineUnavailable`` when the
        engine is down or died meanwhile; so do the other model requests.
        """
        request_id = next(self._request_ids)
        message = LoadModel(request_id=request_id, model=model, kind=kind)
        return await self._ask(request_id, message, self._load_timeout)

    async def unload_model(self, model: ModelRef, *, adapter: str = "") -> ModelsReply:
        """Unload a model (matched by reference, else by name); with ``adapter``, only take
        that adapter out of every loaded model."""
        request_id = next(self._request_ids)
        message = UnloadModel(request_id=request_id, model=model, adapter=adapter)
        return await self._ask(request_id, message, self._request_timeout)

    async def list_models(self) -> ModelsReply:
        """What is loaded, least recently used first; answered even while a batch runs."""
        request_id = next(self._request_ids)
        message = ListModels(request_id=request_id)
        return await self._ask(request_id, message, self._request_timeout)

    async def _ask(self, request_id: int, message: Request, limit_s: float) -> ModelsReply:
        await self._wait_ready(self._start_timeout)
        reply: asyncio.Future[ModelsReply] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = reply
        try:
            await self._send(message)
            return await asyncio.wait_for(reply, limit_s)
        finally:
            self._pending.pop(request_id, None)

    async def _send(self, message: Request, *, quiet: bool = False) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None or proc.returncode is not None:
            if quiet:
                return  # the supervisor reports what was in flight
            raise EngineUnavailable("the image engine is not running")
        try:
            async with self._write_lock:
                proc.stdin.write(frame(message))
                await proc.stdin.drain()
        except (ConnectionError, RuntimeError) as error:
            log.warning("could not write to the engine: %s", error)
            if not quiet:
                raise EngineUnavailable("the image engine is not running") from error

    def _pause_left(self) -> float:
        return max(0.0, self._retry_due - time.monotonic()) if self._retry_due is not None else 0.0

    async def _wait_ready(self, limit_s: float) -> None:
        """Wait until the engine is ready, ``limit_s`` for a start; a long pause before a
        restart is refused at once (an admin's request should not hang for minutes)."""

        def settled() -> bool:
            return self._ready or self._failure is not None or self._stopping

        loop = asyncio.get_running_loop()
        async with self._state:
            if self._failing_often and self._pause_left() > 0:
                raise EngineUnavailable(
                    "the image engine keeps failing; it is tried again every "
                    f"{self._retry_every_s:g}s"
                )
            deadline = loop.time() + limit_s + self._pause_left()
            while not settled():
                left = deadline - loop.time()
                if left <= 0:
                    raise EngineUnavailable("the image engine is taking too long to start")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._state.wait(), left)
        if self._failure is not None:
            raise EngineUnavailable(self._failure)
        if not self._ready:
            raise EngineUnavailable("the image engine is shutting down")

    async def _set_state(self, *, ready: bool | None = None, failure: str | None = None) -> None:
        async with self._state:
            if ready is not None:
                self._ready = ready
            if failure is not None:
                self._failure = failure
            self._state.notify_all()

    # --- the process -------------------------------------------------------------------

    def _child_env(self) -> dict[str, str]:
        """Our environment without the bot's own settings (the Discord token, the database
        URL…: the engine needs none of them), plus ``PYTHONPATH`` and ``env``."""
        secret = bot_env_prefixes()
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith(secret)}
        # So `-m engine` resolves from a checkout whatever the working directory.
        path = env.get("PYTHONPATH")
        env["PYTHONPATH"] = str(_ROOT) + (os.pathsep + path if path else "")
        env.update(self._env)
        return env

    async def _supervise(self) -> None:
        while not self._stopping:
            try:
                proc = await asyncio.create_subprocess_exec(
                    *self._command,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    env=self._child_env(),
                    cwd=self._cwd,
                    limit=_STREAM_LIMIT,
                )
            except OSError as error:
                log.error("could not start the engine (%s)", error)
                await self._set_state(failure="the image engine could not be started")
                self._fail_jobs(WAITING, NOT_STARTED_MESSAGE, kind=ErrorKind.INTERNAL)
                return
            if self._stopping:  # stop() came while this one was starting
                proc.kill()
            self._proc = proc
            self._generation += 1
            generation = self._generation
            log.info("engine process %d started", proc.pid)
            reader = asyncio.create_task(self._read_events(proc), name="engine-events")
            stderr = asyncio.create_task(self._forward_stderr(proc), name="engine-stderr")
            code = await proc.wait()
            # Take what it wrote before dying (a Result may be in the pipe). A grandchild could
            # hold the pipes open, so this wait is bounded.
            _, unfinished = await asyncio.wait({reader, stderr}, timeout=10.0)
            for task in unfinished:
                task.cancel()
            # Not ready from here on: jobs sent until now belong to this process and are
            # failed below; later ones wait for the next process.
            await self._set_state(ready=False)
            self._proc = None
            self.started_at = None
            expected = self._stopping
            if expected:
                log.info("engine process %d exited with %s", proc.pid, code)
            else:
                log.error("engine process %d died (exit status %s)", proc.pid, code)
            self._fail_jobs(generation, STOPPED_MESSAGE if expected else CRASHED_MESSAGE)
            self._fail_requests()
            if expected:
                self._fail_jobs(WAITING, STOPPED_MESSAGE)  # never to be sent now
                return
            if self.last_ready is None and code >= 0:
                # Exited by itself before it ever came up: a setup problem (a bad setting, a
                # missing package) that restarting cannot fix. Killed by a signal instead (the
                # OOM killer, an operator), it is restarted like any crash.
                await self._set_state(failure="the image engine could not be started")
                self._fail_jobs(WAITING, NOT_STARTED_MESSAGE, kind=ErrorKind.INTERNAL)
                return
            delay = self._next_delay()
            self._failing_often = len(self._crashes) > self._max_restarts
            if self._failing_often:
                log.error(
                    "the engine died %d times in %gs; trying again in %gs, and as long as it "
                    "keeps failing, every %gs",
                    len(self._crashes),
                    self._restart_window_s,
                    delay,
                    delay,
                )
            else:
                log.info("restarting the engine in %.1fs", delay)
            self._retry_due = time.monotonic() + delay
            self.retry_at = datetime.now(UTC) + timedelta(seconds=delay)
            await self._set_state()  # waiters see the pause and extend their deadlines
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_requested.wait(), delay)
            self._retry_due = None
            self.retry_at = None
            if not self._stopping:
                self.restarts += 1

    def _next_delay(self) -> float:
        now = time.monotonic()
        self._crashes.append(now)
        while self._crashes and now - self._crashes[0] > self._restart_window_s:
            self._crashes.popleft()
        if len(self._crashes) > self._max_restarts:
            return self._retry_every_s
        return min(self._max_backoff_s, self._backoff_s * 2.0 ** (len(self._crashes) - 1))

    def _fail_jobs(
        self, generation: int, message: str, *, kind: ErrorKind = ErrorKind.ENGINE_CRASHED
    ) -> None:
        """End the jobs sent to ``generation`` (WAITING: the jobs not sent yet) with ``kind``."""
        lost = [job_id for job_id, sent_to in self._in_flight.items() if sent_to == generation]
        if generation == WAITING:
            self._waiting.clear()
        for job_id in lost:
            del self._in_flight[job_id]
            self.events.put_nowait(JobError(job_id=job_id, kind=kind, message=message))
        if lost:
            log.warning("jobs %s were lost with the engine process", lost)

    def _fail_requests(self) -> None:
        for reply in self._pending.values():
            if not reply.done():
                reply.set_exception(EngineUnavailable("the image engine restarted; try again"))
        self._pending.clear()

    async def _read_events(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        try:
            while (message := await read_message_async(proc.stdout)) is not None:
                await self._dispatch(message)
        except Exception:
            log.exception("unreadable event stream from engine process %d; killing it", proc.pid)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            return
        if proc.returncode is None and not self._stopping:
            # Its events are gone, so the process is of no use even if it still runs.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 5.0)
            if proc.returncode is None:
                log.error("engine process %d closed its event stream; killing it", proc.pid)
                proc.kill()

    async def _dispatch(self, message: object) -> None:
        if isinstance(message, ModelsReply):
            reply = self._pending.get(message.request_id)
            if reply is not None and not reply.done():
                reply.set_result(message)
            return
        if isinstance(message, Ready):
            self.last_ready = message
            self.started_at = datetime.now(UTC)
            log.info("engine ready: pid %d on %s (%s)", message.pid, message.device, message.dtype)
            await self._set_state(ready=True)
            await self._send_waiting()
        elif isinstance(message, Result | JobError):
            self._in_flight.pop(message.job_id, None)
        elif not isinstance(message, Accepted | Progress):
            log.warning("ignoring an unexpected %s from the engine", type(message).__name__)
            return
        self.events.put_nowait(message)

    async def _forward_stderr(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        async for line, dropped in bounded_lines(proc.stderr, MAX_LOG_LINE_BYTES):
            if line.strip() or dropped:
                text = line.decode("utf-8", "replace").rstrip()
                engine_log.info("%s%s", text, f" … ({dropped} more bytes)" if dropped else "")


async def bounded_lines(
    stream: asyncio.StreamReader, most: int
) -> AsyncIterator[tuple[bytes, int]]:
    """The lines of ``stream`` (without their newline), each cut to its first ``most`` bytes,
    with how many bytes were cut; never more than ``most`` bytes of a line are held, however
    long the line runs (a process printing without newlines cannot grow our memory)."""
    line = bytearray()
    dropped = 0

    def keep(piece: bytes) -> None:
        nonlocal dropped
        room = max(0, most - len(line))
        line.extend(piece[:room])
        dropped += max(0, len(piece) - room)

    while chunk := await stream.read(_READ_BYTES):
        *complete, rest = chunk.split(b"\n")
        for piece in complete:  # each ends a line
            keep(piece)
            yield bytes(line), dropped
            line.clear()
            dropped = 0
        keep(rest)
    if line or dropped:
        yield bytes(line), dropped

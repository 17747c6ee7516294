"""The engine as replicas on Ray Serve (``ENGINE_BACKEND=ray``): the scheduler's second backend.

It speaks to the scheduler exactly as ``EngineClient`` does (``EngineLike``): batches of frozen
``JobSpec`` in, the same ``Accepted``/``Progress``/``Result``/``JobError`` events out through
``events``, cancels by job id, and the admin's model requests. Behind it, each replica is
today's engine worker running in-process in a Ray Serve replica (``engine.serve.replica``),
one GPU each when the cluster has GPUs.

Capacity, and where fairness lives
    An engine tells the scheduler its ``slots``: how many batches it runs at once. The local
    client has one; this backend has one per replica. The scheduler keeps at most ``slots``
    batches at work plus one sent ahead, chosen fairly when it is sent: the local client's
    "the running batch and the next" is the case of one slot, unchanged. Here the batch sent
    ahead waits in this object, never in Ray's queues, and goes to whichever replica frees up
    first; a replica is given one batch at a time. So the fair queue stays in the bot, and a
    replica that finishes starts its next batch after one call, not after the scheduler's
    round trip through the database.

Affinity
    Each replica says what it holds after every batch (and on ``/models``). When a batch could
    go to several free replicas, it goes to one that has its model loaded, else to the one
    holding the fewest models, so models spread out rather than being loaded everywhere.

Why one Serve application per replica
    Serve's router chooses the replica for each request (two random choices by queue length;
    model multiplexing is a preference that falls back to any replica after a timeout); a
    request cannot name its replica. The bot needs exactly that: a cancel must reach the replica
    running the job, a replica gets a batch only when it is free, and ``/models`` says which
    replica holds what. So replica *i* is a one-replica deployment of the same class in its own
    application (``diffusion-engine-<i>``): its handle reaches that replica, and Serve still
    starts a new one when its process dies.

Faults
    A replica that dies mid-batch ends its stream with an error: its jobs not yet finished get
    a ``JobError`` of kind ``ENGINE_CRASHED`` (the scheduler retries each once, on whichever
    replica is free, then fails it with a message), and the replica is probed until Serve has
    replaced it. A cluster that cannot be reached at start raises ``ClusterUnreachable``, whose
    message names ``RAY_ADDRESS`` (``bot.app`` makes it a one-line exit with code 2).

The bot process never imports torch: Ray is imported here only when the backend connects,
and the replica class comes from ``engine.serve.replica``, which imports only the protocol at
the top (torch and the worker are imported in its constructor, in the replica's process; Ray
pickles the class by reference). ``tests/bot/jobs/test_ray_engine.py`` checks it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from bot.jobs.engine_client import CRASHED_MESSAGE, STOPPED_MESSAGE, EngineUnavailable
from bot.settings import bot_env_prefixes
from engine.protocol import (
    ErrorKind,
    Event,
    JobError,
    JobKind,
    JobSpec,
    LoadedModel,
    ModelRef,
    ModelsReply,
    Ready,
    Result,
)

log = logging.getLogger(__name__)

APP_PREFIX = "diffusion-engine"  # replica i is the Serve application "diffusion-engine-<i>"
# A batch, plus the cancels, listings and probes that may arrive while it runs.
CALLS_PER_REPLICA = 8
HEALTH_CHECK_PERIOD_S = 2.0  # how soon Serve notices a replica that hangs
CONNECT_PROBE_S = 5.0  # how long the bot waits for the cluster's port before giving up


class ClusterUnreachable(Exception):
    """The Ray cluster cannot be reached (or Ray is not installed); the message, one line,
    says what to fix."""


@dataclass(eq=False)
class Replica:
    """What the bot knows of one replica."""

    index: int
    handle: Any  # ray.serve.handle.DeploymentHandle
    ready: Ready | None = None  # None while it starts, or after it died until it is back
    batch: frozenset[int] | None = None  # the jobs it runs now
    holds: tuple[LoadedModel, ...] = ()  # as it last said
    started_at: datetime | None = None

    @property
    def free(self) -> bool:
        return self.ready is not None and self.batch is None

    def holds_model(self, model: ModelRef) -> bool:
        return any((m.model.name, m.model.source) == (model.name, model.source) for m in self.holds)

    def describe(self) -> str:
        """One line for /status: state, pid, what it runs and holds."""
        if self.ready is None:
            return f"replica {self.index}: starting"
        work = f"{len(self.batch)} job(s) running" if self.batch else "idle"
        models = ", ".join(m.model.name for m in self.holds) or "no model"
        where = f"pid {self.ready.pid} on {self.ready.device}"
        return f"replica {self.index}: {where} · {work} · {models}"


class RayEngine:
    """Engine replicas on a Ray cluster, as one engine for the scheduler (see the module)."""

    def __init__(
        self,
        *,
        replicas: int | None = None,
        address: str = "",
        env: Mapping[str, str] | None = None,
        cpus_per_replica: float = 1.0,
        app_prefix: str = APP_PREFIX,
        local_testing: bool = False,
        request_timeout: float = 60.0,
        load_timeout: float = 900.0,
        stop_timeout: float = 30.0,
        probe_every_s: float = 0.5,
    ) -> None:
        """``replicas``: how many (None: one per GPU the cluster has, at least one).
        ``address``: ``RAY_ADDRESS`` (empty: a new cluster on this machine, on loopback).
        ``env``: variables for the replicas (``ENGINE_*`` settings and the like), on top of the
        bot's own ``ENGINE_*``. ``app_prefix``: the Serve applications' names (replica *i* is
        ``<prefix>-<i>``). ``local_testing``: Serve's in-process mode, for tests."""
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self._wanted = replicas
        self._address = address
        self._env = dict(env or {})
        self._cpus_per_replica = cpus_per_replica
        self._app_prefix = app_prefix
        self._local_testing = local_testing
        self._request_timeout = request_timeout
        self._load_timeout = load_timeout
        self._stop_timeout = stop_timeout
        self._probe_every_s = probe_every_s

        self._connected = False
        self._own_cluster = False  # started here, so shut down here
        self._gpus = 0.0
        self._count = replicas or 1
        self._replicas: list[Replica] = []
        self._in_flight: dict[int, Replica | None] = {}  # job id -> its replica (None: waiting)
        self._waiting: deque[tuple[JobSpec, ...]] = deque()  # the batch sent ahead, at most
        self._tasks: set[asyncio.Task[None]] = set()
        self._streams: set[asyncio.Task[None]] = set()
        self._started = False
        self._stopping = False
        self._failure: str | None = None
        self._deaths: deque[float] = deque()

        self.restarts = 0
        self.started_at: datetime | None = None
        self.retry_at: datetime | None = None  # Serve restarts replicas itself, at once
        self.last_ready: Ready | None = None

    # --- status ------------------------------------------------------------------------

    @property
    def slots(self) -> int:
        """Batches run at once: one per replica."""
        return self._count

    @property
    def ready(self) -> bool:
        return any(r.ready is not None for r in self._replicas)

    @property
    def in_flight(self) -> frozenset[int]:
        return frozenset(self._in_flight)

    @property
    def failed(self) -> str | None:
        return self._failure

    @property
    def pid(self) -> int | None:
        """None: the replicas' pids are in ``replica_lines``."""
        return None

    @property
    def recent_deaths(self) -> int:
        now = time.monotonic()
        return sum(1 for at in self._deaths if now - at <= 600.0)

    @property
    def replica_pids(self) -> list[int | None]:
        """Each replica's process id, None while it (re)starts."""
        return [r.ready.pid if r.ready else None for r in self._replicas]

    @property
    def replica_lines(self) -> tuple[str, ...]:
        """One line per replica, for /status."""
        return tuple(r.describe() for r in self._replicas)

    # --- lifecycle ---------------------------------------------------------------------

    async def connect(self) -> None:
        """Join ``RAY_ADDRESS``'s cluster, or start one on this machine; learn how many
        replicas to run. Raises ``ClusterUnreachable``. Called before Discord is contacted, so
        a wrong address ends the start at once."""
        if self._connected:
            return
        if self._address and not self._local_testing:
            await asyncio.to_thread(_probe, self._address)
        try:
            import ray
        except ImportError:
            raise ClusterUnreachable(
                "ENGINE_BACKEND=ray needs Ray: install it with pip install -e '.[ray]'."
            ) from None
        if not self._local_testing:
            await asyncio.to_thread(self._init_ray)
            self._gpus = float(ray.cluster_resources().get("GPU", 0.0))
        self._count = self._wanted or max(1, int(self._gpus))
        self._connected = True
        log.info("Ray backend: %d replica(s), %g GPU(s) in the cluster", self._count, self._gpus)

    def _init_ray(self) -> None:
        import ray

        if ray.is_initialized():
            return  # this process joined a cluster already (a bench, a host program)
        try:
            if self._address:
                ray.init(address=self._address, logging_level=logging.WARNING)
                return
            # A cluster of our own, on loopback; its processes inherit our environment, from
            # which the bot's own settings (the Discord token among them) are kept out.
            with _environ_without(bot_env_prefixes()):
                ray.init(
                    address="local",
                    _node_ip_address="127.0.0.1",
                    include_dashboard=False,
                    logging_level=logging.WARNING,
                )
            self._own_cluster = True
        except Exception as error:
            where = f"RAY_ADDRESS={self._address}" if self._address else "on this machine"
            raise ClusterUnreachable(
                f"Could not reach the Ray cluster {where} ({_one_line(error)}). Start it with "
                "`ray start --head`, or fix RAY_ADDRESS in .env (empty: a cluster on this "
                "machine)."
            ) from None

    async def start(self) -> Ready:
        """Deploy the replicas and wait until each answers; returns the first one's ``Ready``."""
        if self._started:
            raise RuntimeError("the Ray backend was already started")
        self._started = True
        try:
            await self.connect()
            handles = await asyncio.to_thread(self._deploy)
        except Exception as error:
            self._failure = "the image engine replicas could not be started"
            log.error("could not deploy the engine replicas: %s", error)
            self._fail(
                self._not_sent(),
                "The image engine could not be started; an admin has been told.",
                kind=ErrorKind.INTERNAL,
            )
            self._waiting.clear()
            raise EngineUnavailable(self._failure) from error
        self._replicas = [Replica(i, handle) for i, handle in enumerate(handles)]
        readies: list[Ready] = await asyncio.gather(
            *(r.handle.ready.remote() for r in self._replicas)
        )
        now = datetime.now(UTC)
        for replica, ready in zip(self._replicas, readies, strict=True):
            replica.ready, replica.started_at = ready, now
        self.last_ready, self.started_at = readies[0], now
        log.info("engine replicas ready: %s", ", ".join(self.replica_lines))
        self._feed()
        return readies[0]

    def _deploy(self) -> list[Any]:
        from ray import serve
        from ray.serve.api import RunTarget
        from ray.serve.config import ProxyLocation

        from engine.serve.replica import EngineReplica

        env = {**_engine_env(), **self._env}
        options: dict[str, Any] = {"num_gpus": 1} if self._gpus else {}
        options["num_cpus"] = 0 if self._gpus else self._cpus_per_replica
        if not self._local_testing:
            # No HTTP proxy: the bot is the only client, through handles.
            serve.start(proxy_location=ProxyLocation.Disabled)
            options["runtime_env"] = {"env_vars": env}
        deployment = serve.deployment(
            EngineReplica,
            name="engine",
            num_replicas=1,
            max_ongoing_requests=CALLS_PER_REPLICA,
            health_check_period_s=HEALTH_CHECK_PERIOD_S,
            ray_actor_options=options,
        )
        settings = {k: v for k, v in env.items() if k.startswith("ENGINE_")}
        targets = [
            RunTarget(deployment.bind(settings), name=f"{self._app_prefix}-{i}", route_prefix=None)
            for i in range(self._count)
        ]
        return list(serve.run_many(targets, _local_testing_mode=self._local_testing))

    async def stop(self) -> None:
        """Let running batches finish (bounded), end what waits, remove the replicas (and
        the cluster, when it was started here). Stopping twice does nothing more."""
        if self._stopping:
            return
        self._stopping = True
        self._fail(self._not_sent(), STOPPED_MESSAGE)
        self._waiting.clear()
        if self._streams:
            _, unfinished = await asyncio.wait(set(self._streams), timeout=self._stop_timeout)
            for task in unfinished:
                task.cancel()
            await asyncio.gather(*unfinished, return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for replica in self._replicas:
            replica.ready = None
        # In Serve's local testing mode the replicas live in this process and go with it
        # (serve.shutdown would start a Ray cluster to look for them).
        if self._connected and not self._local_testing:
            await asyncio.to_thread(self._undeploy)

    def _undeploy(self) -> None:
        from ray import serve

        try:
            if self._own_cluster:
                serve.shutdown()
            else:
                for replica in self._replicas:
                    serve.delete(f"{self._app_prefix}-{replica.index}")
        except Exception:
            log.exception("could not remove the engine replicas")
        if self._own_cluster:
            import ray

            ray.shutdown()

    def kill(self) -> None:
        """The watchdog found the batches hung: the busy replicas exit, and Serve starts new
        ones; their jobs come back as crashed."""
        for replica in self._replicas:
            if replica.batch and replica.ready is not None:
                pid = replica.ready.pid
                log.error("asking engine replica %d (pid %d) to exit", replica.index, pid)
                self._spawn(_quietly(replica.handle.exit.remote()), "replica-exit")

    # --- batches -----------------------------------------------------------------------

    async def run_batch(self, jobs: Iterable[JobSpec]) -> None:
        """Take a batch; it goes to the first free replica (now, or when one frees up).
        Returns at once, like the local client."""
        if self._failure is not None:
            raise EngineUnavailable(self._failure)
        if self._stopping:
            raise EngineUnavailable("the image engine is shutting down")
        batch = tuple(jobs)
        for job in batch:
            self._in_flight[job.job_id] = None
        self._waiting.append(batch)
        self._feed()

    async def cancel(self, job_id: int) -> None:
        """A job still waiting here ends at once; a running one is cancelled on its replica,
        which stops between steps and answers with a CANCELLED ``JobError``."""
        if job_id not in self._in_flight:
            return
        replica = self._in_flight[job_id]
        if replica is None:
            del self._in_flight[job_id]
            self.events.put_nowait(JobError(job_id, ErrorKind.CANCELLED, "cancelled"))
        elif replica.ready is not None:
            # Not awaited under the scheduler's lock: the answer is the job's own ending.
            self._spawn(_quietly(replica.handle.cancel.remote(job_id)), "replica-cancel")

    def _feed(self) -> None:
        """Give waiting batches to free replicas, preferring one with the batch's model."""
        while self._waiting and not self._stopping:
            free = [r for r in self._replicas if r.free]
            if not free:
                return
            batch = tuple(
                job for job in self._waiting.popleft() if job.job_id in self._in_flight
            )  # jobs cancelled while waiting are gone
            if not batch:
                continue
            replica = choose_replica(free, batch[0].model)
            replica.batch = frozenset(job.job_id for job in batch)
            for job in batch:
                self._in_flight[job.job_id] = replica
            task = self._spawn(self._stream(replica, batch), f"replica-{replica.index}-batch")
            self._streams.add(task)
            task.add_done_callback(self._streams.discard)

    async def _stream(self, replica: Replica, batch: tuple[JobSpec, ...]) -> None:
        """Relay a batch's events from its replica; on a death, report its jobs crashed."""
        unfinished = {job.job_id for job in batch}
        died = False
        try:
            async for event in replica.handle.options(stream=True).run.remote(batch):
                if isinstance(event, ModelsReply):  # what it holds now, for affinity
                    replica.holds = event.loaded
                    continue
                if isinstance(event, Result | JobError):
                    unfinished.discard(event.job_id)
                    self._in_flight.pop(event.job_id, None)
                self.events.put_nowait(event)
        except asyncio.CancelledError:
            pass  # stopping: what did not finish is reported below
        except Exception as error:  # the replica's process died, or its call broke
            died = True
            pid = replica.ready.pid if replica.ready else None
            log.error("engine replica %d (pid %s) failed mid-batch: %s", replica.index, pid, error)
        replica.batch = None
        if unfinished:
            stopping = self._stopping and not died
            self._fail(sorted(unfinished), STOPPED_MESSAGE if stopping else CRASHED_MESSAGE)
            died = died or not self._stopping  # a stream that ended short: not to be trusted
        if died and not self._stopping:
            replica.ready = None
            replica.holds = ()
            self._deaths.append(time.monotonic())
            self._spawn(self._revive(replica), f"replica-{replica.index}-revive")
        self._feed()

    async def _revive(self, replica: Replica) -> None:
        """Probe a replica until Serve has replaced it, then give it work again."""
        while not self._stopping:
            try:
                ready = await asyncio.wait_for(replica.handle.ready.remote(), self._request_timeout)
            except Exception:
                await asyncio.sleep(self._probe_every_s)
                continue
            replica.ready, replica.started_at = ready, datetime.now(UTC)
            self.restarts += 1
            log.info("engine replica %d is back: pid %d", replica.index, ready.pid)
            self._feed()
            return

    def _not_sent(self) -> list[int]:
        return [job_id for job_id, replica in self._in_flight.items() if replica is None]

    def _fail(
        self, job_ids: Sequence[int], message: str, *, kind: ErrorKind = ErrorKind.ENGINE_CRASHED
    ) -> None:
        for job_id in job_ids:
            self._in_flight.pop(job_id, None)
            self.events.put_nowait(JobError(job_id, kind, message))
        if job_ids:
            log.warning("jobs %s were lost with an engine replica", list(job_ids))

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- models ------------------------------------------------------------------------

    async def load_model(
        self, model: ModelRef, kind: JobKind, *, replicas: int | None = None
    ) -> ModelsReply:
        """Load a model on every replica (or on ``replicas`` of them, those holding the fewest
        models first); the reply is ok when every load was."""
        live = sorted(self._live(), key=lambda r: (not r.holds_model(model), len(r.holds)))
        chosen = live[:replicas] if replicas else live
        return await self._on_each(
            chosen, lambda r: r.handle.load_model.remote(model, kind), self._load_timeout
        )

    async def unload_model(self, model: ModelRef, *, adapter: str = "") -> ModelsReply:
        """Unload a model (or only ``adapter`` from every model) on every replica; ok when one
        of them had it."""
        return await self._on_each(
            self._live(),
            lambda r: r.handle.unload_model.remote(model, adapter),
            self._request_timeout,
            any,
        )

    async def list_models(self) -> ModelsReply:
        """What every replica holds; the message says which replica holds what."""
        return await self._on_each(
            self._live(), lambda r: r.handle.list_models.remote(), self._request_timeout
        )

    def _live(self) -> list[Replica]:
        live = [r for r in self._replicas if r.ready is not None]
        if not live:
            raise EngineUnavailable("the image engine is not running")
        return live

    async def _on_each(
        self,
        replicas: Sequence[Replica],
        ask: Callable[[Replica], Awaitable[ModelsReply]],
        limit_s: float,
        succeeded: Callable[[Iterable[bool]], bool] = all,
    ) -> ModelsReply:
        async def one(replica: Replica) -> ModelsReply:
            try:
                reply = await asyncio.wait_for(ask(replica), limit_s)
            except TimeoutError:
                raise
            except Exception as error:
                raise EngineUnavailable("an image engine replica restarted; try again") from error
            replica.holds = reply.loaded
            return reply

        replies = await asyncio.gather(*(one(r) for r in replicas))
        return merge_replies(replicas, replies, len(self._replicas), succeeded)


def choose_replica(free: Sequence[Replica], model: ModelRef) -> Replica:
    """The free replica for a batch of ``model``: one holding it, else the emptiest."""
    return min(free, key=lambda r: (not r.holds_model(model), len(r.holds), r.index))


def merge_replies(
    replicas: Sequence[Replica],
    replies: Sequence[ModelsReply],
    total: int,
    succeeded: Callable[[Iterable[bool]], bool] = all,
) -> ModelsReply:
    """One reply for the admin commands: everything loaded anywhere, and per replica in the
    message (``2 of 2 replicas: replica 0: tiny is loaded (tiny) · replica 1: …``);
    ``succeeded`` (all, any) says whether the replicas' answers make an ok."""
    parts = []
    for replica, reply in zip(replicas, replies, strict=True):
        held = ", ".join(m.model.name for m in reply.loaded) or "nothing loaded"
        parts.append(f"replica {replica.index}: {reply.message} ({held})")
    asked = f"{len(replies)} of {total} replicas"
    return ModelsReply(
        request_id=0,
        ok=bool(replies) and succeeded(r.ok for r in replies),
        message=f"{asked}: " + " · ".join(parts),
        loaded=tuple(m for reply in replies for m in reply.loaded),
    )


def _engine_env() -> dict[str, str]:
    """The bot's own ``ENGINE_*`` settings (environment over ``.env``), for the replicas."""
    from dotenv import dotenv_values

    from bot.settings import ENV_FILE

    found = {k: v for k, v in dotenv_values(ENV_FILE).items() if v is not None}
    found.update(os.environ)
    return {k: v for k, v in found.items() if k.startswith("ENGINE_") and v}


def _probe(address: str) -> None:
    """Fail fast when nothing listens at ``address`` (Ray's own connect retries for a minute)."""
    if address in ("auto", "local"):
        return
    parts = urlsplit(address if "://" in address else f"ray-gcs://{address}")
    host, port = parts.hostname, parts.port
    if host is None or port is None:
        raise ClusterUnreachable(
            f"RAY_ADDRESS={address} is not host:port (for example 10.0.0.5:6379); fix it in .env."
        )
    try:
        socket.create_connection((host, port), timeout=CONNECT_PROBE_S).close()
    except OSError as error:
        raise ClusterUnreachable(
            f"Could not reach the Ray cluster at RAY_ADDRESS={address} ({_one_line(error)}). "
            "Start it with `ray start --head` on the GPU machine, or fix RAY_ADDRESS in .env "
            "(empty: a cluster on this machine)."
        ) from None


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text[:200]


@contextlib.contextmanager
def _environ_without(prefixes: tuple[str, ...]) -> Iterator[None]:
    """Our environment without the variables of ``prefixes``, while the block runs."""
    kept = {k: v for k, v in os.environ.items() if k.upper().startswith(prefixes)}
    for key in kept:
        del os.environ[key]
    try:
        yield
    finally:
        os.environ.update(kept)


async def _quietly(call: Awaitable[object]) -> None:
    try:
        await call
    except Exception as error:
        log.warning("an engine replica did not answer: %s", _one_line(error))

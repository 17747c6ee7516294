"""What the admin commands ask of the engine and the job queue; nothing about Discord here.

The engine runs one thing at a time: a load waits for the batch that is running and the next
batch waits for the load, while the bot keeps taking commands and queueing jobs. A queued job
carries its model by value, so disabling or removing a model never strands it; unloading waits
until the model's queued and running jobs are done, because one of them would otherwise load
it straight back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from bot.jobs.engine_client import EngineUnavailable
from bot.store.models import Model
from bot.store.repository import Repository
from engine.protocol import JobKind, LoadedModel, ModelRef, ModelsReply

LIST_TIMEOUT_S = 5.0  # a listing is answered at once by a healthy engine
POLL_S = 0.5  # how often to look whether a model's jobs are done


class ModelEngine(Protocol):
    """The part of the engine client the admin commands use (``EngineClient`` has it)."""

    @property
    def ready(self) -> bool: ...

    async def load_model(
        self, model: ModelRef, kind: JobKind, *, replicas: int | None = None
    ) -> ModelsReply:
        """``replicas``: on how many of the engine's replicas (None: all; the local engine
        is one)."""
        ...

    async def unload_model(self, model: ModelRef, *, adapter: str = "") -> ModelsReply: ...

    async def list_models(self) -> ModelsReply: ...


@dataclass(frozen=True)
class LoadOutcome:
    ok: bool
    message: str  # the engine's user-safe words
    seconds: float
    model_bytes: int  # what the model takes now; 0 when it did not load
    already_loaded: bool
    loaded: tuple[LoadedModel, ...]  # everything loaded after the request


@dataclass(frozen=True)
class UnloadOutcome:
    unloaded: bool  # False: it was not loaded
    freed_bytes: int
    loaded: tuple[LoadedModel, ...]


@dataclass(frozen=True)
class EngineFacts:
    """The engine as /status shows it."""

    ready: bool
    pid: int | None
    device: str | None
    started_at: datetime | None
    restarts: int
    failure: str | None  # why the engine cannot be started at all
    retry_at: datetime | None = None  # the next start, while it keeps dying
    recent_deaths: int = 0
    # Ray backend: one line per replica (pid, device, what it runs and holds); () for the
    # local process, whose pid and device are above.
    replicas: tuple[str, ...] = ()


def model_ref(model: Model) -> ModelRef:
    """The reference jobs use for this model, so a load here is the one their jobs find."""
    return ModelRef(model.name, model.source, model.revision)


def bytes_of(name: str, loaded: tuple[LoadedModel, ...]) -> int:
    return sum(m.bytes for m in loaded if m.model.name == name)


def engine_facts(engine: Any) -> EngineFacts:
    """Read what the engine client knows; test doubles may not know all of it."""
    ready = getattr(engine, "last_ready", None)
    return EngineFacts(
        ready=bool(getattr(engine, "ready", False)),
        pid=getattr(engine, "pid", None),
        device=f"{ready.device}, {ready.dtype}" if ready is not None else None,
        started_at=getattr(engine, "started_at", None),
        restarts=int(getattr(engine, "restarts", 0)),
        failure=getattr(engine, "failed", None),
        retry_at=getattr(engine, "retry_at", None),
        recent_deaths=int(getattr(engine, "recent_deaths", 0)),
        replicas=tuple(getattr(engine, "replica_lines", ())),
    )


class ModelOps:
    """Loads, unloads and lists models in the engine, and watches the queue for a model."""

    def __init__(
        self,
        repo: Repository,
        engine: ModelEngine,
        *,
        list_timeout_s: float = LIST_TIMEOUT_S,
        poll_s: float = POLL_S,
    ) -> None:
        self._repo = repo
        self._engine = engine
        self._list_timeout_s = list_timeout_s
        self.poll_s = poll_s

    async def loaded(self) -> tuple[LoadedModel, ...] | None:
        """What the engine holds now; None when it cannot say quickly (starting, down)."""
        if not self._engine.ready:
            return None
        try:
            reply = await asyncio.wait_for(self._engine.list_models(), self._list_timeout_s)
        except (TimeoutError, EngineUnavailable):
            return None
        return reply.loaded

    async def load(self, model: Model, replicas: int | None = None) -> LoadOutcome:
        """Load ``model`` (on ``replicas`` of the engine's replicas; None: all); raises
        ``EngineUnavailable`` or ``TimeoutError`` like the client."""
        ref = model_ref(model)
        before = await self.loaded() or ()
        started = time.monotonic()
        if replicas is None:  # every replica: the engine's default, and the local engine's
            reply = await self._engine.load_model(ref, model.kind)
        else:
            reply = await self._engine.load_model(ref, model.kind, replicas=replicas)
        return LoadOutcome(
            ok=reply.ok,
            message=reply.message,
            seconds=time.monotonic() - started,
            model_bytes=sum(m.bytes for m in reply.loaded if m.model == ref),
            already_loaded=any(m.model == ref for m in before),
            loaded=reply.loaded,
        )

    async def unload(self, name: str) -> UnloadOutcome:
        """Unload every copy of the model named ``name``; raises ``EngineUnavailable``."""
        if not self._engine.ready:
            # Not running (or starting): nothing is loaded, and the client would wait for it.
            raise EngineUnavailable("the image engine is not running")
        before = await self.loaded() or ()
        # The engine unloads an exact reference, else every model of that name. No loaded model
        # has an empty source, so this asks for all of them: a reroll pins the revision its
        # parent ran, which keeps a second copy of a Hugging Face model under the same name.
        reply = await self._engine.unload_model(ModelRef(name, source=""))
        return UnloadOutcome(
            unloaded=reply.ok,
            freed_bytes=bytes_of(name, before) if reply.ok else 0,
            loaded=reply.loaded,
        )

    async def unload_adapter(self, name: str) -> bool:
        """Take the adapter ``name`` (a LoRA's name or an embedding's token) out of every loaded
        model; False when none held it or the engine is not running."""
        if not self._engine.ready:
            return False
        reply = await self._engine.unload_model(ModelRef("", source=""), adapter=name)
        return reply.ok

    async def jobs_using(self, name: str) -> int:
        """Queued and running jobs for the model named ``name``."""
        return await self._repo.count_active_for_model(name)

    async def wait_until_unused(
        self,
        name: str,
        timeout_s: float,
        on_change: Callable[[int], Awaitable[None]],
    ) -> int:
        """Wait until no queued or running job uses ``name``; returns how many still do.

        The count comes from the store, which the scheduler updates before anyone hears of a
        change. ``on_change`` hears each new count while waiting. Jobs queued meanwhile are
        waited for too: they would load the model again right after the unload.
        """
        deadline = time.monotonic() + timeout_s
        shown: int | None = None
        while True:
            count = await self.jobs_using(name)
            if count == 0 or time.monotonic() >= deadline:
                return count
            if count != shown:
                await on_change(count)
                shown = count
            await asyncio.sleep(self.poll_s)

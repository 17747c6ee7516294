"""One engine replica: today's worker, in-process, behind a Ray Serve deployment.

The bot's Ray backend (``bot.jobs.ray_engine``) deploys this class and calls its methods
through Serve handles. Requests and events are the protocol's own frozen types: ``run`` takes
a batch of ``JobSpec`` and streams the batch's ``Accepted``, ``Progress``, ``Result`` and
``JobError`` events back as the worker emits them, then one ``ModelsReply`` saying what this
replica holds now (the bot sends batches where their model is loaded).

This module is imported by the bot process too (to name the class it deploys), so at the top it
imports only the protocol: the worker, torch and diffusers are imported in the constructor,
which runs only in the replica's process. ``tests/bot/jobs/test_ray_engine.py`` checks that.

The bot sends a replica one batch at a time; a load or unload waits for the running batch
(one lock), as in the local engine, where they queue behind it. ``cancel`` and
``list_models`` act at once, also while a batch runs: Serve lets several calls into a replica
(``max_ongoing_requests``), and the batch runs in a thread, off the replica's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from engine.protocol import (
    Event,
    JobKind,
    JobSpec,
    LoadModel,
    ModelRef,
    ModelsReply,
    Ready,
    Request,
    RunBatch,
    UnloadModel,
)

if TYPE_CHECKING:
    from engine.worker import Worker

log = logging.getLogger(__name__)


def _drop(event: Event) -> None:
    log.warning("a %s arrived with no call waiting for it; dropped", type(event).__name__)


class EngineReplica:
    """A ``Worker`` that Serve keeps alive; its methods are what the bot calls."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        """``env``: ``ENGINE_*`` settings from the bot, for a replica whose process did not
        inherit them (a cluster's node); set before the settings are read."""
        os.environ.update(env or {})
        from engine.settings import EngineSettings
        from engine.worker import Worker

        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        self._sink: Callable[[Event], None] = _drop
        self._worker: Worker = Worker(EngineSettings(), self._emit)
        self._worker.warm_up()
        self._busy = asyncio.Lock()  # one batch, load or unload at a time
        log.info("engine replica ready: %s", self._worker.ready())

    def _emit(self, event: Event) -> None:
        self._sink(event)  # from the worker's threads: the sink hands it to the event loop

    async def ready(self) -> Ready:
        """Who this replica is (device, dtype, pid): the bot's health probe too."""
        return self._worker.ready()

    async def run(self, jobs: Sequence[JobSpec]) -> AsyncIterator[Event]:
        """Run a batch; yields its events in order, then a ``ModelsReply`` of what is loaded."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[Event | None] = asyncio.Queue()
        async with self._busy:

            def hand_over(event: Event) -> None:
                loop.call_soon_threadsafe(events.put_nowait, event)

            self._sink = hand_over
            running = asyncio.ensure_future(
                asyncio.to_thread(self._worker.handle, RunBatch(jobs=tuple(jobs)))
            )
            # Queued after every event the worker emitted before it returned: the end marker.
            running.add_done_callback(lambda _: events.put_nowait(None))
            try:
                while (event := await events.get()) is not None:
                    yield event
            finally:
                if not running.done():  # the caller went away: stop between steps
                    for job in jobs:
                        self._worker.cancel(job.job_id)
                    with contextlib.suppress(Exception):
                        await running
                self._sink = _drop
        yield await self.list_models()

    async def cancel(self, job_id: int) -> None:
        """Cancel a job of the running batch; it ends with a CANCELLED ``JobError``."""
        self._worker.cancel(job_id)

    async def load_model(self, model: ModelRef, kind: JobKind) -> ModelsReply:
        return await self._ask(LoadModel(request_id=0, model=model, kind=kind))

    async def unload_model(self, model: ModelRef, adapter: str = "") -> ModelsReply:
        return await self._ask(UnloadModel(request_id=0, model=model, adapter=adapter))

    async def list_models(self) -> ModelsReply:
        """What is loaded, least recently used first; answered at once, even mid-batch."""
        # As the local engine answers a listing: from the registry, which is safe to read
        # while the batch's thread runs.
        loaded = self._worker.registry.loaded()
        message = f"{len(loaded)} model(s) loaded"
        return ModelsReply(request_id=0, ok=True, message=message, loaded=loaded)

    async def _ask(self, request: Request) -> ModelsReply:
        async with self._busy:
            replies: list[Event] = []
            self._sink = replies.append
            try:
                await asyncio.to_thread(self._worker.handle, request)
            finally:
                self._sink = _drop
        (reply,) = [r for r in replies if isinstance(r, ModelsReply)]
        return reply

    async def exit(self) -> None:
        """Die now (the bot's watchdog found it hung): Serve starts a new replica."""
        log.error("engine replica %d exits on the bot's request", os.getpid())
        os._exit(1)

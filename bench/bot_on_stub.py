"""The real bot on the Discord stub, the stub in its own process.

Shared by the burst benchmarks. It follows ``tests/bot/e2e/harness.py`` (whose settings and
engine environment it reuses) with three differences: the stub runs in a child process
(:class:`~tests.discord_stub.remote.StubProcess`), so that what this process spends is the
bot's alone; the limits are raised so that a burst is not refused; and delivery edits messages
at the production rate. The bursts themselves run in the stub's process (``bench/burst.py``).

``InstantEngine`` stands in for the engine where the bot's own costs are wanted alone: the
bot's own engine client, talking through a real pipe to ``bench.instant_engine``, a process
that answers every job at once with a 512x512 PNG, as an infinitely fast GPU would.
``InstantEngineInProcess`` answers from inside the bot's process instead, leaving out the
client's reading and decoding of the frames (to measure what those cost). Without either, the
real engine process runs the tiny test models on the CPU.

Nothing here imports torch: the bot process must not load it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

from bench.burst import BurstReport, imagine_burst
from bench.instant_engine import noise_png
from bot.app import DiffusionBot
from bot.jobs.engine_client import EngineClient
from bot.jobs.image_store import ImageStore
from bot.jobs.scheduler import EngineLike
from bot.settings import SchedulerSettings
from bot.store.database import create_engine, migrate_in_child
from engine.protocol import Accepted, Event, GeneratedImage, JobSpec, Ready, Result
from tests.bot.e2e.harness import CHANNEL, engine_env, make_settings
from tests.discord_stub.remote import StubProcess
from tests.fixtures.tiny_models import TinyModels

if TYPE_CHECKING:
    from tests.discord_stub import DiscordStub

RESULT_TIMEOUT_S = 900.0

EngineFactory = Callable[[Path], EngineLike]  # given the folder the bot spools pictures in


class BriefErrorLog(logging.Handler):
    """Counts error records and prints only the first few: a burst that goes wrong fails
    the same way a thousand times, and the figures must stay readable."""

    def __init__(self, shown: int = 3) -> None:
        super().__init__(logging.ERROR)
        self.shown = shown
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if self.count <= self.shown:
            sys.stderr.write(self.format(record) + "\n")

    def summary(self) -> str:
        """How many errors were logged, for the report."""
        hidden = f" (the first {self.shown} on stderr)" if self.count > self.shown else ""
        return f"{self.count}{hidden}"


def log_errors_briefly() -> BriefErrorLog:
    """Log only errors (the bot and the engine log every job), and only the first few."""
    handler = BriefErrorLog()
    logging.basicConfig(level=logging.ERROR, handlers=[handler], force=True)
    return handler


class InstantEngine(EngineClient):
    """The bot's engine client on ``bench.instant_engine``: every job answered at once.
    ``spool``: where it writes the pictures, as the real engine does (None: in the frames)."""

    def __init__(self, spool: Path | None = None) -> None:
        super().__init__(
            command=[sys.executable, "-m", "bench.instant_engine"], backoff_s=0.1, spool=spool
        )


class InstantEngineInProcess:
    """Answers every job at once with the same PNG per image, from inside the bot's process
    (no pipe, no frames); implements ``EngineLike``."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self._png = noise_png()
        self.ready = True
        self.slots = 1
        self.in_flight: frozenset[int] = frozenset()  # every job ends as it is given

    def kill(self) -> None:
        return None

    async def start(self) -> Ready:
        ready = Ready(device="none", dtype="none", pid=os.getpid())
        self.events.put_nowait(ready)
        return ready

    async def stop(self) -> None:
        return None

    async def run_batch(self, jobs: Sequence[JobSpec]) -> None:
        for job in jobs:
            self.events.put_nowait(Accepted(job_id=job.job_id))
            images = tuple(GeneratedImage(seed, self._png, nsfw=False) for seed in job.seeds)
            self.events.put_nowait(Result(job.job_id, images, model_revision=None, seconds=0.0))

    async def cancel(self, job_id: int) -> None:
        return None


async def burst(
    stub: StubProcess, commands: int, users: int, *, steps: int = 1, user_prefix: str = "student"
) -> BurstReport:
    """``commands`` ``/imagine`` from ``users`` new members at once, run in the stub's process;
    returns when every result is posted."""
    return await stub.call(
        imagine_burst,
        channel=CHANNEL,
        commands=commands,
        users=users,
        steps=steps,
        user_prefix=user_prefix,
        timeout=RESULT_TIMEOUT_S,
    )


@contextlib.asynccontextmanager
async def bot_on_stub(
    root: Path,
    tiny: TinyModels,
    *,
    max_queued_jobs: int,
    batch_images: int,
    engine: EngineFactory | None = None,
    callback_deadline: float = 3.0,
) -> AsyncIterator[tuple[StubProcess, DiffusionBot]]:
    """The bot connected to a fresh stub in its own process, its engine ready, one job done.

    ``engine``: makes the engine, given the bot's spool folder (``ImageStore.spool``); None:
    the real engine process, on the CPU with the tiny models, as ``python -m bot`` starts it.
    ``callback_deadline``: how late the stub still takes a deferral (Discord: 3 s).
    """
    async with StubProcess(callback_deadline=callback_deadline) as stub:
        # make_settings reads only the stub's addresses, token and guild, which StubAddress has.
        settings = make_settings(
            root,
            cast("DiscordStub", stub.address),
            tiny,
            images_per_hour=1_000_000,
            max_queued_jobs=max_queued_jobs,
        )
        batching = {"max_batch_images": batch_images}
        scheduler = SchedulerSettings(_env_file=None, **batching)  # type: ignore[call-arg]
        settings = settings.model_copy(update={"scheduler": scheduler})
        database = create_engine(settings.database.url)
        # As `python -m bot` does: Alembic stays out of the bot's process (and its RSS).
        await migrate_in_child(settings.database.url)
        spool = ImageStore(settings.storage.output_dir).spool
        if engine is None:
            made = EngineClient(env=engine_env(tiny), cwd=root, backoff_s=0.1, spool=spool)
        else:
            made = engine(spool)
        bot = DiffusionBot(settings, database, engine=made)  # production edit rate
        try:
            async with stub.running(bot):
                # One job first: the engine has started and loaded the model, as in a running
                # course channel; the burst measures the steady state, not a cold start.
                await burst(stub, 1, 1, user_prefix="warm-up")
                yield stub, bot
        finally:
            await database.dispose()

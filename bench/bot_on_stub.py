"""The real bot on the Discord stub, with the real engine process on the tiny test models.

Shared by the burst benchmarks. It follows ``tests/bot/e2e/harness.py`` (whose settings and
engine environment it reuses) with two differences: the limits are raised so that a burst is
not refused, and delivery edits messages at the production rate. The stub runs in this
process, on the bot's event loop, so what is measured here includes the stub's own work: the
figures are upper bounds of what the bot alone would take.

``InstantEngine`` stands in for the engine where the bot's own costs are wanted alone: it
answers every job at once with a 512x512 PNG, as an infinitely fast GPU would.

Nothing here imports torch: the bot process must not load it.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import random
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from PIL import Image

from bot.app import DiffusionBot
from bot.jobs.engine_client import EngineClient
from bot.jobs.scheduler import EngineLike
from bot.settings import SchedulerSettings
from bot.store.database import create_engine, migrate
from engine.protocol import Accepted, Event, GeneratedImage, JobSpec, Ready, Result
from tests.bot.e2e.harness import CHANNEL, engine_env, make_settings
from tests.discord_stub import DiscordStub, InteractionEvent, InteractionHandle, Message, User
from tests.fixtures.tiny_models import TinyModels

RESULT_TIMEOUT_S = 900.0


def is_result(message: Message) -> bool:
    """The finished result: images with the Reroll button (progress previews have neither)."""
    return bool(message.png_attachments) and any(
        custom_id.startswith("job:reroll:") for custom_id in message.custom_ids
    )


def is_result_event(event: InteractionEvent) -> bool:
    return event.message is not None and is_result(event.message)


async def imagine(stub: DiscordStub, user: User, prompt: str, steps: int) -> InteractionHandle:
    """A user runs ``/imagine``; returns as soon as the interaction is dispatched."""
    return await stub.invoke_slash(
        "imagine", {"prompt": prompt, "steps": steps}, user=user, channel=CHANNEL
    )


def noise_png(side: int = 512) -> bytes:
    """A PNG that does not compress: an upper bound for a generated image's bytes."""
    noise = random.Random(0).randbytes(side * side * 3)
    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), noise).save(buffer, format="PNG")
    return buffer.getvalue()


class InstantEngine:
    """Answers every job at once with the same PNG per image; implements ``EngineLike``."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self._png = noise_png()

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


@contextlib.asynccontextmanager
async def bot_on_stub(
    root: Path,
    tiny: TinyModels,
    *,
    max_queued_jobs: int,
    batch_images: int,
    engine: EngineLike | None = None,
) -> AsyncIterator[tuple[DiscordStub, DiffusionBot]]:
    """The bot connected to a fresh stub, its engine ready and the model loaded.

    ``engine`` None: the real engine process, on the CPU with the tiny models.
    """
    async with DiscordStub() as stub:
        settings = make_settings(
            root, stub, tiny, images_per_hour=1_000_000, max_queued_jobs=max_queued_jobs
        )
        batching = {"max_batch_images": batch_images}
        scheduler = SchedulerSettings(_env_file=None, **batching)  # type: ignore[call-arg]
        settings = settings.model_copy(update={"scheduler": scheduler})
        database = create_engine(settings.database.url)
        await migrate(database)
        if engine is None:
            engine = EngineClient(env=engine_env(tiny), cwd=root, backoff_s=0.1)
        bot = DiffusionBot(settings, database, engine=engine)  # production edit rate
        try:
            async with stub.running(bot):
                # One job first: the engine has started and loaded the model, as in a running
                # course channel; the burst measures the steady state, not a cold start.
                warm_up = await imagine(stub, stub.add_user("warm-up"), "warm up", steps=1)
                await warm_up.wait_for(is_result_event, timeout=RESULT_TIMEOUT_S)
                yield stub, bot
        finally:
            await database.dispose()

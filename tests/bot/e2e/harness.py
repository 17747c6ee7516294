"""Runs the real bot against the Discord stub and a real engine process on tiny models."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from pydantic import SecretStr

from bot.app import DiffusionBot
from bot.jobs.engine_client import EngineClient
from bot.jobs.image_store import ImageStore
from bot.jobs.scheduler import EngineLike
from bot.settings import (
    DatabaseSettings,
    DiscordSettings,
    LimitSettings,
    ModelDefaults,
    SchedulerSettings,
    Settings,
    StorageSettings,
)
from bot.store.database import create_engine, create_sessionmaker, migrate
from bot.store.repository import Repository
from tests.discord_stub import DiscordStub
from tests.fixtures.tiny_models import TinyModels

CHANNEL = "diffusion-models-class"
ADMIN_ROLE = "Course Admin"


def make_settings(
    tmp_path: Path,
    stub: DiscordStub,
    tiny: TinyModels,
    depth: Path | None = None,
    **limits: float,
) -> Settings:
    """The course server's settings; ``depth``: the depth model offered (else none)."""
    none = {"_env_file": None}  # never the developer's .env
    return Settings(
        discord=DiscordSettings(
            token=SecretStr(stub.token),
            api_base_url=stub.api_base,
            gateway_url=stub.gateway_url,
            guild_ids=[stub.guild.id],
            allowed_channels=[CHANNEL],
            admin_roles=[ADMIN_ROLE],
            **none,
        ),
        database=DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}", **none),
        storage=StorageSettings(
            output_dir=tmp_path / "images", input_dir=tmp_path / "inputs", **none
        ),
        models=ModelDefaults(
            default_text_to_image=str(tiny.text_to_image),
            default_inpainting=str(tiny.inpainting),
            default_depth=str(depth or ""),
            default_depth_revision="",
            sdxl="",  # admins add the tiny SDXL and FLUX models where a test needs them
            flux="",
            **none,
        ),
        limits=LimitSettings(**{"images_per_hour": 100, "max_queued_jobs": 5, **limits}, **none),
        scheduler=SchedulerSettings(max_batch_images=4, **none),
    )


def engine_env(tiny: TinyModels, *, flag_everything: bool = False) -> dict[str, str]:
    checker = tiny.safety_checker_always if flag_everything else tiny.safety_checker_never
    return {
        "ENGINE_SAFETY_CHECKER": str(checker),
        "ENGINE_OFFLINE": "true",
        "ENGINE_DEVICE": "cpu",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }


@dataclass
class Harness:
    """One course server: the stub, a database and image folders that outlive bot restarts."""

    tmp_path: Path
    stub: DiscordStub
    tiny: TinyModels
    settings: Settings
    flag_everything: bool = False
    bots: list[DiffusionBot] = field(default_factory=list)
    # Starts engines forked from a process that imported torch already (the e2e conftest's
    # fork server); None: ``python -m engine serve``, as the bot does.
    engine_command: list[str] | None = None

    @contextlib.asynccontextmanager
    async def bot(
        self,
        *,
        min_edit_interval: float = 0.05,
        engine_backoff_s: float = 0.1,
        engine: EngineLike | None = None,
        forked: bool = True,
    ) -> AsyncIterator[DiffusionBot]:
        """Start the bot (and its engine), connected to the stub; stop both on exit.
        ``engine_backoff_s``: the pause before the engine is started again after a death.
        ``engine``: another backend than the local process (Ray replicas).
        ``forked=False``: the engine started as ``python -m engine serve`` even where a fork
        server is at hand (a test that signals the engine process itself)."""
        database = create_engine(self.settings.database.url)
        await migrate(database)
        engine = engine or EngineClient(
            command=self.engine_command if forked else None,
            env=engine_env(self.tiny, flag_everything=self.flag_everything),
            cwd=self.tmp_path,
            backoff_s=engine_backoff_s,
            spool=ImageStore(self.settings.storage.output_dir).spool,  # as python -m bot runs it
        )
        bot = DiffusionBot(
            self.settings, database, engine=engine, min_edit_interval=min_edit_interval
        )
        self.bots.append(bot)
        try:
            async with self.stub.running(bot):
                yield bot
        finally:
            await database.dispose()

    @contextlib.asynccontextmanager
    async def repository(self) -> AsyncIterator[Repository]:
        """The store as the bot sees it, for looking at it while no bot runs."""
        database = create_engine(self.settings.database.url)
        try:
            yield Repository(create_sessionmaker(database))
        finally:
            await database.dispose()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:  # noqa: ASYNC109
    """Wait until ``check()`` is true, polling; fails after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110 - polling the database, which has no events
            await asyncio.sleep(0.05)


def png_size(data: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(data)).size


def png_parameters(data: bytes) -> str:
    image = Image.open(io.BytesIO(data))
    return image.text.get("parameters", "")  # type: ignore[attr-defined]

"""The bot: wires the store, the engine client, the scheduler and the commands together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import aiohttp
import discord
from discord.ext import commands
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import features
from bot.endpoints import use_endpoints
from bot.jobs import housekeeping
from bot.jobs.delivery import Delivery
from bot.jobs.disk_usage import DiskUsage
from bot.jobs.engine_client import EngineClient
from bot.jobs.image_store import ImageStore
from bot.jobs.inputs import InputStore
from bot.jobs.ray_engine import ClusterUnreachable, RayEngine
from bot.jobs.retention import Retention
from bot.jobs.reviews import ReviewQueue
from bot.jobs.scheduler import EngineLike, Scheduler
from bot.jobs.service import JobService
from bot.jobs.strikes import Strikes
from bot.services import Services
from bot.settings import EngineBackendSettings, Settings, StartupError
from bot.store.database import create_sessionmaker
from bot.store.repository import Repository
from bot.ui.buttons import ButtonActions
from bot.ui.errors import report
from bot.ui.i18n import CourseTranslator, make_translatable
from bot.ui.options import apply_bounds
from engine.protocol import JobKind

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_SECONDS = 60.0  # how long a running batch may take to finish on SIGTERM
# Connections to Discord's REST API. discord.py's own pool has no limit (aiohttp's limit=0), so
# a burst of edits would open a connection, with its TLS handshake, per request; capped, they
# wait for and reuse kept-alive ones. Discord allows 50 requests a second in all. Not lower:
# interaction answers share the pool with message edits, and at 16 connections a burst of 1000
# commands had its deferrals wait behind edits (p99 1.8-2.2 s against 0.74 s uncapped).
HTTP_CONNECTIONS = 64


class DiffusionBot(commands.Bot):
    """A slash-command bot; prefix commands are not used."""

    def __init__(
        self,
        settings: Settings,
        database: AsyncEngine,
        *,
        engine: EngineLike | None = None,
        min_edit_interval: float = 1.0,
        shutdown_grace: float = SHUTDOWN_GRACE_SECONDS,
    ) -> None:
        # Guilds only: interactions carry the member and roles we check, so no privileged
        # intents are needed.
        intents = discord.Intents.none()
        intents.guilds = True
        super().__init__(command_prefix=commands.when_mentioned, intents=intents, help_command=None)
        self.settings = settings
        self.repo = Repository(create_sessionmaker(database))
        self.images = ImageStore(settings.storage.output_dir)
        self.delivery = Delivery(
            self, self.repo, min_edit_interval=min_edit_interval, images=self.images
        )
        self.engine = engine or make_engine(settings.engine, spool=self.images.spool)
        self.reviews = ReviewQueue(self, self.repo, self.images, settings.moderation)
        self.scheduler = Scheduler(
            self.repo,
            self.engine,
            self.images,
            self.delivery,
            max_batch_images=settings.scheduler.max_batch_images,
            preferred_batch_sizes=settings.scheduler.preferred_batch_sizes,
            position_refresh_s=settings.scheduler.position_refresh_s,
            inputs_root=str(settings.storage.input_dir.resolve()),
            flagged=self.reviews if self.reviews.enabled else None,
        )
        inputs = InputStore(settings.storage.input_dir)
        self.jobs = JobService(
            settings,
            self.repo,
            self.scheduler,
            self.delivery,
            self.images,
            inputs,
            self.reviews.originals,
        )
        storage = settings.storage
        self.retention = Retention(
            self.repo, self.images, inputs, storage.retention_days, self.reviews.originals
        )
        # What features get: never this object.
        self.services = Services(
            settings=settings,
            repo=self.repo,
            jobs=self.jobs,
            inputs=inputs,
            engine=self.engine,
            queue=self.scheduler,
            storage=self.images,
            buttons=ButtonActions(),
            disk=DiskUsage(storage.output_dir, storage.input_dir),
            reviews=self.reviews,
            strikes=Strikes(self.repo, self.jobs.limits, settings.moderation),
        )
        self.tree.error(self._on_tree_error)
        self._shutdown_grace = shutdown_grace

        self._background: set[asyncio.Task[None]] = set()

    async def login(self, token: str) -> None:
        """Log in with a capped, kept-alive pool of HTTP connections (``HTTP_CONNECTIONS``)."""
        # Made here, not in __init__: an aiohttp connector belongs to the running loop. A new
        # one for each login, since closing the bot closes the session and its connector.
        self.http.connector = aiohttp.TCPConnector(limit=HTTP_CONNECTIONS)
        await super().login(token)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def connect_engine(self) -> None:
        """Reach the engine's cluster, for a backend that has one (Ray), before Discord: a
        wrong address ends the start at once, in one line."""
        connect = getattr(self.engine, "connect", None)
        if connect is None:
            return
        try:
            await connect()
        except ClusterUnreachable as error:
            raise StartupError(str(error)) from None

    async def _start_engine(self) -> None:
        # In the background: importing torch and starting takes seconds, and Discord should
        # see the bot online meanwhile. Jobs wait for the engine in the client.
        try:
            await self.images.clear_spool()
        except OSError as error:  # the engine then sends its pictures in the frames
            log.warning("could not prepare the engine's spool folder: %s", error)
        try:
            await self.engine.start()
        except Exception:
            log.exception("the image engine did not start")

    async def setup_hook(self) -> None:
        models = self.settings.models
        await self.repo.ensure_default_models(
            {
                JobKind.TEXT_TO_IMAGE: models.default_text_to_image,
                JobKind.INPAINT: models.default_inpainting,
                JobKind.DEPTH_TO_IMAGE: models.default_depth,
                JobKind.UPSCALE: models.default_upscaler,
            },
            revisions={
                JobKind.DEPTH_TO_IMAGE: models.default_depth_revision or None,
                JobKind.UPSCALE: models.default_upscaler_revision or None,
            },
            offered=models.offered(),
        )
        for feature in features.ALL:
            await feature.setup(self, self.services)
        self._spawn(self.scheduler.pump_events(), "engine-events")
        self._spawn(self._start_engine(), "engine-start")
        stall_timeout = self.settings.scheduler.stall_timeout_s
        self._spawn(
            housekeeping.restart_stalled_engine(self.scheduler, self.engine, stall_timeout),
            "stall-watchdog",
        )
        self._spawn(housekeeping.prune_rate_limits(self.repo), "prune-rate-limits")
        if self.reviews.enabled:
            self._spawn(self.reviews.post_missing_cards(), "review-cards")
        if self.retention.days or self.reviews.enabled:  # reviewed originals go in its pass
            self._spawn(housekeeping.remove_expired_files(self.retention), "retention")
        # The operator's narrowed bounds, then zh-CN texts, go into the synced payload.
        apply_bounds(self.tree, self.settings.limits.bounds())
        make_translatable(self.tree)
        await self.tree.set_translator(CourseTranslator())
        await self._sync_commands()
        resumed = await self.jobs.resume_after_restart()
        if resumed:
            log.info("resumed %d job(s) left by the last run", len(resumed))

    async def _sync_commands(self) -> None:
        guild_ids = self.settings.discord.guild_ids
        if not guild_ids:
            synced = await self.tree.sync()
            log.info(
                "synced %d global command(s); Discord may take a while to show them", len(synced)
            )
            return
        for guild_id in guild_ids:
            guild = discord.Object(guild_id)
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
            log.info("synced %d command(s) to guild %s", len(synced), guild_id)

    async def _on_tree_error(
        self, interaction: discord.Interaction, error: discord.app_commands.AppCommandError
    ) -> None:
        await report(interaction, error)

    async def close(self) -> None:
        """Stop taking work, let the running batch finish (bounded), leave the rest queued."""
        self.jobs.accepting = False
        await self.scheduler.pause()
        try:
            async with asyncio.timeout(self._shutdown_grace):
                await self.scheduler.wait_idle()
        except TimeoutError:
            log.warning(
                "the running batch did not finish in %.0f s; it will run again on start",
                self._shutdown_grace,
            )
        await self.delivery.close()
        await self.engine.stop()
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await super().close()


def make_engine(settings: EngineBackendSettings, *, spool: Path | None = None) -> EngineLike:
    """The engine backend ``ENGINE_BACKEND`` names: the local process, or replicas on Ray.
    ``spool``: where a local engine writes result pictures (Ray's replicas, which need not
    share this machine's disk, send them)."""
    if settings.backend == "ray":
        return RayEngine(replicas=settings.replicas, address=settings.ray_address)
    return EngineClient(spool=spool)


async def run_bot(settings: Settings, database: AsyncEngine) -> None:
    """Connect to Discord and serve until stopped (SIGINT/SIGTERM stop it gracefully)."""
    token = settings.discord.token.get_secret_value().strip()
    bot = DiffusionBot(settings, database)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(bot.close()))
    await bot.connect_engine()
    with use_endpoints(settings.discord.api_base_url, settings.discord.gateway_url):
        try:
            async with bot:
                await bot.start(token)
        except discord.LoginFailure:
            raise StartupError(
                "Discord refused the token in DISCORD_TOKEN. Copy it again from the Developer "
                "Portal (your application > Bot > Reset Token) into .env."
            ) from None
        except aiohttp.ClientConnectorError as error:
            raise StartupError(
                f"Could not reach Discord at {settings.discord.api_base_url} ({error.os_error}). "
                "Check the network, or DISCORD_API_BASE_URL in .env."
            ) from None

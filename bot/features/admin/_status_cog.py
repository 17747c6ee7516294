"""/status: what the bot is doing, for admins."""

from __future__ import annotations

import logging
from datetime import timedelta

import discord
from discord import app_commands
from discord.ext import commands

from bot.features.admin import _render as text
from bot.features.admin._access import admin_action
from bot.features.admin._engine_ops import ModelEngine, ModelOps, engine_facts
from bot.features.admin._replies import say
from bot.services import Services
from bot.store.models import utcnow

log = logging.getLogger(__name__)


class StatusCog(commands.Cog):
    """The `/status` command."""

    def __init__(self, services: Services) -> None:
        self.services = services
        engine: ModelEngine = services.engine  # type: ignore[assignment]  # an EngineClient
        self.ops = ModelOps(services.repo, engine)

    @app_commands.command(
        name="status", description="Admins: the queue, the engine, loaded models, recent images"
    )
    @app_commands.guild_only()
    @app_commands.default_permissions(manage_guild=True)  # hidden from members; checked in code
    async def status(self, interaction: discord.Interaction) -> None:
        services = self.services
        async with admin_action(
            interaction, services.settings.discord, services.repo, "status", audit_success=False
        ):
            await interaction.response.defer(ephemeral=True, thinking=True)
            try:
                disk = await services.disk.measure()
            except OSError:
                log.exception("/status could not measure the image folders")
                disk = None
            page = text.status_page(
                counts=await services.repo.count_by_status(),
                waiting_in_memory=services.queue.queue_length,
                running=services.queue.running,
                engine=engine_facts(services.engine),
                loaded=await self.ops.loaded(),
                images_last_hour=await services.repo.count_images_since(
                    utcnow() - timedelta(hours=1)
                ),
                storage=services.storage.health,
                disk=disk,
                retention_days=services.settings.storage.retention_days,
            )
            await say(interaction, page)

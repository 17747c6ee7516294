"""/status: what the bot is doing, for admins."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.features.admin import _render as text
from bot.features.admin._access import admin_action
from bot.features.admin._engine_ops import ModelEngine, ModelOps, engine_facts
from bot.features.admin._replies import say
from bot.store.models import utcnow

if TYPE_CHECKING:
    from bot.app import DiffusionBot


class StatusCog(commands.Cog):
    """The `/status` command."""

    def __init__(self, bot: DiffusionBot) -> None:
        self.bot = bot
        engine: ModelEngine = bot.engine  # type: ignore[assignment]
        self.ops = ModelOps(bot.repo, engine)

    @app_commands.command(
        name="status", description="Admins: the queue, the engine, loaded models, recent images"
    )
    @app_commands.guild_only()
    async def status(self, interaction: discord.Interaction) -> None:
        bot = self.bot
        async with admin_action(
            interaction, bot.settings.discord, bot.repo, "status", audit_success=False
        ):
            await interaction.response.defer(ephemeral=True, thinking=True)
            page = text.status_page(
                counts=await bot.repo.count_by_status(),
                waiting_in_memory=bot.scheduler.queue_length,
                running=bot.scheduler.running,
                engine=engine_facts(bot.engine),
                loaded=await self.ops.loaded(),
                images_last_hour=await bot.repo.count_images_since(utcnow() - timedelta(hours=1)),
            )
            await say(interaction, page)

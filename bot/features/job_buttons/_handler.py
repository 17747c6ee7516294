"""What the buttons under job messages do. The buttons themselves are in `bot.views`."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import discord

from bot.features import course
from bot.jobs.lessons import BY_ACTION
from bot.ui import render
from bot.ui.checks import is_admin, require_channel

if TYPE_CHECKING:
    from bot.app import DiffusionBot


class ButtonHandler:
    def __init__(self, bot: DiffusionBot) -> None:
        self._bot = bot

    async def handle(self, interaction: discord.Interaction, action: str, job_id: int) -> None:
        if lesson := BY_ACTION.get(action):  # the course's comparison buttons
            await course.request_comparison(self._bot, interaction, job_id, lesson.kind)
            return
        handler = getattr(self, f"_{action}")
        await handler(interaction, job_id)

    async def _reroll(self, interaction: discord.Interaction, job_id: int) -> None:
        require_channel(interaction, self._bot.settings.discord)
        # A new message of its own: the result under it stays as it was.
        await self._bot.jobs.reroll(job_id, None, interaction)

    async def _details(self, interaction: discord.Interaction, job_id: int) -> None:
        job = await self._bot.jobs.get(job_id)
        admin = is_admin(interaction.user, self._bot.settings.discord)
        await interaction.response.send_message(render.details(job, admin=admin), ephemeral=True)

    async def _cancel(self, interaction: discord.Interaction, job_id: int) -> None:
        message = await self._bot.jobs.cancel(job_id, interaction.user)
        await interaction.response.send_message(message, ephemeral=True)

    async def _delete(self, interaction: discord.Interaction, job_id: int) -> None:
        job = await self._bot.jobs.delete(job_id, interaction.user)
        await interaction.response.send_message(
            f"Deleted job #{job.id} and its images.", ephemeral=True
        )
        if interaction.message is not None:
            with contextlib.suppress(discord.NotFound):
                await interaction.message.delete()

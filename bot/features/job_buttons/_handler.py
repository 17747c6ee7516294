"""What the buttons under job messages do. The buttons themselves are in `bot.ui.buttons`."""

from __future__ import annotations

import contextlib
import functools

import discord

from bot.jobs.retention import files_removed
from bot.services import Services
from bot.ui import render
from bot.ui.buttons import UPSCALE_ACTIONS, VARY_STRENGTHS
from bot.ui.checks import is_admin, require_channel


class JobButtons:
    """Reroll, Vary, Upscale, Details, Cancel and Delete: the same rules as the commands, in the job
    service.

    Details, Cancel and Delete answer privately, so they defer privately before they read or
    change anything: the answer (or the refusal) then replaces the private "thinking…".
    """

    def __init__(self, services: Services) -> None:
        self._services = services

    def register(self) -> None:
        buttons = self._services.buttons
        buttons.register("reroll", self.reroll)
        buttons.register("details", self.details)
        buttons.register("cancel", self.cancel)
        buttons.register("delete", self.delete)
        for action, strength in VARY_STRENGTHS.items():
            buttons.register(action, functools.partial(self.vary, strength=strength))
        for action, index in UPSCALE_ACTIONS.items():
            buttons.register(action, functools.partial(self.upscale, index=index))

    async def reroll(self, interaction: discord.Interaction, job_id: int) -> None:
        require_channel(interaction, self._services.settings.discord)
        # A new message of its own: the result under it stays as it was.
        await self._services.jobs.reroll(job_id, None, interaction)

    async def vary(self, interaction: discord.Interaction, job_id: int, *, strength: float) -> None:
        require_channel(interaction, self._services.settings.discord)
        # Like a reroll: a new message of its own, the result stays as it was.
        await self._services.jobs.vary(job_id, strength, interaction)

    async def upscale(self, interaction: discord.Interaction, job_id: int, *, index: int) -> None:
        require_channel(interaction, self._services.settings.discord)
        # Like Vary: a new message of its own, the result stays as it was.
        await self._services.jobs.upscale(job_id, index, interaction)

    # Each answer replaces its own private "thinking…": a followup would do so only by a
    # behaviour Discord has deprecated (bot.ui.interactions.reply says the same).
    async def details(self, interaction: discord.Interaction, job_id: int) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        job = await self._services.jobs.get(job_id)
        settings = self._services.settings
        admin = is_admin(interaction.user, settings.discord)
        days = settings.storage.retention_days
        removed = days if files_removed(job, days) else None
        content = render.details(job, admin=admin, files_removed_after=removed)
        await interaction.edit_original_response(content=content)

    async def cancel(self, interaction: discord.Interaction, job_id: int) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        message = await self._services.jobs.cancel(job_id, interaction.user)
        await interaction.edit_original_response(content=message)

    async def delete(self, interaction: discord.Interaction, job_id: int) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        job = await self._services.jobs.delete(job_id, interaction.user)
        await interaction.edit_original_response(content=f"Deleted job #{job.id} and its images.")
        if interaction.message is not None:
            with contextlib.suppress(discord.NotFound):
                await interaction.message.delete()

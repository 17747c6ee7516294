"""/history: the caller's recent jobs, ephemeral, paged with buttons that survive restarts."""

from __future__ import annotations

import re
from typing import cast

import discord
from discord import app_commands
from discord.ext import commands

from bot.services import HasServices, Services
from bot.store.models import Job, JobStatus
from bot.ui import render
from bot.ui.errors import NotAllowed, report
from engine.protocol import JobKind

PAGE_SIZE = 5
STATUS_ICON = {
    JobStatus.QUEUED: "⏳",
    JobStatus.RUNNING: "🎨",
    JobStatus.DONE: "✅",
    JobStatus.FAILED: "❌",
    JobStatus.CANCELLED: "🚫",
}


def job_link(job: Job) -> str:
    if job.result_message_id is None or job.guild_id is None:
        return ""
    url = f"https://discord.com/channels/{job.guild_id}/{job.channel_id}/{job.result_message_id}"
    return f" · [result]({url})"


KIND_NOTE = {
    JobKind.INPAINT: " · inpaint",
    JobKind.IMAGE_TO_IMAGE: " · image-to-image",
    JobKind.DEPTH_TO_IMAGE: " · depth",
}


def what_it_was(job: Job) -> str:
    """A reroll, a lesson comparison, an X/Y grid, a variation, an upscale, an inpainting, an
    image-to-image or a depth-to-image, so alike prompts can be told apart."""
    if job.comparison == "xy":  # a /compare grid, or its reroll
        again = f", reroll of #{job.parent_job_id}" if job.parent_job_id else ""
        return f" · X/Y grid: {render.grid_axes(job)}{again}"
    if job.comparison:
        return f" · {job.comparison} comparison of #{job.parent_job_id}"
    if job.parent_job_id and job.kind == JobKind.UPSCALE:
        return f" · ×4 upscale of #{job.parent_job_id}"
    if job.parent_job_id and job.kind == JobKind.IMAGE_TO_IMAGE:
        return f" · from #{job.parent_job_id}"  # a reroll, or a Vary of its image
    if job.parent_job_id:
        return f" · reroll of #{job.parent_job_id}"
    return KIND_NOTE.get(job.kind, "")


def history_entry(job: Job) -> str:
    seeds = ", ".join(str(s) for s in job.seeds)
    line = (
        f"{STATUS_ICON[job.status]} **#{job.id}**{what_it_was(job)} "
        f"{render.quote_prompt(job.prompt, 80)} · "
        f"seed{'s' if len(job.seeds) > 1 else ''} {seeds} · {render.relative_time(job.created_at)}"
        f"{job_link(job)}"
    )
    if job.status is JobStatus.FAILED and job.error:
        line += f"\n  ↳ {render.short(job.error, 150)}"
    return line


async def history_page(services: Services, user_id: int, page: int) -> tuple[str, discord.ui.View]:
    total = await services.repo.count_jobs(user_id)
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(max(page, 0), pages - 1)
    jobs = await services.repo.history(user_id, limit=PAGE_SIZE, offset=page * PAGE_SIZE)
    if not jobs:
        return "You have no jobs yet. Try `/imagine`!", discord.ui.View()
    lines = [f"**Your jobs** (page {page + 1} of {pages}, {total} in all)"]
    lines += [history_entry(job) for job in jobs]
    view = discord.ui.View(timeout=None)
    view.add_item(HistoryButton(user_id, page - 1, "◀ Newer", disabled=page == 0))
    view.add_item(HistoryButton(user_id, page + 1, "Older ▶", disabled=page >= pages - 1))
    return render.fit(lines), view  # within one message, however long the ids and errors


class HistoryButton(
    discord.ui.DynamicItem[discord.ui.Button],
    template=r"history:(?P<user_id>[0-9]{1,19}):(?P<page>-?[0-9]{1,6})",
):
    def __init__(
        self, user_id: int, page: int, label: str = "Page", disabled: bool = False
    ) -> None:
        super().__init__(
            discord.ui.Button(
                label=label,
                style=discord.ButtonStyle.secondary,
                custom_id=f"history:{user_id}:{page}",
                disabled=disabled,
            )
        )
        self.user_id = user_id
        self.page = page

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item, match: re.Match[str]
    ) -> HistoryButton:
        return cls(int(match["user_id"]), int(match["page"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        # The client is the bot, which also carries the services (see HasServices).
        services = cast("HasServices", interaction.client).services
        try:
            if interaction.user.id != self.user_id:
                raise NotAllowed("That is someone else's history; use /history for yours.")
            await interaction.response.defer()  # acknowledged before the page is read
            content, view = await history_page(services, self.user_id, self.page)
            await interaction.edit_original_response(content=content, view=view)
        except Exception as error:
            await report(interaction, error)


class HistoryCog(commands.Cog):
    def __init__(self, services: Services) -> None:
        self.services = services

    @app_commands.command(name="history", description="Your recent jobs, with seeds and links")
    @app_commands.guild_only()
    async def history(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        content, view = await history_page(self.services, interaction.user.id, 0)
        await interaction.edit_original_response(content=content, view=view)

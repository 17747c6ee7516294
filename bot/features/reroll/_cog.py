"""The /reroll command: a job again, with a new random seed or the seed you give.

The rules (which jobs a user may reroll, how seeds are chosen, the parent link, the limits)
live in ``JobService.reroll``, which the Reroll button uses too; this cog adds the command and
the autocomplete over the caller's recent jobs.
"""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.services import Services
from bot.store.models import Job
from bot.ui import options, render
from bot.ui.checks import require_channel

RECENT_JOBS = 25  # Discord shows at most 25 choices
MAX_JOB_ID = 2**53 - 1  # Discord's integer options stop here


def job_choice_label(job: Job) -> str:
    """“#12 a watercolor fox (seed 42)”, within Discord's 100 characters."""
    seeds = job.seeds
    seed = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {seeds[0]}–{seeds[-1]}"
    head, tail = f"#{job.id} ", f" ({seed})"
    return head + render.short(job.prompt, 100 - len(head) - len(tail)) + tail


def matching_jobs(jobs: list[Job], typed: str) -> list[Job]:
    """The jobs whose id starts with, or whose prompt contains, what the user typed."""
    typed = typed.strip().removeprefix("#").casefold()
    return [job for job in jobs if str(job.id).startswith(typed) or typed in job.prompt.casefold()]


class RerollCog(commands.Cog):
    """/reroll and its job autocomplete."""

    def __init__(self, services: Services) -> None:
        self.services = services

    @app_commands.command(name="reroll", description="Make a job again with a new or chosen seed")
    @app_commands.guild_only()
    @app_commands.describe(
        job="Which job (default: your latest); type to search yours, or give any job id from "
        "this channel",
        seed="Empty: a new random seed. The job's own seed gives exactly the same image again",
    )
    async def reroll(
        self,
        interaction: discord.Interaction,
        job: app_commands.Range[int, 1, MAX_JOB_ID] | None = None,
        seed: options.Seed | None = None,
    ) -> None:
        require_channel(interaction, self.services.settings.discord)
        await self.services.jobs.reroll(job, seed, interaction)

    @reroll.autocomplete("job")
    async def _job_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[int]]:
        recent = list(await self.services.repo.history(interaction.user.id, limit=RECENT_JOBS))
        return [
            app_commands.Choice(name=job_choice_label(job), value=job.id)
            # Integer options may send what was typed so far as a number.
            for job in matching_jobs(recent, str(current))
        ]

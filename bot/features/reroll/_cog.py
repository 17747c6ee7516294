"""The /reroll command: a job again, with a new random seed or the seed you give.

The rules (which jobs a user may reroll, how seeds are chosen, the parent link, the limits)
live in ``JobService.reroll``, which the Reroll button uses too; this cog adds the command and
the autocomplete over the caller's recent jobs.
"""

from __future__ import annotations

import discord
from discord import AppCommandOptionType, app_commands
from discord.ext import commands

from bot.services import Services
from bot.store.models import Job
from bot.ui import options, render
from bot.ui.checks import require_channel

MAX_CHOICES = 25  # Discord shows at most 25 choices
SEARCHED_JOBS = 100  # how far back in the caller's jobs the search looks
MAX_JOB_ID = 2**53 - 1  # the largest id the bot's jobs get (and Discord's integer options take)
# Room to type prompt words to search by; the longest label is 100 characters anyway.
MAX_TYPED = 100


class JobNumber(app_commands.Transformer[discord.Client]):
    """A job, as text: picked from the autocomplete list (its id) or typed as its number,
    “12” or “#12”. Text, not an integer option, so that typing prompt words searches the list
    (Discord's client lets only digits into an integer option)."""

    @property
    def type(self) -> AppCommandOptionType:
        return AppCommandOptionType.string

    @property
    def max_value(self) -> int:
        return MAX_TYPED  # a string option's max_length

    async def transform(self, interaction: discord.Interaction, value: str) -> int:
        return job_id_from(value)


def job_id_from(typed: str) -> int:
    """The job id in what was picked or typed; refused when it is no job number."""
    text = typed.strip().removeprefix("#").strip()
    if text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_JOB_ID:
        return int(text)
    raise options.OptionError(
        f"Job “{render.short(typed.strip(), 60)}” not found: pick one from the list or give "
        "its number."
    )


def job_choice_label(job: Job) -> str:
    """“#12 a watercolor fox (seed 42)”, within Discord's 100 characters."""
    seeds = job.seeds
    seed = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {seeds[0]}–{seeds[-1]}"
    head, tail = f"#{job.id} ", f" ({seed})"
    return head + render.short(job.prompt, 100 - len(head) - len(tail)) + tail


def matching_jobs(jobs: list[Job], typed: str) -> list[Job]:
    """The jobs whose id starts with what the user typed, or whose prompt holds every word of
    it (“fox snow” finds “a watercolor fox in the snow”)."""
    words = typed.strip().removeprefix("#").casefold().split()
    return [
        job
        for job in jobs
        if (len(words) == 1 and str(job.id).startswith(words[0]))
        or all(word in job.prompt.casefold() for word in words)
    ]


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
        job: app_commands.Transform[int, JobNumber] | None = None,
        seed: options.Seed | None = None,
    ) -> None:
        require_channel(interaction, self.services.settings.discord)
        await self.services.jobs.reroll(job, seed, interaction)

    @reroll.autocomplete("job")
    async def _job_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        recent = list(await self.services.repo.history(interaction.user.id, limit=SEARCHED_JOBS))
        return [
            app_commands.Choice(name=job_choice_label(job), value=str(job.id))
            for job in matching_jobs(recent, current)[:MAX_CHOICES]
        ]

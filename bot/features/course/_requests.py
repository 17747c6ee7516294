"""Asking for a comparison: a lesson button under a result becomes one queued job.

The comparison belongs to whoever clicked (anyone may study anyone's picture), counts its
panels against their hourly images, and goes through the same checks and queue as
``/imagine`` (``JobService.submit``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord

from bot.jobs.lessons import values_for
from bot.jobs.requests import derived_job
from bot.settings import CourseSettings
from bot.store.models import Job
from bot.store.repository import NewJob
from bot.ui.checks import require_channel
from bot.ui.errors import UserInputError
from bot.ui.i18n import t

if TYPE_CHECKING:
    from bot.app import DiffusionBot


def comparison_job(
    parent: Job, kind: str, course: CourseSettings, interaction: discord.Interaction
) -> NewJob:
    """The job that compares ``parent``'s first image across the lesson's panels."""
    return derived_job(
        parent,
        interaction,
        seeds=(parent.seeds[0],),  # one seed: the panels differ only by the lesson's setting
        comparison=kind,
        comparison_values=values_for(kind, parent, course),
    )


async def request_comparison(
    bot: DiffusionBot, interaction: discord.Interaction, job_id: int, kind: str
) -> None:
    """Queue a ``kind`` comparison of job ``job_id`` for the user who clicked."""
    require_channel(interaction, bot.settings.discord)

    async def prepare() -> NewJob:
        parent = await bot.jobs.get(job_id)
        if parent.comparison:
            raise UserInputError(t(interaction, "lesson.not_twice", job_id=job_id))
        await bot.jobs.require_model_offered(parent)
        return comparison_job(parent, kind, bot.settings.course, interaction)

    await bot.jobs.submit(interaction, prepare)

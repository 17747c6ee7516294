"""Asking for a comparison: a lesson button under a result becomes one queued job.

The comparison belongs to whoever clicked (anyone may study anyone's picture), counts its
panels against their hourly images, and goes through the same checks and queue as
``/imagine`` (``JobService.submit``).
"""

from __future__ import annotations

import functools

import discord

from bot.jobs.job_request import Comparison
from bot.jobs.lessons import LESSONS
from bot.services import Services
from bot.ui.checks import require_channel


async def request_comparison(
    services: Services, kind: str, interaction: discord.Interaction, job_id: int
) -> None:
    """Queue a ``kind`` comparison of job ``job_id`` for the user who clicked."""
    require_channel(interaction, services.settings.discord)
    await services.jobs.submit(interaction, Comparison(job_id, kind))


def register_lesson_buttons(services: Services) -> None:
    """One button per lesson under every result."""
    for lesson in LESSONS:
        services.buttons.register(
            lesson.action, functools.partial(request_comparison, services, lesson.kind)
        )

"""Course mode: the lesson buttons under each result, each asking for one comparison job.

What a comparison is (its panels, their values) lives in ``bot.jobs.lessons``, and how its
grid is posted in ``bot.jobs.comparison_results``: a job's life never reaches into features.
"""

from discord.ext import commands

from bot.features.course._requests import register_lesson_buttons, request_comparison
from bot.services import Services


async def setup(bot: commands.Bot, services: Services) -> None:
    register_lesson_buttons(services)


__all__ = ["request_comparison", "setup"]

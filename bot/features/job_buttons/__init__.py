"""What the buttons under job messages do: Reroll, Details, Delete, Cancel."""

from discord.ext import commands

from bot.features.job_buttons._handler import JobButtons
from bot.services import Services
from bot.ui.buttons import JobButton


async def setup(bot: commands.Bot, services: Services) -> None:
    bot.add_dynamic_items(JobButton)
    JobButtons(services).register()


__all__ = ["JobButtons", "setup"]

"""/history: a user's recent jobs, paged."""

from discord.ext import commands

from bot.features.history._cog import HistoryButton, HistoryCog
from bot.services import Services


async def setup(bot: commands.Bot, services: Services) -> None:
    bot.add_dynamic_items(HistoryButton)
    await bot.add_cog(HistoryCog(services))


__all__ = ["HistoryButton", "HistoryCog", "setup"]

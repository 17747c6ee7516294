"""Students' model suggestions: /models-suggest, and the admins' Approve / Reject card."""

from discord.ext import commands

from bot.features.suggest._cog import SuggestCog, SuggestionButton
from bot.services import Services


async def setup(bot: commands.Bot, services: Services) -> None:
    bot.add_dynamic_items(SuggestionButton)
    await bot.add_cog(SuggestCog(services))


__all__ = ["SuggestCog", "setup"]

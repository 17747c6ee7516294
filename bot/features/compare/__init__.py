"""/compare: an X/Y grid of one prompt across one or two settings."""

from discord.ext import commands

from bot.features.compare._cog import CompareCog
from bot.services import Services


async def setup(bot: commands.Bot, services: Services) -> None:
    await bot.add_cog(CompareCog(services))


__all__ = ["CompareCog", "setup"]

"""/depth: a new image from a picture's shape (its estimated depth) and a prompt."""

from discord.ext import commands

from bot.features.depth._cog import DepthCog
from bot.services import Services


async def setup(bot: commands.Bot, services: Services) -> None:
    await bot.add_cog(DepthCog(services))


__all__ = ["DepthCog", "setup"]

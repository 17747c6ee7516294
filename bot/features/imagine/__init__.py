"""/imagine: text to image."""

from discord.ext import commands

from bot.features.imagine._cog import ImagineCog
from bot.services import Services


async def setup(bot: commands.Bot, services: Services) -> None:
    await bot.add_cog(ImagineCog(services))


__all__ = ["ImagineCog", "setup"]

"""/inpaint: repaint part of an image."""

from discord.ext import commands

from bot.features.inpaint._cog import InpaintCog
from bot.services import Services


async def setup(bot: commands.Bot, services: Services) -> None:
    await bot.add_cog(InpaintCog(services))


__all__ = ["InpaintCog", "setup"]

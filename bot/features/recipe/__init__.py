"""/recipe: a job as a standalone diffusers script."""

from discord.ext import commands

from bot.features.recipe._cog import RecipeCog
from bot.services import Services


async def setup(bot: commands.Bot, services: Services) -> None:
    await bot.add_cog(RecipeCog(services))


__all__ = ["RecipeCog", "setup"]

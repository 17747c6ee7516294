"""Model and status commands: /models-list for everyone; for admins /models (add, load,
unload, default, enable, disable, remove and log) and /status."""

from discord.ext import commands

from bot.features.admin._models_cog import ModelsCog
from bot.features.admin._status_cog import StatusCog
from bot.services import Services


async def setup(bot: commands.Bot, services: Services) -> None:
    await bot.add_cog(ModelsCog(services))
    await bot.add_cog(StatusCog(services))


__all__ = ["ModelsCog", "StatusCog", "setup"]

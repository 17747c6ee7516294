"""/reroll: make a job again, with a new seed or a chosen one."""

from discord.ext import commands

from bot.features.reroll._cog import RerollCog
from bot.services import Services


async def setup(bot: commands.Bot, services: Services) -> None:
    await bot.add_cog(RerollCog(services))


__all__ = ["RerollCog", "setup"]

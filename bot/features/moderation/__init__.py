"""Moderation: Release, Confirm and Strike on the moderators' cards for flagged images, and
/moderation (queue, user, pardon). The cards themselves are posted by ``bot.jobs.reviews``."""

from discord.ext import commands

from bot.features.moderation._cog import ModerationCog
from bot.features.moderation._decisions import ReviewDecisions
from bot.services import Services
from bot.ui.buttons import ReviewButton


async def setup(bot: commands.Bot, services: Services) -> None:
    bot.add_dynamic_items(ReviewButton)
    ReviewDecisions(services).register()
    await bot.add_cog(ModerationCog(services))
    await services.strikes.load()  # who is still paused by strikes from before a restart


__all__ = ["ModerationCog", "ReviewDecisions", "setup"]

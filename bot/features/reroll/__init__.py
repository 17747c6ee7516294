"""/reroll: make a job again, with a new seed or a chosen one."""

from bot.features.reroll._cog import RerollCog

__all__ = ["RerollCog"]

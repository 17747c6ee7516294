"""/reroll: make a job again, with a new seed or a chosen one."""

from bot.reroll._cog import RerollCog

__all__ = ["RerollCog"]

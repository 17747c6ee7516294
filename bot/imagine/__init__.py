"""/imagine: text to image."""

from bot.imagine._cog import ImagineCog

__all__ = ["ImagineCog"]

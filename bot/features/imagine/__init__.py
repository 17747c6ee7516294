"""/imagine: text to image."""

from bot.features.imagine._cog import ImagineCog

__all__ = ["ImagineCog"]

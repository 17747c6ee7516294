"""/inpaint: repaint part of an image."""

from bot.features.inpaint._cog import InpaintCog

__all__ = ["InpaintCog"]

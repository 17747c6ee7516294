"""/inpaint: repaint part of an image."""

from bot.inpaint._cog import InpaintCog

__all__ = ["InpaintCog"]

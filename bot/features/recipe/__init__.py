"""/recipe: a job as a standalone diffusers script."""

from bot.features.recipe._cog import RecipeCog

__all__ = ["RecipeCog"]

"""Admin commands: /models (list for everyone; add, load, unload, default, enable, disable,
remove and log for admins) and /status."""

from bot.features.admin._models_cog import ModelsCog
from bot.features.admin._status_cog import StatusCog

__all__ = ["ModelsCog", "StatusCog"]

"""/history: a user's recent jobs, paged."""

from bot.features.history._cog import HistoryButton, HistoryCog

__all__ = ["HistoryButton", "HistoryCog"]

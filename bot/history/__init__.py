"""/history: a user's recent jobs, paged."""

from bot.history._cog import HistoryButton, HistoryCog

__all__ = ["HistoryButton", "HistoryCog"]

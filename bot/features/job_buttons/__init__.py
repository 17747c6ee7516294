"""What the buttons under job messages do: Reroll, Details, Delete, Cancel, and the lessons."""

from bot.features.job_buttons._handler import ButtonHandler

__all__ = ["ButtonHandler"]

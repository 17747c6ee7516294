"""Simplified Chinese (zh-CN) alongside English.

Two halves: ``CourseTranslator`` gives Discord the zh-CN names, descriptions and choices of the
slash commands when they are synced (``bot.i18n._commands`` holds them, one entry per
command), and ``t`` picks the reader's language for the replies listed in
``bot.i18n._messages``. English is the source and the fallback everywhere.
"""

from bot.ui.i18n._messages import MESSAGES, label, locale_of, t
from bot.ui.i18n._translator import CourseTranslator, make_translatable

__all__ = [
    "MESSAGES",
    "CourseTranslator",
    "label",
    "locale_of",
    "make_translatable",
    "t",
]

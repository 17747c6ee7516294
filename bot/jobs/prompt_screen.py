"""Prompt screening: words a course does not want, refused before anything is queued.

Off unless ``MODERATION_BLOCKED_WORDS`` or ``MODERATION_BLOCKED_WORDS_FILE`` lists some. A word
(or phrase) matches whole, in any case: "ass" refuses "an ass" but not "a glass class". Only the
prompt is screened: a negative prompt names what a student wants to keep out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from bot.ui.errors import UserInputError


class PromptScreen:
    """Refuses prompts with a blocked word; passes everything when none is blocked."""

    def __init__(self, words: Sequence[str]) -> None:
        phrases = sorted({" ".join(w.split()).casefold() for w in words if w.strip()}, key=len)
        # Longest first, so a phrase wins over a word inside it; spaces match any run of them.
        alternatives = "|".join(
            r"\s+".join(map(re.escape, phrase.split())) for phrase in reversed(phrases)
        )
        self._pattern = (
            re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE) if phrases else None
        )

    def check(self, prompt: str) -> None:
        """Raise ``UserInputError`` naming the first blocked word in ``prompt``."""
        if self._pattern is None or (found := self._pattern.search(prompt)) is None:
            return
        raise UserInputError(
            f"The prompt contains “{found.group(0)}”, which this course does not allow. "
            "Nothing was queued; please describe the image without it."
        )

"""Prompt screening matches whole words in any case; strikes pause only when enough fall in
the window, and the pause is refused from memory like the rate limit."""

from datetime import UTC, datetime, timedelta

import pytest

from bot.jobs.limits import Paused, UsageLimits
from bot.jobs.prompt_screen import PromptScreen
from bot.jobs.strikes import pause_end
from bot.store.repository import NO_LIMITS
from bot.ui.errors import UserInputError


@pytest.mark.parametrize(
    ("prompt", "refused"),
    [
        ("an Ass in a field", "Ass"),
        ("a glass class", None),  # inside other words: not a match
        ("BLOOD  bath at dawn", "BLOOD  bath"),  # a phrase, any case, any spacing
        ("a bloodhound", None),
        ("", None),
    ],
)
def test_screening_refuses_whole_words_in_any_case(prompt: str, refused: str | None) -> None:
    screen = PromptScreen(["ass", "blood bath"])
    if refused is None:
        screen.check(prompt)
        return
    with pytest.raises(UserInputError, match=f"“{refused}”, which this course does not allow"):
        screen.check(prompt)


def test_no_words_screens_nothing() -> None:
    PromptScreen([]).check("anything at all")


T0 = datetime(2026, 11, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def test_enough_strikes_in_the_window_pause_from_the_last() -> None:
    three = [T0, T0 + 10 * DAY, T0 + 20 * DAY]
    assert pause_end(three, 3, 30 * DAY, timedelta(hours=24)) == T0 + 21 * DAY
    assert pause_end(three[:2], 3, 30 * DAY, timedelta(hours=24)) is None
    spread = [T0, T0 + 20 * DAY, T0 + 40 * DAY]  # never three within 30 days
    assert pause_end(spread, 3, 30 * DAY, timedelta(hours=24)) is None


def test_a_paused_user_is_refused_until_the_pause_ends_or_is_lifted() -> None:
    now = [T0]
    limits = UsageLimits(clock=lambda: now[0])
    limits.pause(7, Paused(T0 + DAY, 3, 30))
    with pytest.raises(Paused, match="You are paused from making images until <t:"):
        limits.reserve(7, 1, NO_LIMITS)
    limits.reserve(8, 1, NO_LIMITS)  # others are not
    now[0] = T0 + 2 * DAY
    limits.reserve(7, 1, NO_LIMITS)  # over
    limits.pause(7, Paused(T0 + 9 * DAY, 3, 30))
    limits.lift(7)
    limits.reserve(7, 1, NO_LIMITS)

"""The bot's settings: an operator may narrow the protocol's bounds, never widen them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from bot.settings import (
    ConfigError,
    CourseSettings,
    LimitSettings,
    SchedulerSettings,
    load_settings,
)
from engine.protocol import BOUNDS


def limits(**values: Any) -> LimitSettings:
    return LimitSettings(_env_file=None, **values)  # type: ignore[call-arg]  # pydantic-settings' own


def course(**values: Any) -> CourseSettings:
    return CourseSettings(_env_file=None, **values)  # type: ignore[call-arg]  # pydantic-settings' own


def test_left_empty_the_limits_are_the_protocols_bounds() -> None:
    assert limits().bounds() == BOUNDS


def test_limits_narrow_the_bounds() -> None:
    bounds = limits(max_steps=50, max_guidance=12, max_count=2, max_prompt_chars=300).bounds()
    assert (bounds.steps.max, bounds.guidance.max, bounds.count.max) == (50, 12.0, 2)
    assert bounds.prompt_chars.max == 300 and bounds.seed == BOUNDS.seed


@pytest.mark.parametrize(
    "wider",
    [
        {"max_steps": BOUNDS.steps.max + 1},
        {"max_steps": 0},
        {"max_guidance": BOUNDS.guidance.max + 1},
        {"max_count": BOUNDS.count.max + 1},
        {"max_prompt_chars": BOUNDS.prompt_chars.max + 1},
    ],
)
def test_limits_cannot_widen_the_bounds(wider: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        limits(**wider)


def test_course_values_are_checked_against_the_bounds() -> None:
    with pytest.raises(ValidationError, match=f"steps must be from 1 to {BOUNDS.steps.max}"):
        course(steps_values=[10, BOUNDS.steps.max + 1])
    with pytest.raises(ValidationError, match=r"guidance must be 0 \(.*\) or from 1 to 30"):
        course(guidance_values=[0, 0.5])


def test_course_values_outside_narrowed_limits_stop_the_bot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LIMITS_MAX_STEPS", "40")  # the course compares 10, 15, 25 and 50 steps
    with pytest.raises(ConfigError, match=r"COURSE_STEPS_VALUES .*steps must be from 1 to 40"):
        load_settings(None)
    monkeypatch.setenv("COURSE_STEPS_VALUES", "10, 40")
    assert load_settings(None).limits.bounds().steps.max == 40
    monkeypatch.setenv("LIMITS_MAX_STEPS", "400")
    with pytest.raises(ConfigError, match="LIMITS_MAX_STEPS is not valid"):
        load_settings(None)


def test_scheduler_batch_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHEDULER_MAX_BATCH_IMAGES", "32")
    monkeypatch.setenv("SCHEDULER_PREFERRED_BATCH_SIZES", "8, 1, 4, 2, 16, 4")
    scheduler = SchedulerSettings(_env_file=None)  # type: ignore[call-arg]  # pydantic-settings' own
    assert scheduler.max_batch_images == 32
    assert scheduler.preferred_batch_sizes == [1, 2, 4, 8, 16]
    for wrong in ({"max_batch_images": 33}, {"preferred_batch_sizes": "0, 4"}):
        with pytest.raises(ValidationError):
            SchedulerSettings(_env_file=None, **wrong)  # type: ignore[call-arg, arg-type]

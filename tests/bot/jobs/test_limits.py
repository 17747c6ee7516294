"""The limits in memory: checked and taken in one step, given back, and rolled by the hour."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from bot.jobs.limits import UsageLimits
from bot.store.repository import Limits, RateLimited, StoreError, TooManyQueued

START = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def ended(job_id: int, user_id: int = 1) -> SimpleNamespace:
    return SimpleNamespace(id=job_id, user_id=user_id)


def test_queued_jobs_are_counted_from_reservation_to_their_end():
    limits = UsageLimits()
    two = Limits(max_queued_jobs=2, images_per_hour=None)
    first = limits.reserve(1, 1, two)
    limits.reserve(1, 1, two)  # its row is still being written: it counts already
    with pytest.raises(TooManyQueued):
        limits.reserve(1, 1, two)
    limits.reserve(2, 1, two)  # another user is not affected
    limits.written(first, 10)
    limits.job_ended(ended(10))
    limits.job_ended(ended(10))  # heard twice: counted once
    assert limits.active(1) == 1
    limits.reserve(1, 1, two)


def test_images_roll_out_of_the_window_and_the_refusal_says_when():
    clock = Clock()
    limits = UsageLimits(clock)
    five = Limits(max_queued_jobs=None, images_per_hour=5)
    limits.reserve(1, 3, five)
    clock.now += timedelta(minutes=10)
    limits.reserve(1, 2, five)
    with pytest.raises(RateLimited) as refused:
        limits.reserve(1, 1, five)
    assert refused.value.retry_at == START + timedelta(hours=1)  # when the first three leave
    with pytest.raises(StoreError, match="at most 5 images an hour"):
        limits.reserve(2, 6, five)
    clock.now = START + timedelta(hours=1)
    limits.reserve(1, 3, five)
    assert limits.images_in_window(1) == 5


def test_a_released_reservation_gives_its_place_and_images_back():
    limits = UsageLimits()
    one = Limits(max_queued_jobs=1, images_per_hour=2)
    taken = limits.reserve(1, 2, one)
    limits.release(taken)
    assert (limits.active(1), limits.images_in_window(1)) == (0, 0)
    limits.reserve(1, 2, one)


def test_exempt_users_are_not_counted_against_the_hour():
    limits = UsageLimits()
    reservation = limits.reserve(1, 100, Limits(None, None))
    assert reservation.counted_at is None and limits.images_in_window(1) == 0

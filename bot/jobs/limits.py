"""The limits a user meets when asking for images, kept in memory so that a command can be
refused, privately, before any database work.

Two limits per user (admins are exempt): jobs queued or running at once, and images in a
rolling hour. ``reserve`` checks both and takes the place in one synchronous step, with no
``await`` between, so two commands racing for the last place cannot both get it. The counts
start from the store (``load``) and every reservation is written through with its job row (the
rate-limit usage row, at the reservation's moment; the job's status), so after a restart they
are the same.

One bot process owns the store: these counts are exact within it. Two bot processes sharing
one database would each count only their own commands; ``Repository.create_job`` with
``Limits`` is the check that holds across processes.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from bot.store.models import Job, utcnow
from bot.store.repository import (
    RATE_WINDOW,
    Limits,
    Repository,
    StoreError,
    TooManyQueued,
    check_window,
)


class Paused(StoreError):
    """A user paused by strikes (``bot.jobs.strikes``): until when, and after how many."""

    def __init__(self, until: datetime, strikes: int, window_days: float) -> None:
        stamp = int(until.timestamp())
        days = f"{window_days:g} day{'s' if window_days != 1 else ''}"
        super().__init__(
            f"You are paused from making images until <t:{stamp}:f> (<t:{stamp}:R>) after "
            f"{strikes} strike{'s' if strikes != 1 else ''} from the moderators in {days}. "
            "Nothing was queued; ask a moderator if you think this is a mistake."
        )
        self.until, self.strikes, self.window_days = until, strikes, window_days


@dataclass(frozen=True)
class Reservation:
    """A place taken for one job whose row is not written yet."""

    user_id: int
    images: int
    counted_at: datetime | None  # when its images count against the hour; None: exempt


class UsageLimits:
    """Per user: images in the last hour and jobs queued or running, checked and reserved."""

    def __init__(self, clock: Callable[[], datetime] = utcnow) -> None:
        self._clock = clock
        self._usage: dict[int, deque[tuple[datetime, int]]] = {}  # oldest first
        self._active: dict[int, set[int]] = {}  # job ids queued or running
        self._pending: Counter[int] = Counter()  # reservations whose row is being written
        self._paused: dict[int, Paused] = {}  # users paused by strikes, with what they are told
        self._loading: asyncio.Future[None] | None = None

    @property
    def loaded(self) -> bool:
        return self._loading is not None and self._loading.done()

    async def load(self, repo: Repository) -> None:
        """Start from the store: usage rows in the window and jobs still queued or running.

        Once: later calls wait for the first, so no reservation is ever overwritten.
        """
        if self._loading is None:
            self._loading = asyncio.ensure_future(self._read(repo))
        await asyncio.shield(self._loading)

    async def _read(self, repo: Repository) -> None:
        usage = await repo.usage_in_window()
        owners = await repo.active_job_owners()
        for user_id, at, amount in usage:
            self._usage.setdefault(user_id, deque()).append((at, amount))
        for job_id, user_id in owners:
            self._active.setdefault(user_id, set()).add(job_id)

    def reserve(self, user_id: int, images: int, limits: Limits) -> Reservation:
        """Take a place for a job of ``images`` images, or raise TooManyQueued, RateLimited or
        StoreError (asking for more than an hour allows) or Paused, and take nothing."""
        now = self._clock()
        if (paused := self._paused.get(user_id)) is not None:
            if paused.until > now:  # a new exception each time: no traceback piles up
                raise Paused(paused.until, paused.strikes, paused.window_days)
            del self._paused[user_id]
        if limits.max_queued_jobs is not None and self.active(user_id) >= limits.max_queued_jobs:
            raise TooManyQueued(limits.max_queued_jobs)
        counted_at = None
        if limits.images_per_hour is not None:
            window = self._window(user_id, now)
            check_window(list(window), images, limits.images_per_hour, now)
            window.append((now, images))
            counted_at = now
        self._pending[user_id] += 1
        return Reservation(user_id, images, counted_at)

    def pause(self, user_id: int, paused: Paused) -> None:
        """Refuse ``user_id``'s images until ``paused.until`` (strikes: ``bot.jobs.strikes``)."""
        self._paused[user_id] = paused

    def lift(self, user_id: int) -> None:
        """End ``user_id``'s pause now (a pardon)."""
        self._paused.pop(user_id, None)

    def written(self, reservation: Reservation, job_id: int) -> None:
        """The reserved job's row is stored: it counts as queued until it ends."""
        self._settle(reservation)
        self._active.setdefault(reservation.user_id, set()).add(job_id)

    def release(self, reservation: Reservation) -> None:
        """The reserved job was never written: give its place and its images back."""
        self._settle(reservation)
        if reservation.counted_at is not None:
            window = self._usage.get(reservation.user_id)
            if window is not None and (reservation.counted_at, reservation.images) in window:
                window.remove((reservation.counted_at, reservation.images))

    def job_ended(self, job: Job) -> None:
        """A job is done, failed or cancelled: it no longer counts as queued. Its images
        still count for the hour."""
        self._active.get(job.user_id, set()).discard(job.id)

    def active(self, user_id: int) -> int:
        """Jobs of ``user_id`` queued or running, or being written."""
        return len(self._active.get(user_id, ())) + self._pending[user_id]

    def images_in_window(self, user_id: int) -> int:
        """Images ``user_id`` made (or has queued) in the last hour."""
        return sum(amount for _, amount in self._window(user_id, self._clock()))

    def _window(self, user_id: int, now: datetime) -> deque[tuple[datetime, int]]:
        window = self._usage.setdefault(user_id, deque())
        while window and window[0][0] <= now - RATE_WINDOW:
            window.popleft()
        return window

    def _settle(self, reservation: Reservation) -> None:
        self._pending[reservation.user_id] -= 1
        if self._pending[reservation.user_id] <= 0:
            del self._pending[reservation.user_id]

"""Strikes: enough of them in a rolling window pause a user from making images.

The pause is decided from the strike rows (``repo.moderation``) and kept in memory in the
limits (``bot.jobs.limits.UsageLimits``), so a paused user's command is refused by the same
in-memory check as the rate limit, before any database work. It is worked out again at start,
after every strike, and after a pardon (which lifts every strike the user had).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from bot.jobs.limits import Paused, UsageLimits
from bot.settings import ModerationSettings
from bot.store.models import utcnow
from bot.store.repository import Repository


def pause_end(
    times: Sequence[datetime], needed: int, window: timedelta, pause: timedelta
) -> datetime | None:
    """When the pause that the strikes at ``times`` (oldest first) earned ends: ``needed``
    strikes within ``window`` pause for ``pause`` from the last of them. None: no pause."""
    end = None
    for last in range(needed - 1, len(times)):
        if times[last] - times[last - needed + 1] <= window:
            end = times[last] + pause
    return end


class Strikes:
    """Pauses users with enough strikes, in the limits every command checks."""

    def __init__(self, repo: Repository, limits: UsageLimits, settings: ModerationSettings) -> None:
        self._repo = repo
        self._limits = limits
        self._settings = settings
        self._window = timedelta(days=settings.strike_window_days)
        self._pause = timedelta(hours=settings.pause_hours)

    async def load(self) -> None:
        """Pause everyone whose strikes still pause them (at start)."""
        times: dict[int, list[datetime]] = {}
        for user_id, at in await self._repo.moderation.strike_times(self._since()):
            times.setdefault(user_id, []).append(at)
        for user_id, theirs in times.items():
            self._apply(user_id, theirs)

    async def recount(self, user_id: int) -> Paused | None:
        """Work ``user_id``'s pause out again (after a strike); the pause, if any."""
        theirs = [at for _, at in await self._repo.moderation.strike_times(self._since(), user_id)]
        return self._apply(user_id, theirs)

    async def in_window(self, user_id: int) -> int:
        """``user_id``'s strikes within the window, not pardoned."""
        since = utcnow() - self._window
        return len(await self._repo.moderation.strike_times(since, user_id))

    async def pardon(self, user_id: int) -> int:
        """Lift every strike of ``user_id`` and their pause; how many strikes there were."""
        lifted = await self._repo.moderation.pardon(user_id)
        self._limits.lift(user_id)
        return lifted

    def _since(self) -> datetime:
        # A strike older than the window plus the pause can no longer pause anyone.
        return utcnow() - self._window - self._pause

    def _apply(self, user_id: int, times: list[datetime]) -> Paused | None:
        needed = self._settings.strikes_to_pause
        end = pause_end(times, needed, self._window, self._pause)
        if end is None or end <= utcnow():
            self._limits.lift(user_id)
            return None
        paused = Paused(end, needed, self._settings.strike_window_days)
        self._limits.pause(user_id, paused)
        return paused

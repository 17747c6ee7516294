"""Discord snowflake ids that encode the time they were made, like the real ones.

discord.py reads creation times out of ids (``Interaction.created_at``, ``is_expired()``), so
the stub's ids must carry a real timestamp rather than being small counters.
"""

from __future__ import annotations

import datetime
import time

DISCORD_EPOCH_MS = 1_420_070_400_000


class SnowflakeGenerator:
    """Hands out strictly increasing snowflakes whose top bits are the current time."""

    def __init__(self, worker_id: int = 1) -> None:
        self._worker_bits = (worker_id & 0x1F) << 17
        self._last = 0

    def next(self) -> int:
        """Return a new id, never equal to or below the previous one."""
        candidate = ((int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22) | self._worker_bits
        # Several ids in the same millisecond: bump the increment bits instead of waiting.
        self._last = max(candidate, self._last + 1)
        return self._last


def snowflake_time(snowflake: int) -> datetime.datetime:
    """The UTC time encoded in ``snowflake``."""
    ms = (snowflake >> 22) + DISCORD_EPOCH_MS
    return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)


def iso_timestamp(moment: datetime.datetime | None = None) -> str:
    """An ISO 8601 timestamp the way Discord writes them (UTC, with offset)."""
    return (moment or datetime.datetime.now(datetime.UTC)).isoformat()

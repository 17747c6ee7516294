"""pytest fixtures; register with ``pytest_plugins = ["tests.discord_stub.fixtures"]``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from .driver import DiscordStub


@pytest.fixture
async def discord_stub() -> AsyncIterator[DiscordStub]:
    """A running stub with the default course guild, discord.py patched to use it."""
    async with DiscordStub() as stub:
        yield stub

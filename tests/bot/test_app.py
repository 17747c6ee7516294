"""The bot's own wiring: its connections to Discord."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from discord.http import Route

from bot.app import HTTP_CONNECTIONS, DiffusionBot
from bot.store.database import create_engine, migrate
from engine.protocol import Event, Ready
from tests.bot.e2e.harness import make_settings
from tests.discord_stub import DiscordStub
from tests.fixtures.tiny_models import TinyModels


class IdleEngine:
    """An engine that is ready and is never given work here."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self.in_flight: frozenset[int] = frozenset()
        self.ready = True
        self.slots = 1

    async def start(self) -> Ready:
        return Ready(device="none", dtype="none", pid=0)

    async def stop(self) -> None:
        return None

    def kill(self) -> None:
        return None


async def test_requests_to_discord_share_a_capped_pool_of_kept_alive_connections(tmp_path):
    names = TinyModels(*(Path(tmp_path) / name for name in "abcd"))  # names only: never loaded
    async with DiscordStub() as stub:
        settings = make_settings(tmp_path, stub, names)
        database = create_engine(settings.database.url)
        await migrate(database)
        bot = DiffusionBot(settings, database, engine=IdleEngine())  # type: ignore[arg-type]
        try:
            async with stub.running(bot):
                connector = bot.http.connector
                assert connector.limit == HTTP_CONNECTIONS
                opened = 0
                create_connection = connector._create_connection  # type: ignore[attr-defined]

                async def counting(*args: Any, **kwargs: Any) -> Any:
                    nonlocal opened
                    opened += 1
                    return await create_connection(*args, **kwargs)

                connector._create_connection = counting  # type: ignore[attr-defined]
                me = Route("GET", "/users/@me")
                await asyncio.gather(*(bot.http.request(me) for _ in range(4 * HTTP_CONNECTIONS)))
                await asyncio.gather(*(bot.http.request(me) for _ in range(4 * HTTP_CONNECTIONS)))
                assert opened <= HTTP_CONNECTIONS
        finally:
            await database.dispose()

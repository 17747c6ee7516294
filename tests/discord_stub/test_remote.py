"""The stub in its own process: a real discord.py client connects, and driver code runs there."""

from __future__ import annotations

import os

import discord
import pytest
from discord import app_commands

from tests.discord_stub import CallbackType, DiscordStub
from tests.discord_stub.remote import RemoteStubError, StubProcess

pytestmark = pytest.mark.timeout(60)


class PingBot(discord.Client):
    """One command, ``/ping``: deferred, then answered with a followup."""

    def __init__(self) -> None:
        super().__init__(intents=discord.Intents.default())
        self.tree = app_commands.CommandTree(self)

        @self.tree.command(name="ping", description="Answers pong")
        async def ping(interaction: discord.Interaction, word: str = "pong") -> None:
            await interaction.response.defer(thinking=True)
            await interaction.followup.send(f"{word} from pid {os.getpid()}")

    async def setup_hook(self) -> None:
        await self.tree.sync()


# Driver code runs in the stub's process, so it lives at module level (pickled by reference).


async def ping_twice(stub: DiscordStub, word: str) -> tuple[list[str], list[str], int]:
    """Two /ping commands; their callback types, answers, and the stub's pid."""
    handles = [await stub.invoke_slash("ping", {"word": word}) for _ in range(2)]
    responses = [await handle.wait_for_response() for handle in handles]
    answers = [await handle.wait_for_message(lambda m: not m.is_loading) for handle in handles]
    return (
        [CallbackType(r.response_type).name for r in responses],
        [m.content for m in answers],
        os.getpid(),
    )


def fail(stub: DiscordStub) -> None:
    raise ValueError(f"no such channel in guild {stub.guild.id}")


async def test_a_bot_talks_to_the_stub_in_another_process() -> None:
    async with StubProcess() as stub, stub.running(PingBot()):
        types, answers, stub_pid = await stub.call(ping_twice, "hello")
    assert stub_pid not in (None, os.getpid())
    assert types == ["DEFERRED_CHANNEL_MESSAGE"] * 2
    assert answers == [f"hello from pid {os.getpid()}"] * 2


async def test_a_failed_call_raises_here_with_the_childs_traceback() -> None:
    async with StubProcess() as stub:
        with pytest.raises(RemoteStubError, match="ValueError: no such channel in guild"):
            await stub.call(fail)
        assert await stub.call(guild_id) == stub.address.guild.id  # still serving
    assert stub.pid is None  # stopped


def guild_id(stub: DiscordStub) -> int:
    return stub.guild.id

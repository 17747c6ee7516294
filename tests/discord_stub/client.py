"""Running a discord.py client against a stub: login, connect, wait for ``on_ready``, close.

Shared by the in-process stub (:class:`DiscordStub`) and the stub in its own process
(:class:`tests.discord_stub.remote.StubProcess`) through :class:`ClientHost`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from .waiting import StubTimeout

if TYPE_CHECKING:
    import discord


@contextlib.asynccontextmanager
async def run_client(
    client: discord.Client,
    token: str,
    *,
    ready_timeout: float,
    fast_ready: bool,
    describe_requests: Callable[[], str],
) -> AsyncIterator[discord.Client]:
    """Log ``client`` in, connect it, wait for ``on_ready``; close it on exit.

    discord.py waits ``guild_ready_timeout`` (2 s) after the last GUILD_CREATE before READY;
    ``fast_ready`` shortens that wait since the stub sends all guilds at once.
    ``describe_requests`` says what the stub received, for the message of a timeout.
    """
    if fast_ready:
        client._connection.guild_ready_timeout = min(client._connection.guild_ready_timeout, 0.05)
    connect: asyncio.Task[None] | None = None
    ready: asyncio.Task[None] | None = None
    try:
        await client.login(token)
        connect = asyncio.create_task(client.connect(), name="discord-stub-client")
        ready = asyncio.create_task(client.wait_until_ready())
        done, _ = await asyncio.wait(
            {connect, ready}, timeout=ready_timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if connect in done:
            connect.result()  # raises what stopped the client
            raise RuntimeError("the client stopped before it was ready")
        if ready not in done:
            raise StubTimeout(
                f"client not ready after {ready_timeout:g}s; requests: {describe_requests()}"
            )
        yield client
    finally:
        if ready is not None:
            ready.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ready
        await client.close()
        if connect is not None:
            # The client's own failure (if any) was raised above; here we only bound the wait.
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(connect, 5.0)


class ClientHost:
    """A stub that discord.py clients connect to: :meth:`running` for its subclasses.

    Subclasses provide ``token`` (one the stub accepts) and ``_requests_summary()``.
    """

    token: str

    def _requests_summary(self) -> str:
        """What the stub received lately, for the message of a timeout."""
        raise NotImplementedError

    def running(
        self,
        client: discord.Client,
        *,
        token: str | None = None,
        ready_timeout: float = 10.0,
        fast_ready: bool = True,
    ) -> contextlib.AbstractAsyncContextManager[discord.Client]:
        """Log ``client`` in, connect it, wait for ``on_ready``; close it on exit.

        discord.py waits ``guild_ready_timeout`` (2 s) after the last GUILD_CREATE before
        READY; ``fast_ready`` shortens that wait since the stub sends all guilds at once.
        """
        return run_client(
            client,
            token or self.token,
            ready_timeout=ready_timeout,
            fast_ready=fast_ready,
            describe_requests=self._requests_summary,
        )

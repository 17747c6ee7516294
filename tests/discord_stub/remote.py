"""The stub in its own process, driven over a pipe.

In-process, the stub shares the bot's event loop and CPU, so a benchmark counts the stub's own
work (compressing gateway frames, parsing uploads, recording every request) as the bot's. A
:class:`StubProcess` runs a :class:`DiscordStub` in a child interpreter instead
(``python -m tests.discord_stub.remote``) and runs driver code *there*, next to the stub:

    async def burst(stub: DiscordStub, commands: int) -> list[float]:  # in an importable module
        handles = [await stub.invoke_slash("imagine", {"prompt": "a cat"}) for _ in ...]
        return [(await h.wait_for_response()).at for h in handles]

    async with StubProcess() as stub, stub.running(make_bot()):
        times = await stub.call(burst, 200)

The control channel is the child's stdin and stdout, one length-prefixed pickle frame per
message: the parent sends ``(function, args, kwargs)`` and gets back ``("ok", value)`` or
``("error", traceback)``. ``function`` travels by reference (module and name), so it must be
a module-level function of an importable module, never one defined in ``__main__``; its first
argument is the child's :class:`DiscordStub`, and what it returns must pickle. Calls run one
at a time; the stub serves the bot while a call runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import pickle
import struct
import sys
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Self, TypeVar

from .client import ClientHost
from .patching import patch_discord

if TYPE_CHECKING:
    from .driver import DiscordStub

P = ParamSpec("P")
T = TypeVar("T")
PROJECT_ROOT = Path(__file__).resolve().parents[2]
_HEADER = struct.Struct(">I")
#: how long the child may take to start listening, and to stop
_START_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 10.0


class RemoteStubError(AssertionError):
    """A call failed in the stub's process (its traceback is the message), or the process died.

    An ``AssertionError`` like :class:`~tests.discord_stub.StubTimeout`, which is what a failed
    wait in the child usually is.
    """


@dataclass(frozen=True)
class RemoteGuild:
    """The stub's first guild, as far as a bot's settings need it."""

    id: int
    name: str


@dataclass(frozen=True)
class StubAddress:
    """Where the child's stub listens, the token it accepts and its first guild: the names are
    :class:`DiscordStub`'s, so code that reads only these takes either."""

    url: str
    api_base: str
    gateway_url: str
    token: str
    guild: RemoteGuild


class StubProcess(ClientHost):
    """A :class:`DiscordStub` in a child process, and a channel to run driver code there.

    ``stub_options`` are :class:`DiscordStub`'s keyword arguments (they must pickle). With
    ``patch`` (the default) discord.py's base URLs in *this* process point at the child's stub
    from :meth:`start` to :meth:`stop`. On stop, a ``strict`` stub's surprises (unknown routes,
    its own errors) are raised here as :class:`RemoteStubError`.
    """

    def __init__(self, *, patch: bool = True, **stub_options: Any) -> None:
        self._patch = patch
        self._options = {**stub_options, "patch": False}  # the child has no client to patch
        self._process: asyncio.subprocess.Process | None = None
        self._address: StubAddress | None = None
        self._lock = asyncio.Lock()
        self._exit = contextlib.ExitStack()

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> StubAddress:
        """Start the child, wait until its stub listens; returns where."""
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            __name__,
            cwd=PROJECT_ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            await self._send(self._options)
            reply = await asyncio.wait_for(self._receive(), _START_TIMEOUT_S)
            self._address = self._unwrap(reply)
        except BaseException:
            await self._kill()
            raise
        if self._patch:
            address = self.address
            self._exit.enter_context(
                patch_discord(address.api_base, address.gateway_url, address.url)
            )
        return self.address

    async def stop(self) -> None:
        """Stop the child's stub and wait for the process; raises its surprises, if any."""
        if self._process is None:
            return
        try:
            async with self._lock:
                await self._send(None)
                reply = await asyncio.wait_for(self._receive(), _STOP_TIMEOUT_S)
            self._unwrap(reply)
        finally:
            self._exit.close()
            await self._kill()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            await self.stop()
        else:  # the first failure is the one to see; the child's surprises would hide it
            with contextlib.suppress(Exception):
                await self.stop()

    @property
    def address(self) -> StubAddress:
        """Where the stub listens, its token and guild (after :meth:`start`)."""
        if self._address is None:
            raise RuntimeError("the stub process is not started")
        return self._address

    @property
    def token(self) -> str:  # type: ignore[override]
        """A bot token the stub accepts."""
        return self.address.token

    @property
    def pid(self) -> int | None:
        """The child's process id, while it runs."""
        return self._process.pid if self._process else None

    # -- driver code ----------------------------------------------------------------------------

    def _requests_summary(self) -> str:
        return "(recorded in the stub's process)"

    async def call(
        self,
        function: Callable[Concatenate[DiscordStub, P], Awaitable[T] | T],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """``function(stub, *args, **kwargs)`` in the child (awaited if a coroutine)."""
        async with self._lock:
            await self._send((function, args, kwargs))
            reply = await self._receive()
        return self._unwrap(reply)  # type: ignore[no-any-return]

    # -- the channel ----------------------------------------------------------------------------

    async def _send(self, message: object) -> None:
        process = self._require_process()
        assert process.stdin is not None
        data = pickle.dumps(message)
        process.stdin.write(_HEADER.pack(len(data)) + data)
        await process.stdin.drain()

    async def _receive(self) -> tuple[str, Any]:
        process = self._require_process()
        assert process.stdout is not None
        try:
            (size,) = _HEADER.unpack(await process.stdout.readexactly(_HEADER.size))
            return pickle.loads(await process.stdout.readexactly(size))  # type: ignore[no-any-return]
        except asyncio.IncompleteReadError:
            code = await process.wait()
            raise RemoteStubError(
                f"the stub process exited (status {code}); its stderr says why"
            ) from None

    @staticmethod
    def _unwrap(reply: tuple[str, Any]) -> Any:
        status, value = reply
        if status != "ok":
            raise RemoteStubError(f"in the stub's process:\n{value}")
        return value

    def _require_process(self) -> asyncio.subprocess.Process:
        if self._process is None:
            raise RuntimeError("the stub process is not started")
        return self._process

    async def _kill(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), _STOP_TIMEOUT_S)
        except TimeoutError:
            process.kill()
            await process.wait()


# -- the child ----------------------------------------------------------------------------------


async def _serve(output: Any) -> None:
    """Read requests from stdin, run them next to the stub, answer on ``output``."""
    from .driver import DiscordStub

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**30)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)

    async def receive() -> Any:
        (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
        return pickle.loads(await reader.readexactly(size))

    def answer(status: str, value: object) -> None:
        try:
            data = pickle.dumps((status, value))
        except Exception:  # an unpicklable result is the caller's error to see
            data = pickle.dumps(("error", traceback.format_exc()))
        # Blocking: the parent is waiting for this answer and reads it at once.
        output.write(_HEADER.pack(len(data)) + data)
        output.flush()

    stub = DiscordStub(**await receive())
    try:
        await stub.start()
        guild = stub.guild
        answer(
            "ok",
            StubAddress(
                stub.url,
                stub.api_base,
                stub.gateway_url,
                stub.token,
                RemoteGuild(guild.id, guild.name),
            ),
        )
        while (request := await receive()) is not None:
            function, args, kwargs = request
            try:
                value = function(stub, *args, **kwargs)
                if inspect.isawaitable(value):
                    value = await value
                answer("ok", value)
            except Exception:  # every failure goes back to the caller
                answer("error", traceback.format_exc())
    finally:
        await stub.stop()
    try:
        if stub.strict:
            stub.assert_no_surprises()
        answer("ok", None)
    except AssertionError:
        answer("error", traceback.format_exc())


def main() -> None:
    """The child's entry point: stdout carries only frames, so prints go to stderr."""
    output = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    with contextlib.suppress(asyncio.IncompleteReadError):  # the parent went away
        asyncio.run(_serve(output))


if __name__ == "__main__":
    # Run under the module's real name: what the child pickles (StubAddress) must unpickle
    # in the parent as tests.discord_stub.remote's, not as this __main__'s.
    from tests.discord_stub.remote import main as serve_stub

    serve_stub()

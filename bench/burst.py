"""Driver code that runs in the Discord stub's own process: a burst of ``/imagine``, and what
came of it.

The burst benchmarks run the stub with :class:`tests.discord_stub.remote.StubProcess`, so that
the bot's process does only the bot's work; the functions here are what they ask the stub's
process to do (``await stub.call(imagine_burst, ...)``). Every time is taken there, on the
stub's clock, when the stub sends an interaction or receives the bot's request about it.

Nothing here imports the bot: the stub's process stays the stub.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass

from tests.discord_stub import (
    CallbackType,
    DiscordStub,
    EventKind,
    InteractionEvent,
    InteractionHandle,
    Message,
    StubTimeout,
)

# Waiting polls instead of waking on every change: a thousand waiters woken by each of tens of
# thousands of requests would make the stub, not the bot, the bottleneck. The times reported
# are the stub's records of each request, so the poll interval does not change them.
_POLL_S = 0.05


def is_result(message: Message) -> bool:
    """The finished result: images with the Reroll button (progress previews have neither)."""
    return bool(message.png_attachments) and any(
        custom_id.startswith("job:reroll:") for custom_id in message.custom_ids
    )


def is_result_event(event: InteractionEvent) -> bool:
    """An event that posted the finished result."""
    return event.message is not None and is_result(event.message)


@dataclass(frozen=True)
class CommandTimes:
    """One command of a burst. Times are seconds; ``None``: it never came."""

    #: when the stub sent the command, after the burst's first
    dispatched: float
    #: the bot's first answer (the interaction callback), after this command was sent; None
    #: also when the stub refused it (past Discord's deadline): see ``refused``
    answered: float | None
    #: the stub refused the bot's callback (too late, as Discord would)
    refused: bool
    #: that first answer was a deferral ("thinking...")
    deferred: bool
    #: the finished result, after this command was sent
    posted: float | None
    #: images in the result
    images: int


@dataclass(frozen=True)
class BurstReport:
    """What the stub saw of a burst: each command's times, and the bot's REST requests."""

    commands: tuple[CommandTimes, ...]
    #: from the first command sent to the last
    dispatch_s: float
    #: commands whose callback the stub refused (past Discord's 3 s deadline, or repeated)
    refused_callbacks: int
    #: the bot's REST requests during the burst, by HTTP method
    requests: dict[str, int]
    #: the stub process's CPU time during the burst, and the burst's wall time: when the first
    #: nears the second, the stub (not the bot) set the pace
    stub_cpu_s: float
    wall_s: float

    @property
    def edits(self) -> int:
        """Messages edited (PATCH requests) during the burst."""
        return self.requests.get("PATCH", 0)

    @property
    def images(self) -> int:
        """Images posted."""
        return sum(command.images for command in self.commands)

    @property
    def posted(self) -> int:
        """Commands whose result was posted."""
        return sum(1 for command in self.commands if command.posted is not None)

    @property
    def all_posted_s(self) -> float:
        """From the first command sent to the last result posted."""
        return max(c.dispatched + (c.posted or 0.0) for c in self.commands)

    def stub_load(self) -> str:
        """The stub process's share of a core during the burst, for the report."""
        return (
            f"{self.stub_cpu_s:.1f} s CPU in {self.wall_s:.1f} s "
            f"({100 * self.stub_cpu_s / self.wall_s:.0f}% of a core)"
        )


async def imagine_burst(
    stub: DiscordStub,
    *,
    channel: str,
    commands: int,
    users: int,
    steps: int,
    user_prefix: str = "student",
    timeout: float = 900.0,  # noqa: ASYNC109 - a bound on the whole burst
    idle_s: float = 60.0,
) -> BurstReport:
    """``commands`` ``/imagine`` from ``users`` new members, sent back to back; reports the times.

    Waits until every command is settled: its result posted, or its callback refused (the
    bot was too late: no job). Stops early when the bot has sent nothing for ``idle_s``
    seconds (the rest count as not posted), and fails after ``timeout`` seconds.
    """
    loop = asyncio.get_running_loop()
    people = [stub.add_user(f"{user_prefix}{i:04d}") for i in range(min(users, commands))]
    first_request = len(stub.state.requests)
    sent: list[tuple[InteractionHandle, float]] = []
    cpu = time.process_time()
    started = loop.time()
    for i in range(commands):
        handle = await stub.invoke_slash(
            "imagine",
            {"prompt": f"a watercolor fox, study {i}", "steps": steps},
            user=people[i % len(people)],
            channel=channel,
        )
        sent.append((handle, loop.time() - handle.age() - started))
    dispatch_s = loop.time() - started
    await _wait_until_settled(stub, [handle for handle, _ in sent], timeout, idle_s)
    times = tuple(_times(handle, dispatched) for handle, dispatched in sent)
    refused = sum(1 for handle, _ in sent if _refused(handle))
    during = stub.state.requests[first_request:]
    return BurstReport(
        times,
        dispatch_s,
        refused,
        dict(Counter(r.method for r in during)),
        stub_cpu_s=time.process_time() - cpu,
        wall_s=loop.time() - started,
    )


def _refused(handle: InteractionHandle) -> bool:
    return any("callback" in request.path for request in handle.rejections)


async def _wait_until_settled(
    stub: DiscordStub,
    handles: list[InteractionHandle],
    timeout: float,  # noqa: ASYNC109 - a bound on the whole wait
    idle_s: float,
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pending = handles
    seen, quiet_since = len(stub.state.requests), loop.time()
    while pending:
        pending = [
            h for h in pending if not (_refused(h) or any(is_result_event(e) for e in h.events))
        ]
        now = loop.time()
        if len(stub.state.requests) != seen:
            seen, quiet_since = len(stub.state.requests), now
        if not pending or now - quiet_since > idle_s:
            return
        if now > deadline:
            raise StubTimeout(
                f"{len(pending)} of {len(handles)} results not posted after {timeout:g} s; "
                f"the first still waiting: {pending[0].describe()}"
            )
        await asyncio.sleep(_POLL_S)


def _times(handle: InteractionHandle, dispatched: float) -> CommandTimes:
    answer = handle.response
    result = next((e for e in handle.events if is_result_event(e)), None)
    return CommandTimes(
        dispatched=dispatched,
        answered=answer.at if answer else None,
        refused=_refused(handle),
        deferred=answer is not None
        and answer.kind is EventKind.RESPONSE
        and answer.response_type is CallbackType.DEFERRED_CHANNEL_MESSAGE,
        posted=result.at if result else None,
        images=len(result.message.png_attachments) if result and result.message else 0,
    )

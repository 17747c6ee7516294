"""Bounded waiting on stub state, with failure messages that say what did arrive."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class StubTimeout(AssertionError):
    """A bounded wait in the stub ran out.

    It subclasses ``AssertionError`` so pytest reports it as a failed expectation, with the
    message listing what the stub received instead.
    """


class Signal:
    """Wakes every waiter whenever the stub's recorded state changes.

    One signal for the whole stub keeps the bookkeeping trivial: waiters re-check their own
    condition after each change, and changes are rare (one per request or gateway message).
    """

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        """Wake all current waiters; later waiters wait for the next change."""
        self._event.set()
        self._event = asyncio.Event()

    async def wait_until(
        self,
        check: Callable[[], T | None],
        *,
        timeout: float,  # noqa: ASYNC109 - a bounded wait is the point of this API
        describe: Callable[[], str],
    ) -> T:
        """Return the first non-``None`` result of ``check``, re-checked after every change.

        Raises :class:`StubTimeout` with ``describe()`` as the message once ``timeout`` seconds
        have passed.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = check()
            if result is not None:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise StubTimeout(f"timed out after {timeout:g}s waiting for {describe()}")
            event = self._event
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                continue

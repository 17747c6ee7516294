"""The store's one writer: every change goes through one task, which commits whatever has
queued up meanwhile in one transaction.

SQLite has one write lock. Many tasks each taking it in turn (``BEGIN IMMEDIATE`` ... an
fsync at ``COMMIT``) is what made a class-wide burst of commands slow; here a burst of job rows,
or a batch's status changes, is one transaction. A change is a coroutine function of a session.
Its caller awaits the outcome, which it gets only once the transaction has committed, so
nothing is reported done that a restart would not find.

Changes run in the order they were queued, each seeing the ones before it. One that raises is
taken out and the others run again without it in a fresh transaction: a refusal (a limit, a
job already cancelled) changes nothing, whatever it had written before raising, and costs the
others only the retry. Every change is flushed and its objects detached before the next runs,
so what one change returns is never altered by another.

The task runs only while changes are waiting: it starts when one is queued and ends when the
queue is empty, so there is nothing to stop. Reads do not come here: they use their own
connections, and in WAL mode they are never blocked by the writer.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.store.database import WRITE_TRANSACTION

T = TypeVar("T")
Change = Callable[[AsyncSession], Awaitable[T]]

# Changes committed together at most; a burst beyond it is simply several transactions.
MAX_CHANGES_PER_TRANSACTION = 500


@dataclass(frozen=True)
class _Queued:
    change: Change[Any]
    outcome: asyncio.Future[Any]


class Writer:
    """Runs changes in order, as few transactions as the queue allows."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        max_per_transaction: int = MAX_CHANGES_PER_TRANSACTION,
    ) -> None:
        self._sessions = sessions
        self._max = max_per_transaction
        self._queue: deque[_Queued] = deque()
        self._task: asyncio.Task[None] | None = None
        self.transactions = 0  # committed, for tests and benchmarks

    async def run(self, change: Change[T]) -> T:
        """Queue ``change`` and return what it returned, once its transaction has committed.

        Raises what the change raised (its transaction then committed without it), or what
        the commit raised. A caller cancelled before its change ran leaves nothing written.
        """
        outcome: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append(_Queued(change, outcome))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name="store-writer")
        return await outcome

    async def _drain(self) -> None:
        while self._queue:
            await self._commit_next()

    def _take(self) -> list[_Queued]:
        """What is queued now, up to the bound, skipping callers that stopped waiting."""
        taken: list[_Queued] = []
        while self._queue and len(taken) < self._max:
            queued = self._queue.popleft()
            if not queued.outcome.done():
                taken.append(queued)
        return taken

    async def _commit_next(self) -> None:
        async with self._sessions() as session:
            try:
                # Take the write lock first: what queues up while it is awaited joins in.
                await session.connection(execution_options=WRITE_TRANSACTION)
            except BaseException as error:
                self._fail(self._take(), error)
                if not isinstance(error, Exception):
                    raise
                return
            batch = self._take()
            results: list[Any] = []
            try:
                for queued in batch:
                    try:
                        results.append(await queued.change(session))
                        await session.flush()
                        session.expunge_all()  # what it returned is the caller's alone now
                    except Exception as error:
                        await session.rollback()
                        _settle(queued.outcome, error=error)
                        # The others run again, first in the queue, without the one that failed.
                        self._queue.extendleft(reversed([q for q in batch if q is not queued]))
                        return
                await session.commit()
            except BaseException as error:
                self._fail(batch, error)
                if not isinstance(error, Exception):
                    raise
                return
        self.transactions += 1
        for queued, result in zip(batch, results, strict=True):
            _settle(queued.outcome, result=result)

    @staticmethod
    def _fail(batch: list[_Queued], error: BaseException) -> None:
        """Every caller in ``batch`` gets ``error``; a cancelled writer cancels them."""
        for queued in batch:
            if isinstance(error, Exception):
                _settle(queued.outcome, error=error)
            elif not queued.outcome.done():
                queued.outcome.cancel()


def _settle(
    outcome: asyncio.Future[Any], *, result: Any = None, error: Exception | None = None
) -> None:
    if outcome.done():
        return  # the caller stopped waiting
    if error is not None:
        outcome.set_exception(error)
    else:
        outcome.set_result(result)

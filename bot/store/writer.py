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

Another connection (a second bot process, an admin's ``sqlite3`` shell, a backup) may hold
SQLite's write lock longer than the busy timeout. SQLite then answers "database is locked"
(SQLITE_BUSY), in WAL mode at ``BEGIN IMMEDIATE``: once that has the lock, nothing later in the
transaction, ``COMMIT`` included, can be refused for it. Wherever it comes, the transaction is
rolled back and the same changes run again, in a fresh one, after a pause that doubles
(``LockRetry``); no change is blamed for it. Only after ``LockRetry.give_up_after_s`` of that
do the callers get the error. Changes are coroutine functions of a session, so running one
again is what the writer already does when another change of its batch is refused.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.store.database import WRITE_TRANSACTION

T = TypeVar("T")
Change = Callable[[AsyncSession], Awaitable[T]]

log = logging.getLogger(__name__)

# Changes committed together at most; a burst beyond it is simply several transactions.
MAX_CHANGES_PER_TRANSACTION = 500


@dataclass(frozen=True)
class LockRetry:
    """How long the writer waits out another connection's write lock.

    Each try itself waits up to SQLite's busy timeout (``bot.store.database``); between tries
    the writer pauses ``first_delay_s``, doubling up to ``max_delay_s``. It stops trying once
    ``give_up_after_s`` have passed since the first refusal: long enough for a backup or a
    minute-long lock by hand, short enough that a caller hears of a lock that never ends.
    """

    first_delay_s: float = 0.1
    max_delay_s: float = 5.0
    give_up_after_s: float = 120.0


def is_locked(error: BaseException) -> bool:
    """Whether ``error`` is SQLite's "database is locked" (or "busy"): another connection
    held a lock past the busy timeout, so the same transaction may well succeed later."""
    if not isinstance(error, OperationalError):
        return False
    cause = error.orig
    code = getattr(cause, "sqlite_errorcode", None)  # aiosqlite passes sqlite3's error on
    if isinstance(code, int):
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "database is locked" in str(cause) or "database table is locked" in str(cause)


class _Locked(Exception):
    """The write lock was refused; the changes it concerned are back in the queue."""

    def __init__(self, error: OperationalError) -> None:
        super().__init__(str(error))
        self.error = error


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
        lock_retry: LockRetry = LockRetry(),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._max = max_per_transaction
        self._lock_retry = lock_retry
        self._sleep = sleep  # tests pass their own, to act between tries and to take no time
        self._clock = clock
        self._queue: deque[_Queued] = deque()
        self._task: asyncio.Task[None] | None = None
        self._locked_since: float | None = None  # the first refusal of the lock not yet won
        self._next_delay = lock_retry.first_delay_s
        self.transactions = 0  # committed, for tests and benchmarks
        self.lock_refusals = 0  # tries refused for another connection's lock, ever

    async def run(self, change: Change[T]) -> T:
        """Queue ``change`` and return what it returned, once its transaction has committed.

        Raises what the change raised (its transaction then committed without it), or what
        the commit raised; "database is locked" only once ``LockRetry.give_up_after_s`` of
        tries have failed. A caller cancelled before its change ran leaves nothing written.
        """
        outcome: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append(_Queued(change, outcome))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name="store-writer")
        return await outcome

    async def _drain(self) -> None:
        while self._queue:
            try:
                await self._commit_next()
            except _Locked as locked:
                await self._wait_out_lock(locked.error)
            else:
                self._lock_won()

    async def _wait_out_lock(self, error: OperationalError) -> None:
        """Pause before the next try, or fail every queued change once the lock has been
        refused for ``give_up_after_s``."""
        self.lock_refusals += 1
        now = self._clock()
        if self._locked_since is None:
            self._locked_since = now
            self._next_delay = self._lock_retry.first_delay_s
            log.warning("the database is locked by another connection; trying again (%s)", error)
        waited = now - self._locked_since
        if waited >= self._lock_retry.give_up_after_s:
            log.error(
                "the database has been locked for %.0f s; %d change(s) were not written: %s",
                waited,
                len(self._queue),
                error,
            )
            self._locked_since = None
            while self._queue:
                self._fail(self._take(), error)
            return
        delay = self._next_delay
        self._next_delay = min(delay * 2, self._lock_retry.max_delay_s)
        await self._sleep(delay)

    def _lock_won(self) -> None:
        if self._locked_since is not None:
            log.warning(
                "the database lock was free again after %.1f s",
                self._clock() - self._locked_since,
            )
            self._locked_since = None

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
                if isinstance(error, OperationalError) and is_locked(error):
                    raise _Locked(error) from error  # nothing taken: all of it waits
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
                        if is_locked(error):
                            raise  # not this change's fault: the whole batch tries again
                        await session.rollback()
                        _settle(queued.outcome, error=error)
                        # The others run again, first in the queue, without the one that failed.
                        self._queue.extendleft(reversed([q for q in batch if q is not queued]))
                        return
                await session.commit()
            except BaseException as error:
                if isinstance(error, OperationalError) and is_locked(error):
                    # The session's end rolls back whatever this try wrote.
                    self._queue.extendleft(reversed(batch))
                    raise _Locked(error) from error
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

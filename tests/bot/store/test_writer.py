"""The store's one writer: a burst of changes is one transaction; a refusal costs the others
nothing; what a change returns is its own; another connection's lock is waited out, within a
bound."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable

import pytest
from sqlalchemy import event, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.store.database import create_engine, create_sessionmaker, migrate
from bot.store.models import AuditEntry
from bot.store.writer import LockRetry, Writer, is_locked


def entry(n: int) -> AuditEntry:
    return AuditEntry(actor_id=n, actor_name=f"a{n}", action="test", target="", ok=True, outcome="")


def add(n: int):
    async def change(session: AsyncSession) -> AuditEntry:
        added = entry(n)
        session.add(added)
        return added

    return change


def refuse(n: int):
    async def change(session: AsyncSession) -> None:
        session.add(entry(n))  # written, then refused: none of it may stay
        await session.flush()
        raise ValueError(f"no {n}")

    return change


async def stored(db_engine) -> list[int]:
    async with create_sessionmaker(db_engine)() as session:
        return list(await session.scalars(select(AuditEntry.actor_id).order_by(AuditEntry.id)))


@pytest.fixture
def begins(db_engine) -> list[str]:
    """The BEGIN statements sent, in order."""
    sent: list[str] = []

    def before(_conn, _cursor, statement: str, *_args) -> None:
        if statement.startswith("BEGIN"):
            sent.append(statement)

    event.listen(db_engine.sync_engine, "before_cursor_execute", before)
    yield sent
    event.remove(db_engine.sync_engine, "before_cursor_execute", before)


async def test_a_burst_of_changes_is_one_write_locked_transaction(db_engine, begins):
    writer = Writer(create_sessionmaker(db_engine))
    added = await asyncio.gather(*(writer.run(add(n)) for n in range(50)))
    assert [a.actor_id for a in added] == list(range(50))
    assert all(a.id is not None for a in added)  # flushed before they were handed back
    assert await stored(db_engine) == list(range(50))  # in the order they were queued
    assert writer.transactions == 1
    assert begins[:1] == ["BEGIN IMMEDIATE"]


async def test_a_change_that_raises_is_taken_out_and_the_others_commit(db_engine):
    writer = Writer(create_sessionmaker(db_engine))
    changes = [add(1), refuse(2), add(3), refuse(4), add(5)]
    outcomes = await asyncio.gather(*(writer.run(c) for c in changes), return_exceptions=True)
    assert [str(o) for o in outcomes if isinstance(o, ValueError)] == ["no 2", "no 4"]
    assert await stored(db_engine) == [1, 3, 5]


async def test_a_caller_that_stopped_waiting_has_nothing_written(db_engine):
    writer = Writer(create_sessionmaker(db_engine))
    first = asyncio.ensure_future(writer.run(add(1)))
    gone = asyncio.ensure_future(writer.run(add(2)))
    await asyncio.sleep(0)
    gone.cancel()
    await first
    assert await stored(db_engine) == [1]


async def test_reads_take_no_write_lock_and_do_not_wait_for_the_writer(db_engine, begins):
    sessions = create_sessionmaker(db_engine)
    writer = Writer(sessions)
    holding, release = asyncio.Event(), asyncio.Event()

    async def slow(session: AsyncSession) -> None:
        session.add(entry(1))
        await session.flush()
        holding.set()
        await release.wait()  # the write lock is held meanwhile

    writing = asyncio.ensure_future(writer.run(slow))
    await holding.wait()
    async with asyncio.timeout(5):
        assert await stored(db_engine) == []  # read at once, before the commit
    release.set()
    await writing
    assert await stored(db_engine) == [1]
    assert begins == ["BEGIN IMMEDIATE", "BEGIN", "BEGIN"]


# --- another connection holding the write lock (issue 15, item 8) ---------------------------


@pytest.fixture
async def impatient_engine(tmp_path):
    """The store with a busy timeout of 50 ms, so that a held lock is refused at once."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}", busy_timeout_s=0.05)
    await migrate(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
def other_connection(tmp_path):
    """A second connection to the same file, as another process or an admin's shell would be."""
    connection = sqlite3.connect(tmp_path / "bot.db", isolation_level=None, timeout=0)
    yield connection
    connection.close()


class Pauses:
    """The writer's sleep and clock: records each pause, takes no time, and advances the clock
    by the pause; ``then`` runs at the ``n``-th pause."""

    def __init__(self) -> None:
        self.taken: list[float] = []
        self.now = 0.0
        self.actions: dict[int, Callable[[], None]] = {}

    async def sleep(self, seconds: float) -> None:
        self.taken.append(seconds)
        self.now += seconds
        if (action := self.actions.get(len(self.taken))) is not None:
            action()
        await asyncio.sleep(0)

    def clock(self) -> float:
        return self.now


def patient_writer(engine, pauses: Pauses, give_up_after_s: float = 120.0) -> Writer:
    retry = LockRetry(first_delay_s=0.1, max_delay_s=0.4, give_up_after_s=give_up_after_s)
    return Writer(
        create_sessionmaker(engine), lock_retry=retry, sleep=pauses.sleep, clock=pauses.clock
    )


async def test_a_locked_database_is_waited_out_and_the_changes_then_commit(
    impatient_engine, other_connection
):
    other_connection.execute("BEGIN IMMEDIATE")  # holds the write lock
    pauses = Pauses()
    pauses.actions[3] = lambda: other_connection.execute("COMMIT")  # released at the 3rd pause
    writer = patient_writer(impatient_engine, pauses)
    async with asyncio.timeout(30):
        added = await asyncio.gather(*(writer.run(add(n)) for n in range(3)))
    assert [a.actor_id for a in added] == [0, 1, 2]
    assert await stored(impatient_engine) == [0, 1, 2]
    assert pauses.taken == [0.1, 0.2, 0.4]  # doubling, to the cap
    assert writer.lock_refusals == 3 and writer.transactions == 1


async def test_a_lock_held_past_the_bound_fails_the_callers_then_writing_works_again(
    impatient_engine, other_connection
):
    other_connection.execute("BEGIN IMMEDIATE")
    pauses = Pauses()
    writer = patient_writer(impatient_engine, pauses, give_up_after_s=1.0)
    async with asyncio.timeout(30):
        outcomes = await asyncio.gather(
            *(writer.run(add(n)) for n in range(2)), return_exceptions=True
        )
    assert all(isinstance(o, OperationalError) and is_locked(o) for o in outcomes), outcomes
    assert "database is locked" in str(outcomes[0])
    assert pauses.taken == [0.1, 0.2, 0.4, 0.4]  # 1.1 s by the clock: no more tries
    other_connection.execute("COMMIT")
    async with asyncio.timeout(30):
        assert (await writer.run(add(7))).actor_id == 7
    assert await stored(impatient_engine) == [7]
    assert pauses.taken == [0.1, 0.2, 0.4, 0.4]  # a fresh start: nothing left to wait out


async def test_a_lock_refused_inside_the_transaction_blames_no_change(db_engine):
    """Outside WAL mode SQLite can refuse the lock at a statement or at COMMIT too: the whole
    batch runs again, and the change that met the refusal is not failed for it."""
    pauses = Pauses()
    writer = patient_writer(db_engine, pauses)
    tries = 0

    async def meets_a_lock(session: AsyncSession) -> AuditEntry:
        nonlocal tries
        tries += 1
        if tries == 1:
            session.add(entry(99))  # written before the refusal: must not stay twice
            await session.flush()
            raise OperationalError("COMMIT", {}, sqlite3.OperationalError("database is locked"))
        return await add(2)(session)

    async with asyncio.timeout(30):
        added = await asyncio.gather(writer.run(add(1)), writer.run(meets_a_lock))
    assert [a.actor_id for a in added] == [1, 2] and tries == 2
    assert await stored(db_engine) == [1, 2]
    assert pauses.taken == [0.1] and writer.transactions == 1

"""The store's one writer: a burst of changes is one transaction; a refusal costs the others
nothing; what a change returns is its own."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.store.database import create_sessionmaker
from bot.store.models import AuditEntry
from bot.store.writer import Writer


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

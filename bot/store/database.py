"""Opening the database: engine, SQLite pragmas, sessions, and migrating to head.

Alembic is imported only where a migration runs. The bot migrates in a child process
(:func:`migrate_in_child`), so its own long-lived process never loads Alembic, which imports
every SQL dialect it knows (12 MiB resident, for work done once at start).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

if TYPE_CHECKING:
    from alembic.config import Config

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ALEMBIC_CONFIG = PROJECT_ROOT / "pyproject.toml"


# The execution option that marks the store's writer (bot.store.writer): only its
# transactions take SQLite's write lock.
_WRITER = "store_writer"
WRITE_TRANSACTION = {_WRITER: True}


# How long SQLite itself waits for another connection's write lock before it answers "database
# is locked". The store's writer retries after that (bot.store.writer), so this is one try.
BUSY_TIMEOUT_S = 30.0


def create_engine(url: str, *, busy_timeout_s: float = BUSY_TIMEOUT_S) -> AsyncEngine:
    """An async engine; for SQLite with WAL, foreign keys, and the write lock for writers only."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_async_engine(url, pool_pre_ping=True)

    database = parsed.database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, connect_args={"timeout": busy_timeout_s})
    _configure_sqlite(engine, busy_timeout_ms=round(busy_timeout_s * 1000))
    return engine


def _configure_sqlite(engine: AsyncEngine, *, busy_timeout_ms: int) -> None:
    # pysqlite's own transaction handling starts transactions late and never as IMMEDIATE.
    # We take it over. The writer's transactions begin with BEGIN IMMEDIATE, which takes
    # SQLite's write lock up front, so a read-then-write (a transition, a limit checked against
    # the rows) cannot interleave with another writer, here or in another process. Reads begin
    # a plain (deferred) transaction: a consistent snapshot that in WAL mode neither waits for
    # the writer nor holds it up.
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:  # the driver's, untyped
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms:d}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        writing = connection.get_execution_options().get(_WRITER, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def alembic_config() -> Config:
    from alembic.config import Config

    return Config(toml_file=str(ALEMBIC_CONFIG))


async def migrate(engine: AsyncEngine, revision: str = "head") -> None:
    """Upgrade the schema to ``revision`` (``alembic upgrade head`` semantics)."""
    from alembic import command

    await _run_alembic(engine, command.upgrade, revision)


async def downgrade(engine: AsyncEngine, revision: str = "base") -> None:
    from alembic import command

    await _run_alembic(engine, command.downgrade, revision)


class MigrationFailed(Exception):
    """The child process could not migrate the database; ``str()`` is its last line."""

    def __init__(self, returncode: int, output: str) -> None:
        lines = output.strip().splitlines()
        super().__init__(lines[-1] if lines else f"exit code {returncode}")
        self.output = output


async def migrate_in_child(url: str, revision: str = "head") -> None:
    """:func:`migrate` in a child process (``python -m bot.store.migrate``).

    The URL goes on the child's standard input, not its command line or environment, where
    other users of the machine could read a password in it.
    """
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.store.migrate",
        revision,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,  # its working folder is ours: a relative URL holds
    )
    _, errors = await child.communicate(url.encode())
    if child.returncode:
        raise MigrationFailed(child.returncode, errors.decode(errors="replace"))


async def _run_alembic(
    engine: AsyncEngine, action: Callable[[Config, str], None], revision: str
) -> None:
    config = alembic_config()

    def run(connection: Connection) -> None:
        # migrations/env.py uses this connection rather than opening its own.
        config.attributes["connection"] = connection
        action(config, revision)

    async with engine.connect() as connection:
        # Migrations write: they take the write lock up front like the store's writer.
        writing = await connection.execution_options(**WRITE_TRANSACTION)
        async with writing.begin():
            await writing.run_sync(run)

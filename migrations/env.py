"""Alembic environment: async, batch mode for SQLite, the models' naming convention.

The bot runs migrations through `bot.store.database.migrate`, which hands over its own
connection in ``config.attributes["connection"]``. Run from the command line
(`alembic upgrade head`), the URL comes from the bot's settings (`DATABASE_URL`).
"""

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from bot.settings import DatabaseSettings
from bot.store.database import create_engine
from bot.store.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(**kwargs: object) -> None:
    # render_as_batch: SQLite can ALTER little, so changes rebuild tables in batch mode.
    context.configure(
        target_metadata=target_metadata, render_as_batch=True, compare_type=True, **kwargs
    )


def run_migrations_offline() -> None:
    _configure(url=DatabaseSettings().url, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    engine = create_engine(DatabaseSettings().url)
    async with engine.begin() as connection:
        await connection.run_sync(do_run_migrations)
    await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
elif (connection := config.attributes.get("connection")) is not None:
    do_run_migrations(connection)
else:
    asyncio.run(run_async_migrations())

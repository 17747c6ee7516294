"""The migrations build exactly the schema the models describe, and can be undone."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from bot.store.database import create_engine, downgrade, migrate
from bot.store.models import Base


def _tables(connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def test_upgrade_on_empty_database_then_downgrade_to_base(tmp_path):
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")
    try:
        await migrate(engine)
        async with engine.connect() as connection:
            tables = await connection.run_sync(_tables)
        assert set(Base.metadata.tables) <= tables
        assert "alembic_version" in tables

        await downgrade(engine, "base")
        async with engine.connect() as connection:
            assert await connection.run_sync(_tables) == {"alembic_version"}

        # And back up again: the downgrade left nothing behind that blocks an upgrade.
        await migrate(engine)
    finally:
        await engine.dispose()


async def test_models_match_migrated_schema(db_engine):
    def diff(connection):
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)

    async with db_engine.connect() as connection:
        assert await connection.run_sync(diff) == []


async def test_sqlite_runs_in_wal_mode_with_foreign_keys(db_engine):
    async with db_engine.connect() as connection:
        assert (await connection.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
        assert (await connection.execute(text("PRAGMA foreign_keys"))).scalar() == 1

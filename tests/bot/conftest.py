import asyncio
import shutil
from pathlib import Path

import pytest

from bot.store.database import create_engine, create_sessionmaker, migrate
from bot.store.repository import Repository


async def _migrate_new(path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        await migrate(engine)
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def migrated_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database file migrated to head once per session. Tests copy it rather than run every
    migration again (``tests/bot/store/test_migrations.py`` runs them on their own)."""
    path = tmp_path_factory.mktemp("migrated") / "bot.db"
    asyncio.run(_migrate_new(path))
    # The last connection's close checkpointed the write-ahead log into the file itself.
    assert not path.with_name("bot.db-wal").exists()
    return path


def copy_migrated_database(template: Path, path: Path) -> Path:
    """``path`` holds a fresh copy of the migrated ``template``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, path)
    return path


@pytest.fixture
async def db_engine(tmp_path, migrated_database):
    path = copy_migrated_database(migrated_database, tmp_path / "bot.db")
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    yield engine
    await engine.dispose()


@pytest.fixture
def repo(db_engine) -> Repository:
    return Repository(create_sessionmaker(db_engine))

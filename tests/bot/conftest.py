import pytest

from bot.store.database import create_engine, create_sessionmaker, migrate
from bot.store.repository import Repository


@pytest.fixture
async def db_engine(tmp_path):
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")
    await migrate(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
def repo(db_engine) -> Repository:
    return Repository(create_sessionmaker(db_engine))

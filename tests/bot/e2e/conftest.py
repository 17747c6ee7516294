import pytest

from tests.bot.conftest import copy_migrated_database
from tests.bot.e2e.harness import Harness, make_settings
from tests.discord_stub import DiscordStub

INVALID_FORM_BODY = 50035  # what Discord answers a message or command past its limits


@pytest.fixture
async def harness(tmp_path, tiny_models, engine_forkserver, migrated_database):
    # The bot's own migrate() at start finds it at head: the same schema, without running
    # every migration for every test.
    copy_migrated_database(migrated_database, tmp_path / "bot.db")
    async with DiscordStub() as stub:
        settings = make_settings(tmp_path, stub, tiny_models)
        yield Harness(
            tmp_path, stub, tiny_models, settings, engine_command=engine_forkserver.command
        )
        # Every test checks Discord's limits: anything the bot sent past them was refused.
        refused = [
            r.describe()
            for r in stub.requests
            if not r.injected and (r.error or {}).get("code") == INVALID_FORM_BODY
        ]
        assert refused == [], refused

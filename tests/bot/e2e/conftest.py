import pytest

from tests.bot.e2e.harness import Harness, make_settings
from tests.discord_stub import DiscordStub

INVALID_FORM_BODY = 50035  # what Discord answers a message or command past its limits


@pytest.fixture
async def harness(tmp_path, tiny_models):
    async with DiscordStub() as stub:
        yield Harness(tmp_path, stub, tiny_models, make_settings(tmp_path, stub, tiny_models))
        # Every test checks Discord's limits: anything the bot sent past them was refused.
        refused = [
            r.describe()
            for r in stub.requests
            if not r.injected and (r.error or {}).get("code") == INVALID_FORM_BODY
        ]
        assert refused == [], refused

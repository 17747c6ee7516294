import pytest

from tests.bot.e2e.harness import Harness, make_settings
from tests.discord_stub import DiscordStub


@pytest.fixture
async def harness(tmp_path, tiny_models):
    async with DiscordStub() as stub:
        yield Harness(tmp_path, stub, tiny_models, make_settings(tmp_path, stub, tiny_models))

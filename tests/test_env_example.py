"""`.env.example` lists every setting, and its values load as they are."""

from pathlib import Path

from bot import settings as bot_settings
from engine.protocol import BOUNDS
from engine.settings import EngineSettings

ROOT = Path(__file__).resolve().parents[1]


def _example_keys() -> dict[str, str]:
    lines = (ROOT / ".env.example").read_text().splitlines()
    pairs = [line.split("=", 1) for line in lines if line and not line.startswith("#")]
    return {key: value for key, value in pairs}


def _setting_keys() -> set[str]:
    classes = [
        bot_settings.DiscordSettings,
        bot_settings.DatabaseSettings,
        bot_settings.StorageSettings,
        bot_settings.ModelDefaults,
        bot_settings.LimitSettings,
        bot_settings.SchedulerSettings,
        bot_settings.CourseSettings,
        bot_settings.ModerationSettings,
        bot_settings.EngineBackendSettings,
        EngineSettings,
    ]
    return {
        field.validation_alias or cls.model_config["env_prefix"] + name.upper()
        for cls in classes
        for name, field in cls.model_fields.items()
    }


def test_every_setting_is_in_env_example_and_nothing_else():
    assert set(_example_keys()) == _setting_keys()


def test_env_example_loads_as_is(tmp_path, monkeypatch):
    example = tmp_path / ".env"
    example.write_text(
        (ROOT / ".env.example").read_text().replace("DISCORD_TOKEN=", "DISCORD_TOKEN=x")
    )
    monkeypatch.chdir(tmp_path)
    loaded = bot_settings.load_settings(example)
    assert loaded.discord.allowed_channels == ["diffusion-models-class"]
    assert loaded.discord.guild_ids == []
    assert loaded.limits.bounds() == BOUNDS  # the LIMITS_MAX_* lines narrow nothing
    engine = EngineSettings(_env_file=example)
    assert engine.safety_enabled and engine.memory_budget_gb is None and engine.variant is None


def test_every_bot_setting_is_kept_from_the_engine_and_no_engine_setting_is():
    """The engine's process is started without variables of these prefixes (the token's)."""
    bots = bot_settings.bot_env_prefixes()
    assert "DISCORD_" in bots and "DATABASE_" in bots
    for key in set(_example_keys()) - {"RAY_ADDRESS"}:  # Ray's own name, read by the bot
        assert key.startswith(bots) != key.startswith(EngineSettings.model_config["env_prefix"])

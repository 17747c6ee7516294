"""Engine settings: ENGINE_* variables and .env, resolved device and dtype."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from engine.settings import DEFAULT_SAFETY_CHECKER, EngineSettings


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    settings = EngineSettings()
    assert settings.safety_enabled is True
    assert settings.safety_checker == DEFAULT_SAFETY_CHECKER
    assert (settings.max_width, settings.max_height, settings.max_steps) == (1024, 1024, 100)
    assert (settings.min_guidance, settings.max_guidance) == (0.0, 30.0)
    assert settings.offline is False


def test_environment_and_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(
        "ENGINE_MAX_STEPS=50\nENGINE_OFFLINE=true\nDISCORD_TOKEN=not-ours\n", encoding="utf-8"
    )
    monkeypatch.setenv("ENGINE_SAFETY_ENABLED", "false")
    monkeypatch.setenv("ENGINE_MEMORY_BUDGET_GB", "12.5")
    settings = EngineSettings()
    assert settings.max_steps == 50
    assert settings.offline is True
    assert settings.safety_enabled is False
    assert settings.memory_budget_bytes() == int(12.5 * 1024**3)


def test_cpu_always_runs_in_float32() -> None:
    settings = EngineSettings(_env_file=None, device="cpu", dtype="float16")  # type: ignore[call-arg]
    assert settings.torch_device() == torch.device("cpu")
    assert settings.torch_dtype() is torch.float32
    assert settings.memory_budget_bytes() is None


def test_auto_device_on_a_machine_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert EngineSettings(_env_file=None).torch_device().type == "cpu"  # type: ignore[call-arg]


def test_inconsistent_bounds_are_refused() -> None:
    with pytest.raises(ValidationError):
        EngineSettings(_env_file=None, min_guidance=5, max_guidance=1)  # type: ignore[call-arg]

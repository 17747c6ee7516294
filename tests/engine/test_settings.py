"""Engine settings: ENGINE_* variables and .env, resolved device and dtype."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from engine.settings import DEFAULT_SAFETY_CHECKER, SAFETENSORS_ONLY, EngineSettings

ENGINE = Path(__file__).resolve().parents[2] / "engine"


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    settings = EngineSettings()
    assert settings.safety_enabled is True
    assert settings.safety_checker == DEFAULT_SAFETY_CHECKER
    assert settings.offline is False


def test_no_bounds_of_its_own() -> None:
    """What a job may ask for is engine.protocol.BOUNDS; the bot's LIMITS_* narrow it."""
    names = set(EngineSettings.model_fields)
    assert not names & {"max_steps", "min_guidance", "max_guidance", "max_prompt_chars"}
    assert not names & {"max_images_per_job", "min_size", "max_width", "max_height"}


def test_environment_and_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(
        "ENGINE_PREVIEW_MAX_SIDE=96\nENGINE_OFFLINE=true\nDISCORD_TOKEN=not-ours\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("ENGINE_SAFETY_ENABLED", "false")
    monkeypatch.setenv("ENGINE_MEMORY_BUDGET_GB", "12.5")
    settings = EngineSettings()
    assert settings.preview_max_side == 96
    assert settings.offline is True
    assert settings.safety_enabled is False
    assert settings.memory_budget_bytes() == int(12.5 * 1024**3)
    # The bot's lines in the shared .env stay in the file: not kept, not put in the environment.
    assert "not-ours" not in repr(settings.model_dump()) and "DISCORD_TOKEN" not in os.environ


def test_cpu_always_runs_in_float32() -> None:
    settings = EngineSettings(_env_file=None, device="cpu", dtype="float16")  # type: ignore[call-arg]
    assert settings.torch_device() == torch.device("cpu")
    assert settings.torch_dtype() is torch.float32
    assert settings.memory_budget_bytes() is None


def test_auto_device_on_a_machine_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert EngineSettings(_env_file=None).torch_device().type == "cpu"  # type: ignore[call-arg]


def test_inconsistent_settings_are_refused() -> None:
    with pytest.raises(ValidationError):
        EngineSettings(_env_file=None, text_mask_threshold=1.5)  # type: ignore[call-arg]


# Everything in diffusers and transformers that reads weights from files.
_LOADERS = {
    "from_pretrained",
    "from_single_file",
    "download",
    "load_lora_weights",
    "load_ip_adapter",
    "load_textual_inversion",
}


def _is_hub_options(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "hub_options"
    )


def _safetensors_only(call: ast.Call, options: set[str]) -> bool:
    """``use_safetensors=True``, ``**SAFETENSORS_ONLY``, ``**settings.hub_options(...)``, or
    ``**name`` where ``name = settings.hub_options(...)``."""
    for keyword in call.keywords:
        value = keyword.value
        if keyword.arg == "use_safetensors":
            return isinstance(value, ast.Constant) and value.value is True
        if keyword.arg is None and (
            _is_hub_options(value)
            or (isinstance(value, ast.Name) and value.id in {"SAFETENSORS_ONLY", *options})
        ):
            return True
    return False


def test_every_loader_in_the_engine_asks_for_safetensors_only() -> None:
    """A new ``from_pretrained`` (or adapter loader) cannot forget ``SAFETENSORS_ONLY``."""
    loaders, unsafe = 0, []
    for path in sorted(ENGINE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        options = {
            target.id
            for node in ast.walk(tree)
            if isinstance(node, ast.Assign) and _is_hub_options(node.value)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in _LOADERS
            ):
                loaders += 1
                if not _safetensors_only(node, options):
                    unsafe.append(f"{path.name}:{node.lineno}")
    assert loaders >= 6 and unsafe == []


def test_hub_options_ask_for_safetensors_only(tmp_path: Path) -> None:
    settings = EngineSettings(_env_file=None, offline=True, cache_dir=str(tmp_path))  # type: ignore[call-arg]
    assert settings.hub_options("abc123") == {
        "revision": "abc123",
        "local_files_only": True,
        "cache_dir": str(tmp_path),
        "use_safetensors": True,
    }
    assert dict(SAFETENSORS_ONLY) == {"use_safetensors": True}

"""The model registry: loading through from_pretrained, kinds, and the memory budget."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from diffusers import StableDiffusionInpaintPipeline, StableDiffusionPipeline

from engine.models.registry import ModelRegistry, ModelUnavailable, WrongModelKind, module_bytes
from engine.protocol import JobKind, ModelRef
from tests.engine.helpers import engine_settings
from tests.fixtures.pickled import pickled_copy
from tests.fixtures.tiny_models import TinyModels


def test_text_to_image_checkpoint(tiny_models: TinyModels) -> None:
    registry = ModelRegistry(engine_settings(tiny_models))
    ref = ModelRef(name="tiny", source=str(tiny_models.text_to_image))
    entry = registry.get(ref)
    assert entry.kind is JobKind.TEXT_TO_IMAGE
    assert isinstance(entry.base, StableDiffusionPipeline)
    assert entry.base.safety_checker is None  # the engine's own gate checks images
    inpainting = entry.pipeline_for(JobKind.INPAINT)
    assert isinstance(inpainting, StableDiffusionInpaintPipeline)
    # Built from the same components: no second copy of the weights.
    assert inpainting.unet is entry.base.unet and inpainting.vae is entry.base.vae
    assert entry.bytes == module_bytes(entry.base) > 0
    assert registry.get(ref) is entry


def test_pickled_weights_are_refused(tiny_models: TinyModels, tmp_path: Path) -> None:
    """Unpickling runs code: a model with only .bin weights does not load, and says why."""
    pickled = pickled_copy(tiny_models.text_to_image, tmp_path / "pickled-sd")
    registry = ModelRegistry(engine_settings(tiny_models))
    with pytest.raises(ModelUnavailable) as refused:
        registry.get(ModelRef(name="old", source=str(pickled)))
    assert str(refused.value).startswith("could not load the model old: its `")
    assert "has only pickled weights" in str(refused.value)
    assert registry.loaded() == ()
    # The same model in safetensors loads.
    registry.get(ModelRef(name="new", source=str(tiny_models.text_to_image)))


def test_dedicated_inpainting_checkpoint(tiny_models: TinyModels) -> None:
    registry = ModelRegistry(engine_settings(tiny_models))
    entry = registry.get(ModelRef(name="inp", source=str(tiny_models.inpainting)))
    assert entry.kind is JobKind.INPAINT
    assert entry.base.unet.config.in_channels == 9
    assert isinstance(entry.pipeline_for(JobKind.INPAINT), StableDiffusionInpaintPipeline)
    with pytest.raises(WrongModelKind, match="inp is an inpainting model"):
        entry.pipeline_for(JobKind.TEXT_TO_IMAGE)


def test_least_recently_used_is_unloaded_first(tiny_models: TinyModels) -> None:
    source = str(tiny_models.text_to_image)
    size = module_bytes(StableDiffusionPipeline.from_pretrained(source))
    budget_gb = 2.5 * size / 1024**3  # room for two
    registry = ModelRegistry(engine_settings(tiny_models, memory_budget_gb=budget_gb))
    a, b, c = (ModelRef(name=n, source=source) for n in "abc")
    registry.get(a)
    registry.get(b)
    registry.get(a)  # a is now more recent than b
    registry.get(c)
    assert [m.model.name for m in registry.loaded()] == ["a", "c"]


def test_a_model_over_the_budget_is_refused(tiny_models: TinyModels) -> None:
    registry = ModelRegistry(engine_settings(tiny_models, memory_budget_gb=1e-6))
    with pytest.raises(ModelUnavailable, match="more than the engine's memory budget"):
        registry.get(ModelRef(name="big", source=str(tiny_models.text_to_image)))
    assert registry.loaded() == ()


def test_offline_hub_id_that_is_not_cached(tiny_models: TinyModels) -> None:
    registry = ModelRegistry(engine_settings(tiny_models))
    with pytest.raises(ModelUnavailable, match="could not load the model ghost"):
        registry.get(ModelRef(name="ghost", source="someone/not-in-the-cache"))


def test_unload_by_reference_or_name(tiny_models: TinyModels) -> None:
    registry = ModelRegistry(engine_settings(tiny_models))
    ref = ModelRef(name="tiny", source=str(tiny_models.text_to_image))
    registry.get(ref)
    assert registry.unload(ModelRef(name="other", source="")) == []
    assert registry.unload(ModelRef(name="tiny", source="")) == [ref]
    assert registry.loaded() == ()


def test_hub_id_from_the_cache_reports_the_commit(tiny_models: TinyModels, tmp_path: Path) -> None:
    """A Hub id loads from the Hugging Face cache layout; the snapshot's commit is reported."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--course--tiny-sd"
    shutil.copytree(tiny_models.text_to_image, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit, encoding="utf-8")
    registry = ModelRegistry(engine_settings(tiny_models, cache_dir=str(tmp_path)))
    entry = registry.get(ModelRef(name="tiny", source="course/tiny-sd"))
    assert entry.revision == commit
    assert registry.loaded()[0].revision == commit


def test_a_reroll_pinned_to_the_loaded_commit_reuses_the_loaded_model(
    tiny_models: TinyModels, tmp_path: Path
) -> None:
    """Rerolls pin the commit their parent ran; that must not load the weights a second time."""
    commit = "89abcdef0123456789abcdef0123456789abcdef"
    repo = tmp_path / "models--course--tiny-sd"
    shutil.copytree(tiny_models.text_to_image, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit, encoding="utf-8")
    registry = ModelRegistry(engine_settings(tiny_models, cache_dir=str(tmp_path)))
    latest = registry.get(ModelRef(name="tiny", source="course/tiny-sd"))
    pinned = registry.get(ModelRef(name="tiny", source="course/tiny-sd", revision=commit))
    assert pinned is latest and len(registry.loaded()) == 1
    # Another revision is other weights.
    with pytest.raises(ModelUnavailable):
        registry.get(ModelRef(name="tiny", source="course/tiny-sd", revision="f" * 40))

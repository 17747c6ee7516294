"""What a model's files must be before anything is loaded (engine.load_rules, the registry)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from engine.load_rules import LoadRefused, check_files, check_folder
from engine.models.registry import ModelRegistry, ModelUnavailable
from engine.protocol import Family, ModelRef
from tests.engine.helpers import engine_settings
from tests.fixtures.pickled import pickled_copy
from tests.fixtures.tiny_families import TinyFamilies
from tests.fixtures.tiny_models import TinyModels

_SD_INDEX = {
    "_class_name": "StableDiffusionPipeline",
    "unet": ["diffusers", "UNet2DConditionModel"],
    "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
}
_GB = 1024**3


def _with_index(folder: Path, into: Path, **changes: object) -> Path:
    shutil.copytree(folder, into)
    index = json.loads((into / "model_index.json").read_text())
    (into / "model_index.json").write_text(json.dumps({**index, **changes}))
    return into


def test_each_family_is_detected_from_model_index(
    tiny_models: TinyModels, tiny_families: TinyFamilies
) -> None:
    assert check_folder(tiny_models.text_to_image, None).family is Family.SD
    assert check_folder(tiny_models.inpainting, None).inpainting
    assert check_folder(tiny_families.sdxl, None).family is Family.SDXL
    assert check_folder(tiny_families.flux, None).family is Family.FLUX


def test_a_pickle_only_model_is_refused_before_loading(
    tiny_models: TinyModels, tmp_path: Path
) -> None:
    pickled = pickled_copy(tiny_models.text_to_image, tmp_path / "pickled-sd")
    registry = ModelRegistry(engine_settings(tiny_models))
    with pytest.raises(ModelUnavailable, match=r"only pickled weights \(`\w+/\w+\.bin`\)"):
        registry.get(ModelRef(name="old", source=str(pickled)))
    assert registry.loaded() == ()


def test_custom_pipeline_code_is_refused(tiny_models: TinyModels, tmp_path: Path) -> None:
    """A class diffusers does not ship, a component from the repository's own module, or a
    Python file beside the weights: each is custom code, and each refusal says so."""
    registry = ModelRegistry(engine_settings(tiny_models))
    custom_class = _with_index(tiny_models.text_to_image, tmp_path / "a", _class_name="MyPipe")
    with pytest.raises(ModelUnavailable, match=r"names the pipeline `MyPipe`.*custom pipeline"):
        registry.get(ModelRef(name="a", source=str(custom_class)))
    own_unet = _with_index(tiny_models.text_to_image, tmp_path / "b", unet=["my_unet", "MyUNet"])
    with pytest.raises(ModelUnavailable, match="`unet` comes from `my_unet`"):
        registry.get(ModelRef(name="b", source=str(own_unet)))
    with_code = _with_index(tiny_models.text_to_image, tmp_path / "c")
    (with_code / "pipeline.py").write_text("import os\n")
    with pytest.raises(ModelUnavailable, match=r"ships Python files \(`pipeline.py`\)"):
        registry.get(ModelRef(name="c", source=str(with_code)))
    assert registry.loaded() == ()


def test_the_size_cap_counts_the_loaded_variant_and_skips_the_safety_checker() -> None:
    files = {
        "unet/diffusion_pytorch_model.safetensors": 4 * _GB,
        "unet/diffusion_pytorch_model.fp16.safetensors": 2 * _GB,
        "safety_checker/model.safetensors": 9 * _GB,
    }
    assert check_files(_SD_INDEX, files, max_gb=4).bytes == 4 * _GB
    assert check_files(_SD_INDEX, files, max_gb=2, variant="fp16").bytes == 2 * _GB
    with pytest.raises(LoadRefused, match=r"its weights are 4\.0 GB, over the size cap of 3 GB"):
        check_files(_SD_INDEX, files, max_gb=3)


def test_a_flux_dev_style_model_is_refused() -> None:
    index = {"_class_name": "FluxPipeline", "transformer": ["diffusers", "X"]}
    files = {"transformer/model.safetensors": 1}
    configs = {"transformer": {"guidance_embeds": True}}
    with pytest.raises(LoadRefused, match=r"FLUX.1 \[dev\]-style"):
        check_files(index, files, None, configs)
    assert check_files(index, files, None, {"transformer": {}}).family is Family.FLUX

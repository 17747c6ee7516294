"""The rules a suggested model meets, judged from its files, model_index.json and card."""

from __future__ import annotations

import pytest

from bot.features.suggest._checks import judge
from bot.ui.errors import UserInputError
from engine.protocol import JobKind

GB = 1024**3
FILES = [("model_index.json", 500), ("unet/diffusion_pytorch_model.safetensors", 3 * GB)]
INDEX = {"_class_name": "StableDiffusionInpaintPipeline"}


def test_a_pipeline_that_passes_carries_its_kind_size_and_licence() -> None:
    card = "---\ntags: [dreambooth]\nlicense: 'creativeml-openrail-m'\n---\nlicense: not this\n"
    checked = judge("ada/fox", FILES, INDEX, card, 10 * GB)
    assert (checked.kind, checked.licence) == (JobKind.INPAINT, "creativeml-openrail-m")
    assert checked.bytes == 3 * GB + 500
    assert (
        judge("ada/fox", FILES, INDEX, "license: mit\n", 10 * GB).licence == ""
    )  # no front matter


@pytest.mark.parametrize(
    ("files", "index", "says"),
    [
        (FILES, {"_class_name": "FluxPipeline"}, "That is a `FluxPipeline` pipeline"),
        (FILES, None, "no readable `model_index.json`"),
        ([*FILES, ("unet/x.safetensors", 8 * GB)], INDEX, "It is 11.0 GB; a suggestion may"),
        ([("model_index.json", 500)], INDEX, "no .safetensors weights"),
    ],
)
def test_refusals_name_the_rule(files, index, says) -> None:
    with pytest.raises(UserInputError, match=says.replace("(", r"\(").replace(".", r"\.")):
        judge("ada/fox", files, index, None, 10 * GB)

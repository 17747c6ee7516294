"""What /models add accepts as a name, a source and a revision (no Discord, no engine)."""

import json

import pytest

from bot.features.admin._sources import (
    check_hub_id,
    check_name,
    check_revision,
    check_source,
    inspect_folder,
    parse_kind,
)
from bot.ui.errors import UserInputError
from engine.protocol import Family, JobKind, is_folder_source


def pipeline_folder(root, *, in_channels=4, unet=True, depth=False, cls="StableDiffusionPipeline"):
    """A folder shaped like a saved diffusers pipeline (configs only, no weights)."""
    root.mkdir(parents=True)
    index = {"_class_name": cls, "vae": ["diffusers", "AutoencoderKL"]}
    if depth:
        index["depth_estimator"] = ["transformers", "DPTForDepthEstimation"]
    if unet:
        index["unet"] = ["diffusers", "UNet2DConditionModel"]
        (root / "unet").mkdir()
        (root / "unet" / "config.json").write_text(json.dumps({"in_channels": in_channels}))
    (root / "model_index.json").write_text(json.dumps(index))
    return root


@pytest.mark.parametrize("name", ["sd15", "SD-1.5_anime", "a" * 50])
def test_good_names_pass(name):
    assert check_name(f" {name} ") == name


@pytest.mark.parametrize("name", ["", "two words", "a/b", "ünïcode", "a" * 51, "x;drop"])
def test_bad_names_are_refused_with_the_rule(name):
    with pytest.raises(UserInputError, match="letters, digits"):
        check_name(name)


def test_kind_from_an_option_value():
    assert parse_kind("inpaint") is JobKind.INPAINT
    assert parse_kind("depth_to_image") is JobKind.DEPTH_TO_IMAGE
    # Image-to-image is a kind of job, never of a model.
    for value in ("video", "image_to_image"):
        kinds = "text-to-image, inpainting, depth-to-image or upscaler"
        with pytest.raises(UserInputError, match=kinds):
            parse_kind(value)


@pytest.mark.parametrize(
    ("source", "folder"),
    [("/models/sd", True), ("~/models/sd", True), ("org/name", False), ("models/sd", False)],
)
def test_full_paths_are_folders_everything_else_an_id(source, folder):
    assert is_folder_source(source) is folder


@pytest.mark.parametrize("source", ["org/name", "stable-diffusion-v1-5/stable-diffusion-v1-5"])
def test_hub_ids_of_the_right_shape_pass(source):
    assert check_hub_id(source) == source


@pytest.mark.parametrize(
    "source", ["name-only", "org/name/extra", "org/../x", "org--x/y", "-org/name", "org/na me"]
)
def test_malformed_hub_ids_are_refused(source):
    with pytest.raises(UserInputError, match="neither a Hugging Face id"):
        check_hub_id(source)


def test_revisions_only_for_hub_ids_and_only_plain_ones():
    assert check_revision("  ", is_folder=False) is None
    assert check_revision("refs/pr/3", is_folder=False) == "refs/pr/3"
    with pytest.raises(UserInputError, match="only applies to a Hugging Face id"):
        check_revision("main", is_folder=True)
    for bad in ["a..b", "main; rm", "x" * 101]:
        with pytest.raises(UserInputError, match="branch, tag or commit"):
            check_revision(bad, is_folder=False)


def test_a_pipeline_folder_is_stored_by_its_resolved_path(tmp_path):
    folder = pipeline_folder(tmp_path / "sd")
    (tmp_path / "link").symlink_to(folder)
    checked = inspect_folder(str(tmp_path / "link"), JobKind.TEXT_TO_IMAGE)
    assert (checked.source, checked.is_folder, checked.note) == (str(folder.resolve()), True, "")


def test_folders_that_are_not_pipelines_are_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "model.safetensors").write_bytes(b"\0")
    pipeline_folder(tmp_path / "flux", unet=False)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model_index.json").write_text("{not json")
    cases = {
        "missing": "There is no folder",
        "empty": "no readable `model_index.json`",
        "broken": "no readable `model_index.json`",
        "model.safetensors": "is a file",
        "flux": "names no `unet`, which a Stable Diffusion 1.x/2.x pipeline needs",
    }
    for name, expected in cases.items():
        with pytest.raises(UserInputError, match=expected):
            inspect_folder(str(tmp_path / name), JobKind.TEXT_TO_IMAGE)


def test_the_unet_decides_whether_the_kind_fits(tmp_path):
    inpainting = str(pipeline_folder(tmp_path / "inpaint", in_channels=9))
    text_to_image = str(pipeline_folder(tmp_path / "t2i", in_channels=4))
    with pytest.raises(UserInputError, match="is an inpainting checkpoint"):
        inspect_folder(inpainting, JobKind.TEXT_TO_IMAGE)
    assert inspect_folder(inpainting, JobKind.INPAINT).note == ""
    # A text-to-image checkpoint can inpaint (the engine reuses its weights), with a word why
    # a dedicated one is better.
    assert "dedicated inpainting checkpoint" in inspect_folder(text_to_image, JobKind.INPAINT).note


def test_a_depth_checkpoint_is_only_a_depth_model(tmp_path):
    depth = str(pipeline_folder(tmp_path / "depth", in_channels=5, depth=True))
    text_to_image = str(pipeline_folder(tmp_path / "t2i", in_channels=4))
    assert inspect_folder(depth, JobKind.DEPTH_TO_IMAGE).note == ""
    with pytest.raises(UserInputError, match="Add it with kind depth-to-image"):
        inspect_folder(depth, JobKind.TEXT_TO_IMAGE)
    with pytest.raises(UserInputError, match="is not a depth-to-image checkpoint"):
        inspect_folder(text_to_image, JobKind.DEPTH_TO_IMAGE)


def test_an_upscaler_is_added_as_an_upscaler_and_nothing_else_is(tmp_path):
    upscaler = str(
        pipeline_folder(tmp_path / "x4", in_channels=7, cls="StableDiffusionUpscalePipeline")
    )
    assert inspect_folder(upscaler, JobKind.UPSCALE).is_folder
    with pytest.raises(UserInputError, match=r"is an x4 upscaler.*Add it with kind upscaler"):
        inspect_folder(upscaler, JobKind.TEXT_TO_IMAGE)
    text_to_image = str(pipeline_folder(tmp_path / "sd"))
    with pytest.raises(UserInputError, match=r"is not an x4 upscaler.*kind text-to-image"):
        inspect_folder(text_to_image, JobKind.UPSCALE)


async def test_check_source_reads_folders_and_passes_hub_ids(tmp_path):
    folder = pipeline_folder(tmp_path / "sd")
    checked = await check_source(f"  {folder}  ", JobKind.TEXT_TO_IMAGE)
    assert checked.is_folder and checked.source == str(folder.resolve())
    checked = await check_source("org/name", JobKind.INPAINT)
    assert (checked.source, checked.is_folder) == ("org/name", False)


def test_the_family_is_detected_and_what_may_not_load_is_refused(tmp_path, tiny_families):
    """model_index.json names the family; custom code and pickled weights are refused with
    the rule that failed, before anything is stored."""
    assert inspect_folder(str(tiny_families.sdxl), JobKind.TEXT_TO_IMAGE).family is Family.SDXL
    assert inspect_folder(str(tiny_families.flux), JobKind.TEXT_TO_IMAGE).family is Family.FLUX
    # FLUX.1 inpaints on its text-to-image weights, as SD does (with the same advice).
    assert inspect_folder(str(tiny_families.flux), JobKind.INPAINT).note
    custom = pipeline_folder(tmp_path / "custom")
    (custom / "model_index.json").write_text(json.dumps({"_class_name": "MyPipeline"}))
    with pytest.raises(UserInputError, match=r"`MyPipeline`.*custom pipeline code is never"):
        inspect_folder(str(custom), JobKind.TEXT_TO_IMAGE)
    pickled = pipeline_folder(tmp_path / "pickled")
    (pickled / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"\0")
    with pytest.raises(UserInputError, match=r"`unet` has only pickled weights"):
        inspect_folder(str(pickled), JobKind.TEXT_TO_IMAGE)

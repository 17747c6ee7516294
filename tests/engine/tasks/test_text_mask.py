"""Masks from words (CLIPSeg), and inpainting jobs that name their area in words.

The tiny CLIPSeg is loaded through ``from_pretrained`` from a folder, as the real one is.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from scipy import ndimage
from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

from engine.images.overlay import outline_mask
from engine.images.safety import obscure
from engine.models.registry import ModelUnavailable
from engine.protocol import ErrorKind, JobKind, ModelRef
from engine.settings import EngineSettings
from engine.tasks.checks import BadInput, check_job
from engine.tasks.text_mask import TextMasker, grow_radius
from engine.worker import Worker
from tests.engine.helpers import Recorder, engine_settings, job, pixels, run
from tests.fixtures.pickled import pickled_copy
from tests.fixtures.tiny_models import TinyModels


def picture(size: tuple[int, int] = (96, 64)) -> Image.Image:
    image = Image.new("RGB", size, (70, 130, 200))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, size[1] * 2 // 3, size[0], size[1]), fill=(60, 150, 60))
    draw.ellipse((10, 8, 40, 36), fill=(250, 210, 60))
    return image


@pytest.fixture
def mask_settings(tiny_models: TinyModels, tiny_clipseg: Path) -> EngineSettings:
    return engine_settings(tiny_models, text_mask_model=str(tiny_clipseg))


@pytest.fixture
def masker(mask_settings: EngineSettings) -> TextMasker:
    return TextMasker(mask_settings)


def reference_probabilities(folder: Path, image: Image.Image, words: str) -> np.ndarray:
    """What a CLIPSeg user writes, scaled back to the picture's size."""
    processor = CLIPSegProcessor.from_pretrained(folder)
    model = CLIPSegForImageSegmentation.from_pretrained(folder).eval()
    inputs = processor(text=[words], images=[image], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits
    small = torch.sigmoid(logits).reshape(1, 1, *logits.shape[-2:])
    width, height = image.size
    return F.interpolate(small, size=(height, width), mode="bilinear")[0, 0].numpy()


def test_probabilities_are_clipsegs_own(masker: TextMasker, tiny_clipseg: Path) -> None:
    image = picture()
    ours = masker.probabilities(image, "the sky").numpy()
    assert ours.shape == (64, 96)
    np.testing.assert_allclose(ours, reference_probabilities(tiny_clipseg, image, "the sky"))
    # The words reach the model.
    assert not np.allclose(ours, masker.probabilities(image, "a yellow ball").numpy())


def test_the_mask_is_the_thresholded_area_grown_by_a_few_pixels(
    masker: TextMasker, mask_settings: EngineSettings
) -> None:
    image = picture((192, 128))
    probabilities = masker.probabilities(image, "the sky").numpy()
    area = probabilities >= mask_settings.text_mask_threshold
    assert 0 < area.mean() < 0.9  # partly, not wholly, the area: a meaningful test
    radius = grow_radius(image.size)
    assert radius == 3  # 1/64 of 192
    square = np.ones((2 * radius + 1, 2 * radius + 1), dtype=bool)
    expected = ndimage.binary_dilation(area, structure=square)

    mask = masker.mask(image, "the sky")
    assert (mask.mode, mask.size) == ("L", image.size)
    ours = np.asarray(mask)
    assert set(np.unique(ours)) <= {0, 255}
    np.testing.assert_array_equal(ours == 255, expected)
    assert (ours == 255).sum() > area.sum()  # it grew


def test_words_that_match_nothing_are_refused(tiny_models: TinyModels, tiny_clipseg: Path) -> None:
    strict = engine_settings(
        tiny_models, text_mask_model=str(tiny_clipseg), text_mask_threshold=0.999999
    )
    with pytest.raises(BadInput) as refused:
        TextMasker(strict).mask(picture(), "a unicorn")
    assert str(refused.value) == (
        "the mask words “a unicorn” matched nothing in the image; try other words "
        "(“the sky”, “the dog”) or attach a mask"
    )


def test_a_missing_model_is_unavailable_not_a_crash(
    tiny_models: TinyModels, tmp_path: Path
) -> None:
    missing = engine_settings(tiny_models, text_mask_model=str(tmp_path / "nowhere"))
    with pytest.raises(ModelUnavailable, match="could not load the model that makes masks"):
        TextMasker(missing).mask(picture(), "the sky")


def test_a_pickled_model_is_unavailable(
    tiny_models: TinyModels, tiny_clipseg: Path, tmp_path: Path
) -> None:
    pickled = pickled_copy(tiny_clipseg, tmp_path / "pickled-clipseg")
    settings = engine_settings(tiny_models, text_mask_model=str(pickled))
    with pytest.raises(ModelUnavailable, match="could not load the model that makes masks"):
        TextMasker(settings).load()


def test_check_job_wants_exactly_one_mask_source(inpaint_model: ModelRef) -> None:
    settings = EngineSettings(_env_file=None)  # type: ignore[call-arg]
    inpainting = job(inpaint_model, kind=JobKind.INPAINT, image_path="in.png")
    check_job(replace(inpainting, mask_prompt="the sky"), settings)
    check_job(replace(inpainting, mask_path="mask.png"), settings)
    for spec, message in [
        (inpainting, "inpainting needs an image and a mask (a mask file or mask words)"),
        (replace(inpainting, mask_prompt="  "), "inpainting needs an image and a mask"),
        (
            replace(inpainting, mask_path="m.png", mask_prompt="the sky"),
            "give the area to repaint as a mask file or as mask words, not both",
        ),
        (
            replace(inpainting, mask_prompt="x" * 201),
            "the mask words are longer than 200 characters",
        ),
        (job(inpaint_model, mask_prompt="the sky"), "an image or mask is only used for"),
    ]:
        with pytest.raises(BadInput) as refused:
            check_job(spec, settings)
        assert str(refused.value).startswith(message)


def test_an_inpainting_job_with_words_uses_that_mask_and_shows_it(
    tmp_path: Path, mask_settings: EngineSettings, inpaint_model: ModelRef
) -> None:
    recorder = Recorder()
    worker = Worker(mask_settings, recorder)
    image = picture()
    image.save(tmp_path / "in.png")
    words = job(
        inpaint_model,
        1,
        kind=JobKind.INPAINT,
        width=96,
        height=64,
        seeds=(3,),
        image_path=str(tmp_path / "in.png"),
        mask_prompt="the sky",
    )
    run(worker, words)
    result = recorder.result(1)

    # The same job with the mask CLIPSeg made, given as a file, paints the same pixels.
    mask = TextMasker(mask_settings).mask(image, "the sky")
    mask.save(tmp_path / "mask.png")
    run(worker, replace(words, job_id=2, mask_prompt=None, mask_path=str(tmp_path / "mask.png")))
    with_file = recorder.result(2)
    np.testing.assert_array_equal(pixels(result.images[0].png), pixels(with_file.images[0].png))

    # Both show the input with that mask outlined, unflagged.
    assert result.mask_overlay is not None and not result.mask_overlay.nsfw
    np.testing.assert_array_equal(
        pixels(result.mask_overlay.png), np.asarray(outline_mask(image, mask))
    )
    assert with_file.mask_overlay == result.mask_overlay


def test_text_to_image_results_have_no_overlay(worker: Worker, recorder: Recorder, t2i_model):
    run(worker, job(t2i_model))
    assert recorder.result(1).mask_overlay is None


def test_a_flagged_overlay_is_obscured(
    tmp_path: Path, tiny_models: TinyModels, inpaint_model: ModelRef
) -> None:
    recorder = Recorder()
    flagging = engine_settings(tiny_models, safety_checker=str(tiny_models.safety_checker_always))
    image = picture()
    image.save(tmp_path / "in.png")
    Image.new("L", image.size, 255).save(tmp_path / "mask.png")
    spec = job(
        inpaint_model,
        kind=JobKind.INPAINT,
        width=96,
        height=64,
        image_path=str(tmp_path / "in.png"),
        mask_path=str(tmp_path / "mask.png"),
    )
    run(Worker(flagging, recorder), spec)
    overlay = recorder.result(1).mask_overlay
    assert overlay is not None and overlay.nsfw
    outlined = outline_mask(image, Image.new("L", image.size, 255))
    np.testing.assert_array_equal(pixels(overlay.png), np.asarray(obscure(outlined)))


def test_a_missing_text_mask_model_fails_only_that_job(
    tmp_path: Path, tiny_models: TinyModels, inpaint_model: ModelRef
) -> None:
    recorder = Recorder()
    settings = engine_settings(tiny_models, text_mask_model=str(tmp_path / "nowhere"))
    picture().save(tmp_path / "in.png")
    Image.new("L", (96, 64), 255).save(tmp_path / "mask.png")
    common = {"kind": JobKind.INPAINT, "width": 96, "height": 64}
    words = job(inpaint_model, 1, image_path=str(tmp_path / "in.png"), mask_prompt="sky", **common)
    drawn = job(
        inpaint_model,
        2,
        image_path=str(tmp_path / "in.png"),
        mask_path=str(tmp_path / "mask.png"),
        **common,
    )
    run(Worker(settings, recorder), words, drawn)
    error = recorder.error(1)
    assert error.kind is ErrorKind.MODEL_UNAVAILABLE
    assert error.message == "could not load the model that makes masks from words"
    assert recorder.result(2).images

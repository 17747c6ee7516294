"""The outline picture under inpainting results, and how it travels to the bot."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from engine.images.overlay import EDGE, LINE, TINT, line_width, outline_mask
from engine.images.second_opinion import SecondOpinion
from engine.protocol import (
    GeneratedImage,
    JobKind,
    JobSpec,
    MaskOverlay,
    ModelRef,
    Result,
    RunBatch,
    decode,
    encode,
)
from engine.run.pipeline_call import Checked
from engine.run.plain import mask_overlay
from engine.settings import EngineSettings


def test_the_area_is_tinted_outlined_and_the_rest_left_alone() -> None:
    image = Image.new("RGB", (512, 512), (40, 160, 90))
    mask = Image.new("L", (512, 512), 0)
    mask.paste(255, (200, 200, 300, 300))  # x and y from 200 to 299
    out = np.asarray(outline_mask(image, mask)).astype(int)
    width = line_width(image.size)
    assert width == 3

    inside = np.rint(np.array([40, 160, 90]) * (1 - TINT) + LINE * TINT)
    np.testing.assert_array_equal(out[250, 250], inside)
    np.testing.assert_array_equal(out[250, 200], EDGE)  # the rim just inside the edge
    for offset in range(1, width + 1):  # the line just outside the area
        np.testing.assert_array_equal(out[250, 299 + offset], LINE)
        np.testing.assert_array_equal(out[200 - offset, 250], LINE)
    np.testing.assert_array_equal(out[250, 299 + width + 1], EDGE)  # its dark outer rim
    np.testing.assert_array_equal(out[250, 299 + width + 2], [40, 160, 90])
    untouched = np.ones((512, 512), dtype=bool)
    untouched[200 - width - 1 : 300 + width + 1, 200 - width - 1 : 300 + width + 1] = False
    assert (out[untouched] == [40, 160, 90]).all()


def test_the_line_grows_with_the_picture() -> None:
    assert [line_width((s, s)) for s in (64, 512, 1024)] == [2, 3, 6]


def test_sizes_must_match() -> None:
    with pytest.raises(ValueError, match="same size"):
        outline_mask(Image.new("RGB", (64, 64)), Image.new("L", (32, 32)))


def test_the_overlay_and_mask_words_cross_the_wire() -> None:
    result = Result(
        job_id=1,
        images=(GeneratedImage(seed=3, png=b"png", nsfw=False),),
        model_revision=None,
        seconds=1.5,
        mask_overlay=MaskOverlay(png=b"outline", nsfw=True),
    )
    assert decode(encode(result)) == result
    assert decode(encode(replace(result, mask_overlay=None))).mask_overlay is None
    spec = JobSpec(
        job_id=2,
        kind=JobKind.INPAINT,
        model=ModelRef("m", "m"),
        prompt="a kite",
        seeds=(1,),
        image_path="in.png",
        mask_prompt="the sky",
    )
    assert decode(encode(RunBatch(jobs=(spec,)))) == RunBatch(jobs=(spec,))


@pytest.mark.parametrize(
    ("outline_flagged", "images_flagged", "blurred"),
    [(False, False, False), (False, True, True), (True, False, True)],
)
def test_the_outline_is_blurred_with_its_flagged_images_and_keeps_its_original(
    outline_flagged: bool, images_flagged: bool, blurred: bool
) -> None:
    # Outside the mask an inpainting keeps the upload, so a flagged result's outline shows
    # the same pixels even when its own check is clear.
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8))
    first_only = SecondOpinion(EngineSettings(_env_file=None, second_opinion="first"))
    checked = Checked([], [], [], [], [picture], [outline_flagged], first_only)

    overlay = mask_overlay(checked, 0, 1, images_flagged)

    assert overlay.nsfw is blurred
    as_it_was = np.asarray(picture)
    shown = np.asarray(Image.open(io.BytesIO(overlay.png)))
    assert np.array_equal(shown, as_it_was) is not blurred
    if blurred:
        assert overlay.original_png is not None
        np.testing.assert_array_equal(
            np.asarray(Image.open(io.BytesIO(overlay.original_png))), as_it_was
        )
    else:
        assert overlay.original_png is None

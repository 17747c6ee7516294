"""Depth-to-image in the worker: plain diffusers' pixels, the depth map beside them, its own
model kind and checks."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from diffusers import StableDiffusionDepth2ImgPipeline
from PIL import Image

from engine.images.metadata import parse_parameters, read_parameters
from engine.protocol import ErrorKind, JobKind, ModelRef
from engine.tasks.checks import BadInput, check_job
from engine.worker import Worker
from tests.engine.helpers import (
    Recorder,
    engine_settings,
    job,
    pixels,
    plain_strength_pixels,
    run,
    run_batched,
    strength_job,
    write_picture,
)
from tests.fixtures.tiny_models import TinyModels


@pytest.fixture
def depth_model(tiny_depth: Path) -> ModelRef:
    return ModelRef(name="tiny-sd-depth", source=str(tiny_depth))


def test_depth_to_image_equals_plain_diffusers_and_shows_its_depth_map(
    tmp_path: Path,
    tiny_depth: Path,
    worker: Worker,
    recorder: Recorder,
    depth_model: ModelRef,
) -> None:
    picture = write_picture(tmp_path)
    spec = strength_job(depth_model, JobKind.DEPTH_TO_IMAGE, picture)
    run(worker, spec)
    result = recorder.result(1)
    made = result.images[0].png
    engine_pixels = pixels(made)

    plain = StableDiffusionDepth2ImgPipeline.from_pretrained(tiny_depth)
    np.testing.assert_array_equal(engine_pixels, plain_strength_pixels(plain, picture))
    assert parse_parameters(read_parameters(made) or "")["Denoising strength"] == "0.6"

    # The estimated depth beside it: one grey channel at the picture's size, stretched to 0-255.
    assert result.depth_map is not None and not result.depth_map.nsfw
    assert result.mask_overlay is None
    with Image.open(io.BytesIO(result.depth_map.png)) as depth:
        assert depth.mode == "L" and depth.size == (64, 64)
        grey = np.asarray(depth)
    assert grey.min() == 0 and grey.max() == 255 and len(np.unique(grey)) > 50

    # Batched with another job, the same pixels and the same depth map.
    again = run_batched(worker, recorder, spec)
    np.testing.assert_array_equal(pixels(again.images[0].png), engine_pixels)
    assert again.depth_map is not None and again.depth_map.png == result.depth_map.png


def test_depth_models_run_only_depth_jobs(
    tmp_path: Path,
    worker: Worker,
    recorder: Recorder,
    depth_model: ModelRef,
    t2i_model: ModelRef,
) -> None:
    picture = str(write_picture(tmp_path))
    run(
        worker,
        job(t2i_model, 1, kind=JobKind.DEPTH_TO_IMAGE, image_path=picture),
        job(depth_model, 2),
    )
    on_t2i, on_depth = recorder.error(1), recorder.error(2)
    assert on_t2i.kind is ErrorKind.BAD_INPUT
    assert on_t2i.message == "tiny-sd is not a depth-to-image model (it has no depth estimator)"
    assert on_depth.kind is ErrorKind.BAD_INPUT
    assert on_depth.message == "tiny-sd-depth is a depth-to-image model; it only runs /depth"
    assert [m.kind for m in worker.registry.loaded() if m.model == depth_model] == [
        JobKind.DEPTH_TO_IMAGE
    ]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "depth-to-image needs a picture to start from"),
        ({"image_path": "a.png", "mask_prompt": "the dog"}, "a mask is only used for inpainting"),
        ({"image_path": "a.png", "strength": 0.01}, "strength must be from 0.05 to 1"),
    ],
)
def test_depth_to_image_checks(
    tiny_models: TinyModels, depth_model: ModelRef, fields: dict[str, object], message: str
) -> None:
    spec = job(depth_model, kind=JobKind.DEPTH_TO_IMAGE, **fields)
    with pytest.raises(BadInput, match=message):
        check_job(spec, engine_settings(tiny_models))

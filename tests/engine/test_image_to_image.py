"""Image-to-image in the worker: plain diffusers' pixels, shared weights, its own checks."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from diffusers import StableDiffusionImg2ImgPipeline
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


def test_image_to_image_equals_plain_diffusers_and_ignores_batching(
    tmp_path: Path,
    tiny_models: TinyModels,
    worker: Worker,
    recorder: Recorder,
    t2i_model: ModelRef,
) -> None:
    picture = write_picture(tmp_path)
    spec = strength_job(t2i_model, JobKind.IMAGE_TO_IMAGE, picture)
    run(worker, spec)
    made = recorder.result(1).images[0].png
    engine_pixels = pixels(made)

    plain = StableDiffusionImg2ImgPipeline.from_pretrained(
        tiny_models.text_to_image, safety_checker=None, requires_safety_checker=False
    )
    np.testing.assert_array_equal(engine_pixels, plain_strength_pixels(plain, picture))
    # The AUTOMATIC1111 key for how far from the picture it went.
    assert parse_parameters(read_parameters(made) or "")["Denoising strength"] == "0.6"

    again = run_batched(worker, recorder, spec)
    np.testing.assert_array_equal(pixels(again.images[0].png), engine_pixels)


def test_the_picture_and_strength_decide_the_pixels(
    tmp_path: Path, worker: Worker, recorder: Recorder, t2i_model: ModelRef
) -> None:
    picture = write_picture(tmp_path)
    grey = tmp_path / "grey.png"
    Image.new("RGB", (64, 64), (128, 128, 128)).save(grey)
    base = job(t2i_model, 1, kind=JobKind.IMAGE_TO_IMAGE, steps=5, image_path=str(picture))
    run(
        worker,
        base,
        replace(base, job_id=2, image_path=str(grey)),
        replace(base, job_id=3, strength=0.9),
    )
    first, other_picture, stronger = (pixels(recorder.result(i).images[0].png) for i in (1, 2, 3))
    assert not np.array_equal(first, other_picture)
    assert not np.array_equal(first, stronger)


def test_image_to_image_shares_the_text_to_image_weights(
    tmp_path: Path, worker: Worker, recorder: Recorder, t2i_model: ModelRef
) -> None:
    picture = write_picture(tmp_path)
    run(worker, job(t2i_model, kind=JobKind.IMAGE_TO_IMAGE, image_path=str(picture)))
    assert recorder.result(1).images[0].png
    entry = worker.registry.get(t2i_model)
    pipeline = entry.pipeline_for(JobKind.IMAGE_TO_IMAGE)
    assert type(pipeline).__name__ == "StableDiffusionImg2ImgPipeline"
    assert pipeline.unet is entry.base.unet and pipeline.vae is entry.base.vae
    assert entry.pipeline_for(JobKind.IMAGE_TO_IMAGE) is pipeline  # made once, then kept


def test_an_inpainting_checkpoint_cannot_start_from_a_whole_picture(
    tmp_path: Path, worker: Worker, recorder: Recorder, inpaint_model: ModelRef
) -> None:
    picture = write_picture(tmp_path)
    run(worker, job(inpaint_model, kind=JobKind.IMAGE_TO_IMAGE, image_path=str(picture)))
    error = recorder.error(1)
    assert error.kind is ErrorKind.BAD_INPUT
    assert "inpainting model" in error.message


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "image-to-image needs a picture to start from"),
        ({"image_path": "a.png", "mask_path": "m.png"}, "a mask is only used for inpainting"),
        ({"image_path": "a.png", "strength": 0.01}, "strength must be from 0.05 to 1"),
        ({"image_path": "a.png", "strength": 0.1, "steps": 5}, "at least one denoising step"),
    ],
)
def test_image_to_image_checks(
    tiny_models: TinyModels, t2i_model: ModelRef, fields: dict[str, object], message: str
) -> None:
    spec = job(t2i_model, kind=JobKind.IMAGE_TO_IMAGE, **fields)
    with pytest.raises(BadInput, match=message):
        check_job(spec, engine_settings(tiny_models))

"""×4 upscaling in the worker: four times the sides, plain diffusers' pixels, its own checks."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import EulerDiscreteScheduler, StableDiffusionUpscalePipeline
from PIL import Image

from engine.images.metadata import parse_parameters, read_parameters
from engine.protocol import ErrorKind, JobKind, ModelRef
from engine.tasks.checks import BadInput, check_job
from engine.worker import Worker
from tests.engine.helpers import Recorder, engine_settings, job, pixels, run
from tests.engine.test_worker_images import same_cpu_kernels
from tests.fixtures.tiny_models import TinyModels


@pytest.fixture
def upscaler(tiny_upscaler: Path) -> ModelRef:
    return ModelRef(name="tiny-x4-upscaler", source=str(tiny_upscaler))


def _write_picture(folder: Path) -> Path:
    rng = np.random.default_rng(3)
    picture = Image.fromarray(rng.integers(0, 255, (80, 64, 3), dtype=np.uint8))
    picture.save(folder / "small.png")
    return folder / "small.png"


def test_upscale_is_four_times_the_sides_and_equals_plain_diffusers(
    tmp_path: Path, worker: Worker, recorder: Recorder, upscaler: ModelRef
) -> None:
    picture = _write_picture(tmp_path)
    spec = job(
        upscaler,
        kind=JobKind.UPSCALE,
        prompt="a red door",
        seeds=(5,),
        steps=2,
        width=64,
        height=80,
        noise_level=30,
        image_path=str(picture),
    )
    run(worker, spec)
    made = recorder.result(1).images[0].png
    engine_pixels = pixels(made)
    assert engine_pixels.shape == (320, 256, 3)
    # Progress counts every step: an upscale has no strength.
    assert {p.total_steps for p in recorder.progress(1)} == {2}
    parameters = parse_parameters(read_parameters(made) or "")
    assert parameters["Size"] == "256x320"
    assert parameters["Postprocess upscale by"] == "4"
    assert parameters["Noise level"] == "30"
    assert "Denoising strength" not in parameters

    # What a recipe does: the checkpoint as it is, the job's scheduler, VAE tiling.
    plain = StableDiffusionUpscalePipeline.from_pretrained(upscaler.source)
    plain.set_progress_bar_config(disable=True)
    plain.scheduler = EulerDiscreteScheduler.from_config(plain.scheduler.config)
    plain.vae.enable_tiling()
    with same_cpu_kernels():
        expected = plain(
            "a red door",
            image=Image.open(picture),
            num_inference_steps=2,
            guidance_scale=spec.guidance,
            noise_level=30,
            generator=torch.Generator().manual_seed(5),
        ).images[0]
    np.testing.assert_array_equal(engine_pixels, np.asarray(expected))

    # Batched with another picture's upscale, the same pixels.
    recorder.events.clear()
    run(worker, replace(spec, job_id=2, prompt="a cat", seeds=(1,)), replace(spec, job_id=3))
    np.testing.assert_array_equal(pixels(recorder.result(3).images[0].png), engine_pixels)


def test_an_upscaler_only_upscales_and_a_text_model_does_not_upscale(
    tmp_path: Path, worker: Worker, recorder: Recorder, upscaler: ModelRef, t2i_model: ModelRef
) -> None:
    picture = str(_write_picture(tmp_path))
    run(
        worker,
        job(upscaler, 1),
        job(t2i_model, 2, kind=JobKind.UPSCALE, width=64, image_path=picture),
    )
    assert "is an upscaler" in recorder.error(1).message
    assert recorder.error(2).kind is ErrorKind.BAD_INPUT
    assert "is not an upscaler" in recorder.error(2).message


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "upscaling needs a picture to upscale"),
        ({"image_path": "a.png", "mask_path": "m.png"}, "a mask is only used for inpainting"),
        (
            {"image_path": "a.png", "width": 1024, "height": 1024},
            "the picture to upscale is 1024×1024; at most 458,752 pixels",
        ),
        ({"image_path": "a.png", "noise_level": 351}, "noise_level must be from 0 to 350"),
    ],
)
def test_upscale_checks(
    tiny_models: TinyModels, upscaler: ModelRef, fields: dict[str, object], message: str
) -> None:
    spec = job(upscaler, kind=JobKind.UPSCALE, **fields)
    with pytest.raises(BadInput, match=message):
        check_job(spec, engine_settings(tiny_models))


def test_a_call_whose_jobs_are_all_cancelled_stops_after_the_step(
    tmp_path: Path, tiny_models: TinyModels, upscaler: ModelRef
) -> None:
    # The upscale pipeline has no interrupt flag: the step callback's request to stop ends the
    # call at once, with blank pictures the runners drop unseen.
    from engine.models.registry import ModelRegistry
    from engine.tasks import upscaling

    entry = ModelRegistry(engine_settings(tiny_models)).get(upscaler)
    pipeline = entry.pipeline_for(JobKind.UPSCALE)
    spec = job(upscaler, kind=JobKind.UPSCALE, steps=5, height=80, image_path="unused.png")
    steps: list[int] = []

    def stop(stand_in, step_index, timestep, tensors):  # type: ignore[no-untyped-def]
        steps.append(step_index)
        assert stand_in.num_timesteps == 5 and tensors["latents"].shape[-2:] == (80, 64)
        stand_in._interrupt = True
        return {}

    picture = Image.new("RGB", (64, 80))
    with torch.inference_mode():
        images = upscaling.upscale(pipeline, [spec], [(picture, picture)], stop, "pt")
    assert steps == [0]
    assert [tuple(image.shape) for image in images] == [(3, 320, 256)]
    assert not any(image.any() for image in images)

"""The worker's pictures: the same as plain diffusers, and independent of their batch."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionInpaintPipeline,
    StableDiffusionPipeline,
)
from diffusers.schedulers.scheduling_lms_discrete import LMSDiscreteScheduler
from diffusers.utils import is_scipy_available
from PIL import Image, ImageFilter

from engine.protocol import DEFAULT_MASK_BLEND, JobKind, JobSpec, ModelRef
from engine.tasks.inpainting import composite, soft_mask
from engine.worker import Worker
from tests.engine.helpers import Recorder, job, pixels, run, same_cpu_kernels
from tests.fixtures.tiny_models import TinyModels

# What a diffusers user writes for each of the engine's scheduler names.
PLAIN_SCHEDULERS = {
    "euler": (EulerDiscreteScheduler, {}),
    "euler_a": (EulerAncestralDiscreteScheduler, {}),
    "dpmpp_2m_karras": (
        DPMSolverMultistepScheduler,
        {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True},
    ),
    "ddim": (DDIMScheduler, {}),
    "pndm": (PNDMScheduler, {"skip_prk_steps": True}),
    "lms": (LMSDiscreteScheduler, {}),
}


@pytest.fixture(scope="module")
def plain_t2i(tiny_models: TinyModels) -> StableDiffusionPipeline:
    pipe = StableDiffusionPipeline.from_pretrained(
        tiny_models.text_to_image, safety_checker=None, requires_safety_checker=False
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("scheduler", list(PLAIN_SCHEDULERS))
def test_image_equals_plain_diffusers(
    scheduler: str,
    plain_t2i: StableDiffusionPipeline,
    worker: Worker,
    recorder: Recorder,
    t2i_model: ModelRef,
) -> None:
    if scheduler == "lms" and not is_scipy_available():
        pytest.skip("plain diffusers LMS needs SciPy (the engine's LMS does not)")
    spec = job(
        t2i_model,
        prompt="a watercolor of a dog",
        negative_prompt="blurry",
        seeds=(1234,),
        steps=4,
        guidance=6.5,
        scheduler=scheduler,
    )
    run(worker, spec)
    engine_pixels = pixels(recorder.result(1).images[0].png)

    scheduler_class, options = PLAIN_SCHEDULERS[scheduler]
    # From the model's own scheduler config: chaining from_config across cases would carry one
    # scheduler's options (use_karras_sigmas) into the next.
    plain_t2i.scheduler = scheduler_class.from_pretrained(
        t2i_model.source, subfolder="scheduler", **options
    )
    with same_cpu_kernels():
        plain = plain_t2i(
            "a watercolor of a dog",
            negative_prompt="blurry",
            num_inference_steps=4,
            guidance_scale=6.5,
            width=64,
            height=64,
            generator=torch.Generator().manual_seed(1234),
        ).images[0]
    np.testing.assert_array_equal(engine_pixels, np.asarray(plain))


@pytest.mark.parametrize(
    ("scheduler", "guidance"), [("euler_a", 7.5), ("dpmpp_2m_karras", 7.5), ("euler", 1.0)]
)
def test_batching_does_not_change_an_image(
    scheduler: str, guidance: float, worker: Worker, recorder: Recorder, t2i_model: ModelRef
) -> None:
    alone = job(t2i_model, 1, seeds=(7,), scheduler=scheduler, guidance=guidance)
    run(worker, alone)
    expected = pixels(recorder.result(1).images[0].png)
    recorder.events.clear()

    same = {"scheduler": scheduler, "guidance": guidance}
    before = job(
        t2i_model, 2, prompt="the sea at night", seeds=(8, 9), negative_prompt="dark", **same
    )
    after = job(t2i_model, 3, prompt="x", seeds=(2**32 - 1,), **same)
    # Enough images that batch-size thresholds in CPU kernels (NNPACK from 16 rows) are crossed;
    # two jobs, as a job holds at most BOUNDS.count.max (4) images.
    many = job(t2i_model, 5, prompt="a forest", seeds=tuple(range(100, 104)), **same)
    more = job(t2i_model, 6, prompt="a forest", seeds=tuple(range(104, 108)), **same)
    run(worker, before, replace(alone, job_id=4), after, many, more)
    batched = pixels(recorder.result(4).images[0].png)
    np.testing.assert_array_equal(batched, expected)
    assert len(recorder.result(2).images) == 2


def _write_inpaint_inputs(folder: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    picture = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    picture.save(folder / "in.png")
    mask.save(folder / "mask.png")
    return folder / "in.png", folder / "mask.png"


def test_inpainting_equals_plain_diffusers_and_ignores_batching(
    tmp_path: Path,
    tiny_models: TinyModels,
    worker: Worker,
    recorder: Recorder,
    inpaint_model: ModelRef,
) -> None:
    picture, mask = _write_inpaint_inputs(tmp_path)
    spec = job(
        inpaint_model,
        1,
        kind=JobKind.INPAINT,
        prompt="a red door",
        seeds=(5,),
        strength=0.8,
        steps=4,
        image_path=str(picture),
        mask_path=str(mask),
    )
    run(worker, spec)
    engine_pixels = pixels(recorder.result(1).images[0].png)

    plain = StableDiffusionInpaintPipeline.from_pretrained(
        tiny_models.inpainting, safety_checker=None, requires_safety_checker=False
    )
    plain.set_progress_bar_config(disable=True)
    plain.scheduler = EulerDiscreteScheduler.from_config(plain.scheduler.config)
    with same_cpu_kernels():
        expected = plain(
            "a red door",
            image=Image.open(picture),
            mask_image=Image.open(mask),
            strength=0.8,
            num_inference_steps=4,
            width=64,
            height=64,
            generator=torch.Generator().manual_seed(5),
        ).images[0]
    # The engine then puts the picture back outside the softened mask, as Pillow composites.
    kept = Image.open(picture).convert("RGB")
    expected = Image.composite(expected, kept, soft_mask(Image.open(mask), DEFAULT_MASK_BLEND))
    np.testing.assert_array_equal(engine_pixels, np.asarray(expected))

    recorder.events.clear()
    run(worker, replace(spec, job_id=2, prompt="a cat", seeds=(1, 2)), replace(spec, job_id=3))
    np.testing.assert_array_equal(pixels(recorder.result(3).images[0].png), engine_pixels)


def test_text_to_image_model_also_inpaints_with_shared_weights(
    tmp_path: Path, worker: Worker, recorder: Recorder, t2i_model: ModelRef
) -> None:
    picture, mask = _write_inpaint_inputs(tmp_path)
    spec = job(t2i_model, kind=JobKind.INPAINT, image_path=str(picture), mask_path=str(mask))
    run(worker, spec)
    assert recorder.result(1).images[0].png
    entry = worker.registry.get(t2i_model)
    assert entry.pipeline_for(JobKind.INPAINT).unet is entry.base.unet


def _dilated(mask: Image.Image, by: int) -> np.ndarray:
    """Where the mask reaches once grown by ``by`` pixels each way (Chebyshev)."""
    return np.asarray(mask.filter(ImageFilter.MaxFilter(2 * by + 1))) > 0


@pytest.mark.parametrize("blend", [0, 3, DEFAULT_MASK_BLEND])
def test_inpainting_keeps_every_pixel_outside_the_softened_mask(
    tmp_path: Path, worker: Worker, recorder: Recorder, inpaint_model: ModelRef, blend: int
) -> None:
    picture, mask = _write_inpaint_inputs(tmp_path)
    spec = job(
        inpaint_model,
        kind=JobKind.INPAINT,
        seeds=(5, 6),
        image_path=str(picture),
        mask_path=str(mask),
        mask_blend=blend,
    )
    run(worker, spec)
    outside = ~_dilated(Image.open(mask), blend)
    kept = np.asarray(Image.open(picture).convert("RGB"))
    for image in recorder.result(1).images:
        made = pixels(image.png)
        np.testing.assert_array_equal(made[outside], kept[outside])
        assert not np.array_equal(made, kept)  # the masked area was repainted


def test_inpainting_jobs_from_before_compositing_keep_their_pixels(
    tmp_path: Path, worker: Worker, recorder: Recorder, inpaint_model: ModelRef
) -> None:
    """A reroll of a job made before compositing (mask_blend None) makes its old pixels: the
    pipeline's own, changed everywhere by the VAE."""
    picture, mask = _write_inpaint_inputs(tmp_path)
    old = job(
        inpaint_model,
        kind=JobKind.INPAINT,
        image_path=str(picture),
        mask_path=str(mask),
        mask_blend=None,
    )
    run(worker, old, replace(old, job_id=2, mask_blend=0))
    raw, composited = (pixels(recorder.result(i).images[0].png) for i in (1, 2))
    outside = ~(np.asarray(Image.open(mask)) > 0)
    assert not np.array_equal(raw[outside], composited[outside])
    np.testing.assert_array_equal(raw[~outside], composited[~outside])


def test_composite_is_pillows_to_the_bit() -> None:
    rng = np.random.default_rng(3)
    made = rng.integers(0, 256, (2, 40, 30, 3), dtype=np.uint8)
    kept = Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8))
    mask = Image.fromarray(rng.integers(0, 256, (40, 30), dtype=np.uint8))
    spec = JobSpec(
        job_id=1,
        kind=JobKind.INPAINT,
        model=ModelRef("m", "m"),
        prompt="p",
        seeds=(1, 2),
        mask_blend=2,
    )
    tensor = torch.from_numpy(made).permute(0, 3, 1, 2).contiguous()
    got = composite(tensor, [spec], [(kept, mask)]).permute(0, 2, 3, 1).numpy()
    soft = soft_mask(mask, 2)
    for index in range(2):
        expected = Image.composite(Image.fromarray(made[index]), kept, soft)
        np.testing.assert_array_equal(got[index], np.asarray(expected))

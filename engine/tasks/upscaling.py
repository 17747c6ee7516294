"""×4 upscaling: each job's picture redrawn at four times its sides, guided by its prompt.

Runs ``StableDiffusionUpscalePipeline`` (an upscaler checkpoint, ``JobKind.UPSCALE``; loaded by
``engine.models.registry`` with VAE tiling, so a 512² picture decodes to 2048² in tiles). The
UNet denoises latents the size of the picture itself, with the picture, noised to
``noise_level`` by the checkpoint's low-resolution scheduler, beside them; the VAE then decodes
them four times larger. Both noises come from each image's own generator, seeded with its own
seed: the same picture, prompt and settings give the same pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

from engine.protocol import JobSpec
from engine.settings import EngineSettings
from engine.tasks.checks import check_job, load_picture
from engine.tasks.inpainting import Pictures
from engine.tasks.text_to_image import StepCallback, call_arguments, per_image


class _Interrupted(Exception):
    """Every job of the call was cancelled; this pipeline has no interrupt flag to set."""


def check_inputs(spec: JobSpec, settings: EngineSettings) -> None:
    """Raise ``BadInput`` with a user-safe reason when ``spec`` cannot run here.

    Besides every job's bounds: a picture, no mask, at most ``BOUNDS.upscale_pixels`` pixels,
    and a noise level within ``BOUNDS.noise_level`` (``engine.tasks.checks``).
    """
    check_job(spec, settings)


def load_inputs(spec: JobSpec, settings: EngineSettings) -> Pictures:
    """The job's picture at its size, with a mask that covers all of it (the runners hold
    every picture-taking job's inputs as a pair); ``BadInput`` for an unreadable file."""
    picture = load_picture(spec, settings)
    return picture, Image.new("L", picture.size, 255)


class _LegacyStep:
    """The upscale pipeline's old-style ``callback(step, timestep, latents)``, turned into the
    runners' ``callback_on_step_end`` shape.

    The runners read ``pipeline.num_timesteps`` and set ``pipeline._interrupt`` to stop early;
    this pipeline has neither, so this object stands in for it: it counts the scheduler's
    timesteps, and a set interrupt ends the call by an exception ``upscale`` catches.
    """

    def __init__(self, pipeline: Any, on_step: StepCallback) -> None:
        self._pipeline = pipeline
        self._on_step = on_step
        self._interrupt = False

    @property
    def num_timesteps(self) -> int:
        return len(self._pipeline.scheduler.timesteps)

    def __call__(self, step_index: int, timestep: Any, latents: torch.Tensor) -> None:
        self._on_step(self, step_index, timestep, {"latents": latents})
        if self._interrupt:
            raise _Interrupted


def upscale(
    pipeline: Any,
    jobs: Sequence[JobSpec],
    pictures: Sequence[Pictures],
    on_step: StepCallback,
    output_type: str = "pil",
) -> list[Any]:
    """Images four times the size of ``jobs``' pictures (job by job, seed by seed) from one call
    of ``pipeline``, as ``engine.tasks.text_to_image.text_to_image`` returns them.

    When every job is cancelled mid-call the pictures are black: the runners drop a cancelled
    job's pictures unseen.
    """
    arguments = call_arguments(pipeline, jobs, on_step, output_type)
    del arguments["width"], arguments["height"], arguments["callback_on_step_end"]
    images = per_image(jobs, [picture for picture, _ in pictures])
    step = _LegacyStep(pipeline, on_step)
    try:
        output = pipeline(
            **arguments,
            image=images,
            noise_level=jobs[0].noise_level,
            callback=step,
            callback_steps=1,
        )
    except _Interrupted:
        first = jobs[0]
        scale = first.kind.scale
        blank = torch.zeros(3, first.height * scale, first.width * scale)
        return [blank for _ in images]
    return list(output.images)

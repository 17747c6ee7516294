"""Inpainting: repaint the white part of each job's mask, one pipeline call per group.

Works with a dedicated inpainting checkpoint (9-channel UNet, which sees the mask) and with the
inpainting pipeline built from a text-to-image model's components (which blends latents).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PIL import Image

from engine.protocol import JobSpec
from engine.settings import EngineSettings
from engine.tasks.checks import check_job, load_inpaint_inputs
from engine.tasks.text_mask import TextMasker
from engine.tasks.text_to_image import StepCallback, call_arguments, per_image

Pictures = tuple[Image.Image, Image.Image]  # a job's picture (RGB) and mask (L, white = repaint)


def check_inputs(spec: JobSpec, settings: EngineSettings) -> None:
    """Raise ``BadInput`` with a user-safe reason when ``spec`` cannot run here.

    Besides every job's bounds: an image, and a mask given as a file or as words (not both),
    and a strength that leaves at least one denoising step (``engine.tasks.checks``).
    """
    check_job(spec, settings)


def load_inputs(spec: JobSpec, settings: EngineSettings, text_masks: TextMasker) -> Pictures:
    """The job's picture and mask at its size; the mask made from words when it has none.

    Raises ``BadInput`` for an unreadable or oversized file or words that match nothing, and
    ``ModelUnavailable`` when the text-mask model cannot be loaded.
    """
    image, mask = load_inpaint_inputs(spec, settings)
    if mask is None:
        assert spec.mask_prompt  # check_inputs ran first
        mask = text_masks.mask(image, spec.mask_prompt.strip())
    return image, mask


def inpaint(
    pipeline: object,
    jobs: Sequence[JobSpec],
    pictures: Sequence[Pictures],
    on_step: StepCallback,
    output_type: str = "pil",
) -> list[Any]:
    """Images for ``jobs`` (job by job, seed by seed) from one call of ``pipeline``, as
    ``engine.tasks.text_to_image.text_to_image`` returns them.

    ``pictures`` holds each job's (image, mask), already at the job's size.
    """
    output = pipeline(  # type: ignore[operator]  # diffusers' pipelines are untyped
        **call_arguments(jobs, on_step, output_type),
        image=per_image(jobs, [image for image, _ in pictures]),
        mask_image=per_image(jobs, [mask for _, mask in pictures]),
        strength=jobs[0].strength,
    )
    return list(output.images)

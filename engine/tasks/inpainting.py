"""Inpainting: repaint the white part of each job's mask, one pipeline call per group.

Works with a dedicated inpainting checkpoint (9-channel UNet, which sees the mask) and with the
inpainting pipeline built from a text-to-image model's components (which blends latents).
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image

from engine.protocol import JobSpec
from engine.run.batching import StepCallback, per_image, shared_arguments


def inpaint(
    pipeline: object,
    jobs: Sequence[JobSpec],
    pictures: Sequence[tuple[Image.Image, Image.Image]],
    on_step: StepCallback,
) -> list[Image.Image]:
    """Images for ``jobs`` (job by job, seed by seed) from one call of ``pipeline``.

    ``pictures`` holds each job's (image, mask), already at the job's size.
    """
    output = pipeline(  # type: ignore[operator]
        **shared_arguments(jobs, on_step),
        image=per_image(jobs, [image for image, _ in pictures]),
        mask_image=per_image(jobs, [mask for _, mask in pictures]),
        strength=jobs[0].strength,
    )
    return list(output.images)

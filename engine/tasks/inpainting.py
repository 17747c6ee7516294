"""Inpainting: repaint the white part of each job's mask, one pipeline call per group.

Works with a dedicated inpainting checkpoint (9-channel UNet, which sees the mask) and with the
inpainting pipeline built from a text-to-image model's components (which blends latents).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image, ImageFilter

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
        **call_arguments(pipeline, jobs, on_step, output_type),
        image=per_image(jobs, [image for image, _ in pictures]),
        mask_image=per_image(jobs, [mask for _, mask in pictures]),
        strength=jobs[0].strength,
    )
    return list(output.images)


def soft_mask(mask: Image.Image, blend: int) -> Image.Image:
    """The mask with its edge softened over ``blend`` pixels each way (a box blur): exactly 0
    farther than ``blend`` pixels (Chebyshev) from any masked pixel, so the picture there is
    kept to the bit."""
    mask = mask.convert("L")
    return mask.filter(ImageFilter.BoxBlur(blend)) if blend else mask


def composite(
    pixels: torch.Tensor, jobs: Sequence[JobSpec], pictures: Sequence[Pictures]
) -> torch.Tensor:
    """Each made picture with the job's own picture put back outside its (softened) mask.

    ``pixels`` are uint8 ``(images, 3, h, w)``, job by job, seed by seed. The arithmetic is
    Pillow's ``Image.composite`` (``out = (kept * (255 - m) + made * m) / 255``, rounded its
    way), so a ``/recipe`` script that composites with Pillow gets the same bits. Jobs whose
    ``mask_blend`` is None (made before compositing existed) are left as they are.
    """
    out = pixels.clone()
    index = 0
    for job, (picture, mask) in zip(jobs, pictures, strict=True):
        count = len(job.seeds)
        if job.mask_blend is not None:
            kept = _chw(picture.convert("RGB"), pixels.device)
            weight = _chw(soft_mask(mask, job.mask_blend), pixels.device)
            made = pixels[index : index + count].to(torch.int32)
            mixed = kept * (255 - weight) + made * weight + 128  # Pillow's DIV255
            out[index : index + count] = (((mixed >> 8) + mixed) >> 8).to(torch.uint8)
        index += count
    return out


def _chw(picture: Image.Image, device: torch.device) -> torch.Tensor:
    """A picture as int32 ``(1, bands, h, w)``, ready to broadcast over a job's images."""
    array = torch.frombuffer(bytearray(picture.tobytes()), dtype=torch.uint8)
    bands = len(picture.getbands())
    shape = (1, picture.height, picture.width, bands)
    return array.reshape(shape).permute(0, 3, 1, 2).to(device=device, dtype=torch.int32)

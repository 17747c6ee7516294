"""One pipeline call and its finish, shared by every runner; the one place runners meet tasks.

The call: the jobs' scheduler (a fresh one per call), inference mode, and the batch-invariant
kernels around the task's own pipeline call (``engine.tasks``), whose decoded pictures stay on
the device as 8-bit pixels. The finish, in two halves: ``check`` (on the GPU's thread) runs the
safety gate over every picture at once where the pixels are and copies them to host memory in
one transfer; ``Checked.encode`` (in a finishing thread, ``engine.run.finishing``) obscures the
flagged pictures and writes each picture's parameters into its PNG, so nothing the checker
flags leaves the engine unobscured.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from engine.images.metadata import parameters_text, png_with_parameters
from engine.images.pixels import Picture, to_pixels
from engine.images.preview import png_bytes
from engine.images.safety import SafetyChecker, obscure
from engine.models.invariance import batch_invariant_kernels
from engine.models.registry import LoadedPipelines
from engine.models.schedulers import make_scheduler
from engine.protocol import Family, GeneratedImage, JobKind, JobSpec
from engine.settings import EngineSettings
from engine.tasks import image_to_image, inpainting, text_to_image
from engine.tasks.inpainting import Pictures
from engine.tasks.text_mask import TextMasker
from engine.tasks.text_to_image import StepCallback

# A picture to deliver: the job its metadata describes, its seed, and its pixels (uint8,
# (3, height, width), on the device that made them).
Made = tuple[JobSpec, int, torch.Tensor]


def check_inputs(spec: JobSpec, settings: EngineSettings) -> None:
    """The checks of the task that runs ``spec``; ``BadInput`` with a user-safe reason."""
    if spec.kind is JobKind.INPAINT:
        inpainting.check_inputs(spec, settings)
    elif spec.kind is JobKind.IMAGE_TO_IMAGE:
        image_to_image.check_inputs(spec, settings)
    else:
        text_to_image.check_inputs(spec, settings)


def load_inputs(spec: JobSpec, settings: EngineSettings, text_masks: TextMasker) -> Pictures:
    """The (picture, mask) a job that takes a picture runs on, at its size (``BadInput``, or
    ``ModelUnavailable`` when the text-mask model is needed and cannot be loaded)."""
    if spec.kind is JobKind.IMAGE_TO_IMAGE:
        return image_to_image.load_inputs(spec, settings)
    return inpainting.load_inputs(spec, settings, text_masks)


def uses_guidance(pipeline: Any, guidance: float) -> bool:
    """Whether the call runs classifier-free guidance (two UNet rows per image)."""
    unet = getattr(pipeline, "unet", None)
    if unet is None:
        return False  # FLUX.1 schnell: guidance-distilled, one transformer pass per step
    # diffusers' own rule for Stable Diffusion pipelines.
    return guidance > 1 and unet.config.time_cond_proj_dim is None


@contextmanager
def one_call(
    device: torch.device, entry: LoadedPipelines, pipeline: Any, first: JobSpec
) -> Iterator[None]:
    """Around one pipeline call for jobs like ``first``: their scheduler, made fresh (a
    scheduler keeps state between steps), inference mode and the batch-invariant kernels."""
    if entry.family is Family.FLUX:
        # Its own flow-matching Euler scheduler, the only one it runs (``FAMILIES``).
        pipeline.scheduler = type(entry.base.scheduler).from_config(entry.scheduler_config)
    else:
        pipeline.scheduler = make_scheduler(first.scheduler, entry.scheduler_config)
    rows = 2 if uses_guidance(pipeline, first.guidance) else 1
    with torch.inference_mode(), batch_invariant_kernels(device, entry.invariance, rows):
        yield


def task_images(
    pipeline: Any,
    jobs: Sequence[JobSpec],
    pictures: Sequence[Pictures],
    on_step: StepCallback,
) -> torch.Tensor:
    """Pixels for ``jobs`` (job by job, seed by seed) from the task's one pipeline call: uint8
    ``(images, 3, height, width)`` on the pipeline's device.

    ``pictures`` holds each inpainting or image-to-image job's (image, mask), in the order of
    ``jobs``; it is empty for text-to-image. Call it inside ``one_call``.
    """
    if jobs[0].kind is JobKind.IMAGE_TO_IMAGE:
        decoded = image_to_image.image_to_image(pipeline, jobs, pictures, on_step, "pt")
        return to_pixels(torch.stack(list(decoded)))
    if jobs[0].kind is JobKind.INPAINT:
        decoded = inpainting.inpaint(pipeline, jobs, pictures, on_step, output_type="pt")
        # Outside the mask: the user's own pixels, not a VAE round trip of them.
        return inpainting.composite(to_pixels(torch.stack(list(decoded))), jobs, pictures)
    decoded = text_to_image.text_to_image(pipeline, jobs, on_step, output_type="pt")
    return to_pixels(torch.stack(list(decoded)))


@dataclass(frozen=True)
class Checked:
    """Pictures the safety checker has judged, in host memory: all that encoding needs.

    ``pixels`` are ``(height, width, 3)`` uint8 arrays, one per made picture; ``also`` are the
    other pictures checked beside them, with ``also_flags``.
    """

    made: list[tuple[JobSpec, int]]
    pixels: list[torch.Tensor]
    flags: list[bool]
    also: list[Image.Image]
    also_flags: list[bool]

    def encode(self, revision: str | None, level: int) -> list[GeneratedImage]:
        """The made pictures as PNGs at zlib ``level``, carrying their parameters, each obscured
        when the checker flagged it."""
        generated = []
        for (spec, seed), pixels, flagged in zip(self.made, self.pixels, self.flags, strict=True):
            image = Image.fromarray(pixels.numpy())
            generated.append(
                GeneratedImage(
                    seed=seed,
                    png=png_with_parameters(
                        obscure(image) if flagged else image,
                        parameters_text(spec, seed, revision),
                        level,
                    ),
                    nsfw=flagged,
                )
            )
        return generated

    def encode_also(self, index: int, level: int) -> bytes:
        """Picture ``index`` of ``also`` as PNG bytes, obscured when the checker flagged it."""
        image = self.also[index]
        return png_bytes(obscure(image) if self.also_flags[index] else image, level)


def check(
    safety: SafetyChecker, made: Sequence[Made], also_checked: Sequence[Image.Image] = ()
) -> Checked:
    """Judge ``made`` with the safety checker and copy their pixels to host memory.

    ``also_checked`` are other pictures the bot will post beside them (an inpainting job's
    outlined input); they go through the same checker call.
    """
    pictures: list[Picture] = [pixels for _, _, pixels in made]
    flags = list(safety.flags([*pictures, *also_checked]))
    if len(flags) != len(made) + len(also_checked):
        raise RuntimeError("the safety checker returned the wrong number of flags")
    return Checked(
        made=[(spec, seed) for spec, seed, _ in made],
        pixels=_to_host([pixels for _, _, pixels in made]),
        flags=flags[: len(made)],
        also=list(also_checked),
        also_flags=flags[len(made) :],
    )


def _to_host(pictures: list[torch.Tensor]) -> list[torch.Tensor]:
    """``(3, h, w)`` device pixels as ``(h, w, 3)`` host pixels, in one copy when they are all
    the same size (a batch's always are)."""
    if not pictures:
        return []
    if all(p.shape == pictures[0].shape for p in pictures):
        return list(torch.stack(pictures).permute(0, 2, 3, 1).contiguous().cpu().unbind(0))
    return [p.permute(1, 2, 0).contiguous().cpu() for p in pictures]

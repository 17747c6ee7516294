"""One pipeline call and its finish, shared by every runner; the one place runners meet tasks.

The call: the jobs' scheduler (a fresh one per call), inference mode, and the batch-invariant
kernels around the task's own pipeline call (``engine.tasks``). The finish: the safety gate over
every picture at once, each picture's parameters written into its PNG, and flagged pictures
obscured, so nothing the checker flags leaves the engine unobscured.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from PIL import Image

from engine.images.metadata import parameters_text, png_with_parameters
from engine.images.safety import SafetyChecker, obscure
from engine.models.invariance import batch_invariant_kernels
from engine.models.registry import LoadedPipelines
from engine.models.schedulers import make_scheduler
from engine.protocol import GeneratedImage, JobKind, JobSpec
from engine.settings import EngineSettings
from engine.tasks import inpainting, text_to_image
from engine.tasks.inpainting import Pictures
from engine.tasks.text_to_image import StepCallback

# A picture to deliver: the job its metadata describes, its seed, and the picture itself.
Made = tuple[JobSpec, int, Image.Image]


def check_inputs(spec: JobSpec, settings: EngineSettings) -> None:
    """The checks of the task that runs ``spec``; ``BadInput`` with a user-safe reason."""
    if spec.kind is JobKind.INPAINT:
        inpainting.check_inputs(spec, settings)
    else:
        text_to_image.check_inputs(spec, settings)


def uses_guidance(pipeline: Any, guidance: float) -> bool:
    """Whether the call runs classifier-free guidance (two UNet rows per image)."""
    # diffusers' own rule for Stable Diffusion pipelines.
    return guidance > 1 and pipeline.unet.config.time_cond_proj_dim is None


@contextmanager
def one_call(
    device: torch.device, entry: LoadedPipelines, pipeline: Any, first: JobSpec
) -> Iterator[None]:
    """Around one pipeline call for jobs like ``first``: their scheduler, made fresh (a
    scheduler keeps state between steps), inference mode and the batch-invariant kernels."""
    pipeline.scheduler = make_scheduler(first.scheduler, entry.scheduler_config)
    rows = 2 if uses_guidance(pipeline, first.guidance) else 1
    with torch.inference_mode(), batch_invariant_kernels(device, entry.invariance, rows):
        yield


def task_images(
    pipeline: Any,
    jobs: Sequence[JobSpec],
    pictures: Sequence[Pictures],
    on_step: StepCallback,
) -> list[Image.Image]:
    """Images for ``jobs`` (job by job, seed by seed) from the task's one pipeline call.

    ``pictures`` holds each inpainting job's (image, mask), in the order of ``jobs``; it is
    empty for text-to-image. Call it inside ``one_call``.
    """
    if jobs[0].kind is JobKind.INPAINT:
        return inpainting.inpaint(pipeline, jobs, pictures, on_step)
    return text_to_image.text_to_image(pipeline, jobs, on_step)


def finish(
    safety: SafetyChecker,
    revision: str | None,  # None: the model has no revision to name
    made: Sequence[Made],
    also_checked: Sequence[Image.Image] = (),
) -> tuple[list[GeneratedImage], list[bool]]:
    """``made`` as PNGs carrying their parameters, each obscured when the checker flags it.

    ``also_checked`` are other pictures the bot will post beside them (an inpainting job's
    outlined input); they go through the same checker call, and their flags come back second.
    """
    flags = list(safety.flags([*(image for _, _, image in made), *also_checked]))
    if len(flags) != len(made) + len(also_checked):
        raise RuntimeError("the safety checker returned the wrong number of flags")
    generated = [
        GeneratedImage(
            seed=seed,
            png=png_with_parameters(
                obscure(image) if flagged else image, parameters_text(spec, seed, revision)
            ),
            nsfw=flagged,
        )
        for (spec, seed, image), flagged in zip(made, flags[: len(made)], strict=True)
    ]
    return generated, flags[len(made) :]

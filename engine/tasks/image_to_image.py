"""Image-to-image: each job's picture, noised to ``strength`` and denoised towards its prompt.

Runs on a text-to-image checkpoint through ``AutoPipelineForImage2Image.from_pipe`` (the same
weights, ``engine.models.registry``). The pipeline runs the last ``int(steps × strength)`` of
the scheduler's steps, starting from the picture's latents with that much noise added from
each image's own generator: the same seed, picture and strength give the same pixels.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from PIL import Image

from engine.protocol import JobSpec
from engine.settings import EngineSettings
from engine.tasks.checks import check_job, load_picture
from engine.tasks.inpainting import Pictures
from engine.tasks.text_to_image import StepCallback, call_arguments, per_image


def check_inputs(spec: JobSpec, settings: EngineSettings) -> None:
    """Raise ``BadInput`` with a user-safe reason when ``spec`` cannot run here.

    Besides every job's bounds: a picture, no mask, and a strength within
    ``BOUNDS.image_strength`` that leaves at least one denoising step (``engine.tasks.checks``).
    """
    check_job(spec, settings)


def load_inputs(spec: JobSpec, settings: EngineSettings) -> Pictures:
    """The job's picture at its size, with a mask that covers all of it.

    The whole picture changes, which is what an all-white mask says; the runners then hold an
    image-to-image job's inputs the way they hold an inpainting job's. Raises ``BadInput`` for
    an unreadable or oversized file.
    """
    picture = load_picture(spec, settings)
    return picture, Image.new("L", picture.size, 255)


def image_to_image(
    pipeline: object,
    jobs: Sequence[JobSpec],
    pictures: Sequence[Pictures],
    on_step: StepCallback,
    output_type: str = "pil",
) -> list[Any]:
    """Images for ``jobs`` (job by job, seed by seed) from one call of ``pipeline``, as
    ``engine.tasks.text_to_image.text_to_image`` returns them.

    ``pictures`` holds each job's (picture, mask), already at the job's size; the size comes
    from the pictures. SD's and SDXL's pipelines take no width or height; FLUX.1's does, and
    would make 1024x1024 without them.
    """
    arguments = call_arguments(pipeline, jobs, on_step, output_type)
    call: Any = pipeline  # diffusers' pipelines are untyped
    if "width" not in inspect.signature(call).parameters:
        del arguments["width"], arguments["height"]
    output = pipeline(  # type: ignore[operator]  # diffusers' pipelines are untyped
        **arguments,
        image=per_image(jobs, [picture for picture, _ in pictures]),
        strength=jobs[0].strength,
    )
    return list(output.images)

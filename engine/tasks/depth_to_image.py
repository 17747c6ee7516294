"""Depth-to-image: each job's picture, noised to ``strength`` and denoised towards its prompt,
with the picture's estimated depth as extra conditioning (Stable Diffusion 2 depth).

Runs diffusers' ``StableDiffusionDepth2ImgPipeline``, loaded as its own model (a UNet with a
fifth input channel and a DPT depth estimator, ``engine.models.registry``). The pipeline would
estimate the depth of the whole batch in one estimator call; here each job's depth is
estimated alone, the same way the pipeline does it, and handed to the call. A picture's
depth then never depends on what it was batched with, and the depth map a student sees
(``depth_picture``) is the very estimate that conditioned the images.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

from engine.protocol import JobSpec
from engine.settings import EngineSettings
from engine.tasks import image_to_image
from engine.tasks.checks import check_job
from engine.tasks.inpainting import Pictures
from engine.tasks.text_to_image import StepCallback, call_arguments, per_image


def check_inputs(spec: JobSpec, settings: EngineSettings) -> None:
    """Raise ``BadInput`` with a user-safe reason when ``spec`` cannot run here.

    Besides every job's bounds: a picture, no mask, and a strength within
    ``BOUNDS.image_strength`` that leaves at least one denoising step, as image-to-image.
    """
    check_job(spec, settings)


def load_inputs(spec: JobSpec, settings: EngineSettings) -> Pictures:
    """The job's picture at its size, with a mask that covers all of it (as image-to-image:
    the whole picture is the starting point)."""
    return image_to_image.load_inputs(spec, settings)


def estimate_depth(pipeline: Any, picture: Image.Image) -> torch.Tensor:
    """The depth estimator's raw output for one picture, ``(1, h, w)`` on the pipeline's device:
    larger is nearer. The same steps as the pipeline's own ``prepare_depth_map``."""
    # The dtype the pipeline passes: its prompt embeddings', the text encoder's.
    device, dtype = pipeline.device, pipeline.text_encoder.dtype
    pixels = pipeline.feature_extractor(images=[picture], return_tensors="pt").pixel_values
    pixels = pixels.to(device=device, dtype=dtype)
    # As diffusers does: the estimator's batch norms need autocast in half precision (on a
    # CPU in float32 autocast declines, with a warning, and runs as it is).
    enabled = dtype in (torch.float16, torch.bfloat16)
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=enabled):
        depth: torch.Tensor = pipeline.depth_estimator(pixels).predicted_depth
    return depth


def depth_picture(depth: torch.Tensor, size: tuple[int, int]) -> Image.Image:
    """``estimate_depth``'s output as a grey picture of ``size`` (width, height): stretched to
    0-255 from its own nearest (white) to farthest (black), as the pipeline normalises it."""
    resized = torch.nn.functional.interpolate(
        depth.float().unsqueeze(1), size=(size[1], size[0]), mode="bicubic", align_corners=False
    )[0, 0]
    low, high = resized.min(), resized.max()
    spread = (high - low).clamp(min=torch.finfo(torch.float32).tiny)
    grey = ((resized - low) / spread * 255).round().clamp(0, 255).to(torch.uint8)
    return Image.fromarray(grey.cpu().numpy(), mode="L")


def depth_to_image(
    pipeline: Any,
    jobs: Sequence[JobSpec],
    pictures: Sequence[Pictures],
    on_step: StepCallback,
    output_type: str = "pil",
    depths: Sequence[torch.Tensor] = (),
) -> list[Any]:
    """Images for ``jobs`` (job by job, seed by seed) from one call of ``pipeline``, as
    ``engine.tasks.text_to_image.text_to_image`` returns them.

    ``pictures`` holds each job's (picture, mask), already at the job's size; ``depths`` each
    job's ``estimate_depth`` (estimated here when not given).
    """
    if not depths:
        depths = [estimate_depth(pipeline, picture) for picture, _ in pictures]
    arguments = call_arguments(pipeline, jobs, on_step, output_type)
    del arguments["width"], arguments["height"]  # the pictures' own size
    output = pipeline(
        **arguments,
        image=per_image(jobs, [picture for picture, _ in pictures]),
        depth_map=torch.cat(per_image(jobs, list(depths))),
        strength=jobs[0].strength,
    )
    return list(output.images)

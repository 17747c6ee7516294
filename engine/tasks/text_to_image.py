"""Text-to-image: one pipeline call for a group of compatible jobs.

A group of jobs runs as one pipeline call whose images are laid out job by job, seed by seed.
Each image has its own CPU ``torch.Generator`` seeded with its own seed, which is exactly what
a plain diffusers call with ``generator=torch.Generator().manual_seed(seed)`` uses; CPU
generators also make a seed give the same starting noise on every machine.

The arguments built here are the ones every Stable Diffusion task takes; inpainting adds its
pictures to them, the way diffusers' inpainting pipeline extends the text-to-image one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from engine.protocol import FAMILIES, FLUX_MAX_SEQUENCE_LENGTH, Family, JobSpec, family_of_pipeline
from engine.settings import EngineSettings
from engine.tasks.checks import check_job
from engine.tasks.prompt_embeddings import PromptReader

StepCallback = Callable[[Any, int, Any, dict[str, torch.Tensor]], dict[str, torch.Tensor]]


def check_inputs(spec: JobSpec, settings: EngineSettings) -> None:
    """Raise ``BadInput`` with a user-safe reason when ``spec`` cannot run here.

    The bounds every job shares (prompt, seeds, size, steps, guidance, scheduler) and the rule
    that only inpainting takes an image or mask live in ``engine.tasks.checks``.
    """
    check_job(spec, settings)


def per_image(jobs: Sequence[JobSpec], values: Sequence[Any]) -> list[Any]:
    """Repeat each job's value once per seed, matching the images' layout."""
    return [value for job, value in zip(jobs, values, strict=True) for _ in job.seeds]


def call_arguments(
    pipeline: object, jobs: Sequence[JobSpec], on_step: StepCallback, output_type: str = "pil"
) -> dict[str, Any]:
    """The pipeline call's keyword arguments, per image where they can vary.

    The prompts go as text, or as embeddings when a job has weights or a long prompt
    (``engine.tasks.prompt_embeddings``); the runners keep jobs of different kinds apart. A
    family that takes no guidance (FLUX.1 schnell) gets no guidance scale; it reads at most
    256 tokens of T5 prompt, as schnell was trained.
    """
    first = jobs[0]
    family = family_of_pipeline(type(pipeline).__name__) or Family.SD
    arguments: dict[str, Any] = {
        **PromptReader(pipeline).call_arguments(jobs),
        "generator": [torch.Generator().manual_seed(seed) for job in jobs for seed in job.seeds],
        "num_inference_steps": first.steps,
        "guidance_scale": first.guidance,
        "width": first.width,
        "height": first.height,
        "output_type": output_type,
        "callback_on_step_end": on_step,
    }
    if FAMILIES[family].guidance is None:
        del arguments["guidance_scale"]
    if family is Family.FLUX:
        arguments["max_sequence_length"] = FLUX_MAX_SEQUENCE_LENGTH
    return arguments


def text_to_image(
    pipeline: object, jobs: Sequence[JobSpec], on_step: StepCallback, output_type: str = "pil"
) -> list[Any]:
    """Images for ``jobs`` (job by job, seed by seed) from one call of ``pipeline``: PIL, or
    with ``output_type="pt"`` float pixels ``(3, h, w)`` in [0, 1] on the pipeline's device.

    The caller has set the pipeline's scheduler and checked the jobs; they share a batch key.
    """
    output = pipeline(**call_arguments(pipeline, jobs, on_step, output_type))  # type: ignore[operator]  # diffusers' pipelines are untyped
    return list(output.images)

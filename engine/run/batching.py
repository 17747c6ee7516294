"""What every task shares: grouping compatible jobs, and one call's per-image arguments.

A group of jobs runs as one pipeline call whose images are laid out job by job, seed by seed.
Each image has its own CPU ``torch.Generator`` seeded with its own seed, which is exactly what
a plain diffusers call with ``generator=torch.Generator().manual_seed(seed)`` uses; CPU
generators also make a seed give the same starting noise on every machine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

from engine.protocol import JobSpec

StepCallback = Callable[[Any, int, Any, dict[str, torch.Tensor]], dict[str, torch.Tensor]]


def group_compatible(jobs: Iterable[JobSpec], max_images: int) -> list[list[JobSpec]]:
    """Jobs with equal ``batch_key`` together, in arrival order, at most ``max_images`` a call.

    A single job larger than ``max_images`` still gets a call of its own (validation bounds it).
    """
    by_key: dict[tuple[Any, ...], list[list[JobSpec]]] = {}
    order: list[list[JobSpec]] = []
    for job in jobs:
        chunks = by_key.setdefault(job.batch_key, [])
        if not chunks or sum(len(j.seeds) for j in chunks[-1]) + len(job.seeds) > max_images:
            chunks.append([])
            order.append(chunks[-1])
        chunks[-1].append(job)
    return order


def per_image(jobs: Sequence[JobSpec], values: Sequence[Any]) -> list[Any]:
    """Repeat each job's value once per seed, matching the images' layout."""
    return [value for job, value in zip(jobs, values, strict=True) for _ in job.seeds]


def uses_guidance(pipeline: Any, guidance: float) -> bool:
    """Whether the call runs classifier-free guidance (two UNet rows per image)."""
    # diffusers' own rule for Stable Diffusion pipelines.
    return guidance > 1 and pipeline.unet.config.time_cond_proj_dim is None


def shared_arguments(jobs: Sequence[JobSpec], on_step: StepCallback) -> dict[str, Any]:
    """Keyword arguments every task's pipeline call takes, per image where it can vary."""
    first = jobs[0]
    return {
        "prompt": per_image(jobs, [job.prompt for job in jobs]),
        "negative_prompt": per_image(jobs, [job.negative_prompt for job in jobs]),
        "generator": [torch.Generator().manual_seed(seed) for job in jobs for seed in job.seeds],
        "num_inference_steps": first.steps,
        "guidance_scale": first.guidance,
        "width": first.width,
        "height": first.height,
        "output_type": "pil",
        "callback_on_step_end": on_step,
    }


def prompt_cut(tokenizer: Any, text: str) -> str:
    """The part of ``text`` beyond the tokenizer's limit, which the model never sees."""
    limit = getattr(tokenizer, "model_max_length", 77)
    if not text or limit > 100_000:  # no real limit configured
        return ""
    content = limit - 2  # the start and end tokens take two places
    try:
        encoded = tokenizer(
            text, add_special_tokens=False, truncation=False, return_offsets_mapping=True
        )
    except (NotImplementedError, TypeError, ValueError):
        encoded = tokenizer(text, add_special_tokens=False, truncation=False)
    ids = encoded["input_ids"]
    if len(ids) <= content:
        return ""
    offsets = encoded.get("offset_mapping")
    if offsets:
        return text[offsets[content][0] :].strip()
    return tokenizer.decode(ids[content:]).strip()

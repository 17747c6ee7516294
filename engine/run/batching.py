"""Batching: which jobs share a pipeline call, and what of a prompt the model never sees.

Jobs with equal ``batch_key`` (model, kind, size, steps, guidance, scheduler...) run as one
call; each image keeps its own generator (``engine.tasks.text_to_image``), so an image does not
depend on what it was batched with.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from engine.protocol import JobSpec


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

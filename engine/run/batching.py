"""Batching: which jobs share a pipeline call.

Jobs with equal ``batch_key`` (model, kind, size, steps, guidance, scheduler...) run as one
call; each image keeps its own generator (``engine.tasks.text_to_image``), so an image does not
depend on what it was batched with.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Any

from engine.protocol import JobSpec


def group_compatible(
    jobs: Iterable[JobSpec],
    max_images: int,
    also: Callable[[JobSpec], Hashable] | None = None,
) -> list[list[JobSpec]]:
    """Jobs with equal ``batch_key`` together, in arrival order, at most ``max_images`` a call.

    ``also`` tells apart jobs that only the loaded model can (how many windows of the text
    encoder their prompts take: ``PromptReader.windows``). A single job larger than
    ``max_images`` still gets a call of its own (validation bounds it).
    """
    by_key: dict[tuple[Any, ...], list[list[JobSpec]]] = {}
    order: list[list[JobSpec]] = []
    for job in jobs:
        key = job.batch_key if also is None else (*job.batch_key, also(job))
        chunks = by_key.setdefault(key, [])
        if not chunks or sum(len(j.seeds) for j in chunks[-1]) + len(job.seeds) > max_images:
            chunks.append([])
            order.append(chunks[-1])
        chunks[-1].append(job)
    return order

"""Text-to-image: one pipeline call for a group of compatible jobs."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image

from engine.protocol import JobSpec
from engine.run.batching import StepCallback, shared_arguments


def text_to_image(
    pipeline: object, jobs: Sequence[JobSpec], on_step: StepCallback
) -> list[Image.Image]:
    """Images for ``jobs`` (job by job, seed by seed) from one call of ``pipeline``.

    The caller has set the pipeline's scheduler and checked the jobs; they share a batch key.
    """
    output = pipeline(**shared_arguments(jobs, on_step))  # type: ignore[operator]
    return list(output.images)

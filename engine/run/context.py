"""What every runner works with: the engine's parts, the event sink, and the shared outcomes.

A runner (``engine.run.plain``, ``engine.run.comparisons``) gets a ``RunContext`` from the
worker instead of the worker itself, so runners depend only on what they use and never call
back up into the loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from engine.images.safety import SafetyChecker
from engine.models.adapters import AdapterUnavailable
from engine.models.registry import LoadedPipelines, ModelRegistry, ModelUnavailable, WrongModelKind
from engine.protocol import Accepted, ErrorKind, JobError, JobSpec
from engine.run.finishing import Emit, MakeEvents, finish_now, internal_message
from engine.settings import EngineSettings
from engine.tasks.checks import BadInput, check_family
from engine.tasks.prompt_embeddings import PromptReader
from engine.tasks.text_mask import TextMasker

__all__ = ["CANCELLED_MESSAGE", "Emit", "HandOff", "RunContext", "internal_message", "job_ids"]

CANCELLED_MESSAGE = "cancelled"
# Takes jobs whose pipeline work is done, the function that makes their last events, and where
# to emit them (engine.run.finishing).
HandOff = Callable[[Sequence[JobSpec], MakeEvents, Emit], None]


def job_ids(jobs: Sequence[JobSpec]) -> list[int]:
    """The ids of ``jobs``, for log lines."""
    return [job.job_id for job in jobs]


@dataclass(frozen=True)
class RunContext:
    """The engine's parts a runner uses, and where its events go.

    ``emit`` takes every event the runner makes; ``is_cancelled`` answers, from any thread,
    whether a cancel arrived for a job; ``hand_off`` finishes jobs, by default in this thread
    (the worker gives its ``Finisher``'s threads).
    """

    settings: EngineSettings
    device: torch.device
    registry: ModelRegistry
    safety: SafetyChecker
    text_masks: TextMasker
    emit: Emit
    is_cancelled: Callable[[int], bool]
    hand_off: HandOff = finish_now

    def finish_later(self, jobs: Sequence[JobSpec], make_events: MakeEvents) -> None:
        """Leave ``jobs``' ends to ``hand_off``: ``make_events`` makes their ``Result``s (CPU
        work: encoding); if it fails, each job ends with an internal error."""
        self.hand_off(jobs, make_events, self.emit)

    def fail(self, job: JobSpec, kind: ErrorKind, message: str) -> None:
        """End ``job`` with an error the user reads."""
        self.emit(JobError(job_id=job.job_id, kind=kind, message=message))

    def accept(self, job: JobSpec, prompts: PromptReader) -> None:
        """Report that ``job`` is about to run, with how its long prompts were split."""
        self.emit(
            Accepted(
                job_id=job.job_id,
                prompt_chunks=prompts.chunks(job.prompt),
                negative_prompt_chunks=prompts.chunks(job.negative_prompt),
            )
        )

    def pipeline_or_fail(self, jobs: list[JobSpec]) -> tuple[LoadedPipelines, Any] | None:
        """The loaded model and the pipeline that run ``jobs`` (one model and kind), loading
        it when needed, with the jobs' adapters turned on (they share them: ``batch_key``);
        when it cannot be had, every job fails with the reason: None.

        A job asking for what the model's family does not take (``check_family``), or with a
        prompt the pipeline would cut (``PromptReader.check``), fails with the reason and
        leaves ``jobs``; None when none is left.
        """
        first = jobs[0]
        try:
            entry = self.registry.get(first.model)
            pipeline = entry.pipeline_for(first.kind)
            prompts = PromptReader(pipeline)
            for job in list(jobs):
                try:
                    check_family(job, entry.family)
                    prompts.check(job)
                except BadInput as refused:
                    self.fail(job, ErrorKind.BAD_INPUT, str(refused))
                    jobs.remove(job)
            if not jobs:
                return None
            entry.adapters.apply(entry.base, first.adapters)
            return entry, pipeline
        except (ModelUnavailable, AdapterUnavailable) as error:
            kind, message = ErrorKind.MODEL_UNAVAILABLE, str(error)
        except WrongModelKind as error:
            kind, message = ErrorKind.BAD_INPUT, str(error)
        for job in jobs:
            self.fail(job, kind, message)
        return None

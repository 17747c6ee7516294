"""One ``RunBatch``: check every job, then run plain jobs and course comparisons.

Every job of the batch ends in exactly one ``Result`` or ``JobError``, whatever breaks: jobs
that something unexpected left without an end fail with an error id that ties the user's report
to the log line. A job handed to a finishing thread has its end there (``engine.run.finishing``).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import replace

from engine.protocol import ErrorKind, Event, JobError, JobSpec, Result
from engine.run.comparisons import Comparisons, is_comparison
from engine.run.context import CANCELLED_MESSAGE, RunContext, internal_message, job_ids
from engine.run.finishing import Emit, MakeEvents
from engine.run.pipeline_call import check_inputs
from engine.run.plain import run_plain
from engine.tasks.checks import BadInput

log = logging.getLogger(__name__)


def run_batch(context: RunContext, jobs: Sequence[JobSpec]) -> None:
    """Run ``jobs``, compatible ones together; every job ends in a ``Result`` or ``JobError``."""
    ended: set[int] = set()

    def emit(event: Event) -> None:
        if isinstance(event, Result | JobError):
            ended.add(event.job_id)
        context.emit(event)

    def hand_off(handed: Sequence[JobSpec], make_events: MakeEvents, to: Emit) -> None:
        ended.update(job.job_id for job in handed)
        context.hand_off(handed, make_events, to)

    run = replace(context, emit=emit, hand_off=hand_off)
    try:
        runnable = []
        for job in jobs:
            if run.is_cancelled(job.job_id):
                run.fail(job, ErrorKind.CANCELLED, CANCELLED_MESSAGE)
                continue
            try:
                check_inputs(job, run.settings)
            except BadInput as error:
                run.fail(job, ErrorKind.BAD_INPUT, str(error))
                continue
            runnable.append(job)
        run_plain(run, [job for job in runnable if not is_comparison(job)])
        lessons = [job for job in runnable if is_comparison(job)]
        if lessons:  # the course's comparisons run panel by panel (engine.run.comparisons)
            Comparisons(run).run(lessons)
    except Exception:
        error_id = uuid.uuid4().hex[:8]
        log.exception("batch %s failed (error %s)", job_ids(jobs), error_id)
        for job in jobs:
            if job.job_id not in ended:
                run.fail(job, ErrorKind.INTERNAL, internal_message(error_id))

"""Finishing off the GPU's thread: every job ends, in order, and the GPU does not wait."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from engine.protocol import (
    Accepted,
    ErrorKind,
    Event,
    JobError,
    ModelRef,
    Progress,
    Result,
    RunBatch,
)
from engine.run import pipeline_call
from engine.run.finishing import Finisher, finish_now
from engine.worker import Worker
from tests.engine.helpers import Recorder, job

MODEL = ModelRef(name="m", source="m")


def _error_events(job_ids: list[int]) -> list[Event]:
    return [JobError(job_id=i, kind=ErrorKind.BAD_INPUT, message=f"job {i}") for i in job_ids]


def test_a_batch_events_come_out_in_the_order_made_and_drain_waits_for_them() -> None:
    recorder = Recorder()
    finisher = Finisher(threads=2)
    for first in (1, 3, 5):

        def slow(first: int = first) -> list[Event]:
            time.sleep(0.05 * (6 - first))  # the first batch is the slowest
            return _error_events([first, first + 1])

        finisher.submit([job(MODEL, first), job(MODEL, first + 1)], slow, recorder)
    finisher.drain()
    ids = [event.job_id for event in recorder.events]  # type: ignore[attr-defined]
    assert sorted(ids) == [1, 2, 3, 4, 5, 6]
    for first in (1, 3, 5):  # within a batch, in order
        assert ids.index(first) < ids.index(first + 1)
    finisher.close()


def test_finishing_that_breaks_ends_every_job_with_a_generic_error() -> None:
    recorder = Recorder()

    def broken() -> list[Event]:
        raise RuntimeError("secret detail")

    finish_now([job(MODEL, 1), job(MODEL, 2)], broken, recorder)
    errors = recorder.of(JobError)
    assert [e.job_id for e in errors] == [1, 2]
    assert all(e.kind is ErrorKind.INTERNAL and "secret" not in e.message for e in errors)
    assert errors[0].message.startswith("something went wrong while making this image (error ")


def test_a_full_finisher_holds_the_next_batch_back() -> None:
    """A GPU faster than the encoding waits rather than piling up pictures in memory."""
    finisher = Finisher(threads=1)  # two batches in at most
    release = threading.Event()

    def held() -> list[Event]:
        assert release.wait(10)
        return []

    finisher.submit([job(MODEL, 1)], held, Recorder())
    finisher.submit([job(MODEL, 2)], held, Recorder())
    third = threading.Thread(target=finisher.submit, args=([job(MODEL, 3)], held, Recorder()))
    third.start()
    third.join(0.3)
    assert third.is_alive()  # waiting for a slot
    release.set()
    third.join(10)
    assert not third.is_alive()
    finisher.close()


def test_the_next_batch_runs_while_the_last_one_is_encoded(
    worker: Worker, recorder: Recorder, t2i_model: ModelRef, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Job 1's PNGs are not encoded before job 2's pipeline call has started: the serving
    thread went on without waiting for them. Each job's own events stay in order."""
    second_started = threading.Event()
    encode = pipeline_call.Checked.encode

    def slow_encode(self: Any, *args: Any) -> Any:
        if self.made[0][0].job_id == 1:
            assert second_started.wait(60), "the second batch never started"
        return encode(self, *args)

    def watch(event: Event) -> None:
        if isinstance(event, Progress) and event.job_id == 2:
            second_started.set()

    monkeypatch.setattr(pipeline_call.Checked, "encode", slow_encode)
    recorder.on_event = watch
    worker.submit(RunBatch(jobs=(job(t2i_model, 1),)))
    worker.submit(RunBatch(jobs=(job(t2i_model, 2, prompt="a dog"),)))
    worker.serve(until_idle=True)  # returns once every result is out
    order = [(type(e).__name__, e.job_id) for e in recorder.events]  # type: ignore[attr-defined]
    assert order.index(("Progress", 2)) < order.index(("Result", 1))
    for job_id in (1, 2):
        kinds = [type(e) for e in recorder.events if getattr(e, "job_id", None) == job_id]
        assert kinds[0] is Accepted and kinds[-1] is Result
        assert set(kinds[1:-1]) == {Progress}

"""Helpers shared by engine tests (and the engine client's tests)."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image

from engine.protocol import Event, JobError, JobKind, JobSpec, ModelRef, Progress, Result, RunBatch
from engine.settings import EngineSettings
from engine.worker import Worker
from tests.fixtures.tiny_models import TinyModels


class Recorder:
    """Collects a worker's events; ``on_event`` hooks run as each one arrives."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.on_event: Callable[[Event], None] | None = None

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        if self.on_event is not None:
            self.on_event(event)

    def of(self, kind: type, job_id: int | None = None) -> list[Any]:
        return [
            e
            for e in self.events
            if isinstance(e, kind) and (job_id is None or getattr(e, "job_id", None) == job_id)
        ]

    def result(self, job_id: int) -> Result:
        (result,) = self.of(Result, job_id)
        return result

    def error(self, job_id: int) -> JobError:
        (error,) = self.of(JobError, job_id)
        return error

    def progress(self, job_id: int) -> list[Progress]:
        return self.of(Progress, job_id)


def pixels(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image.convert("RGB"))


def shuffle_within_blocks(pixels: np.ndarray, block: int, seed: int = 1) -> np.ndarray:
    """``pixels`` with the pixels inside each ``block`` x ``block`` square rearranged."""
    rng = np.random.default_rng(seed)
    shuffled = pixels.copy()
    for y in range(0, pixels.shape[0], block):
        for x in range(0, pixels.shape[1], block):
            tile = shuffled[y : y + block, x : x + block].reshape(-1, 3)
            shuffled[y : y + block, x : x + block] = rng.permutation(tile).reshape(block, block, 3)
    return shuffled


def engine_settings(tiny_models: TinyModels, **overrides: Any) -> EngineSettings:
    """Settings for tests: CPU, offline, the never-flagging checker, every step reported."""
    values: dict[str, Any] = {
        "device": "cpu",
        "offline": True,
        "safety_checker": str(tiny_models.safety_checker_never),
        "progress_interval_s": 0.0,
        "preview_interval_s": 0.0,
    }
    values.update(overrides)
    return EngineSettings(_env_file=None, **values)  # type: ignore[call-arg]


def job(model: ModelRef, job_id: int = 1, **fields: Any) -> JobSpec:
    """A small, quick job; fields override the defaults."""
    values: dict[str, Any] = {
        "job_id": job_id,
        "kind": JobKind.TEXT_TO_IMAGE,
        "model": model,
        "prompt": "a cat on a hill",
        "seeds": (42,),
        "steps": 3,
        "width": 64,
        "height": 64,
    }
    values.update(fields)
    return JobSpec(**values)


def run(worker: Worker, *jobs: JobSpec) -> None:
    worker.handle(RunBatch(jobs=tuple(jobs)))

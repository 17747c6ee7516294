"""Helpers shared by engine tests (and the engine client's tests)."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
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


@contextlib.contextmanager
def same_cpu_kernels() -> Iterator[None]:
    """The CPU convolution kernels the engine uses: PyTorch's own, not oneDNN or NNPACK, which
    choose their arithmetic by batch size (see engine/invariance.py)."""
    previous = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        with torch.backends.nnpack.flags(enabled=False):
            yield
    finally:
        torch.backends.mkldnn.enabled = previous


def write_picture(folder: Path) -> Path:
    """A 64x64 picture of noise to start from, the same every time."""
    rng = np.random.default_rng(3)
    picture = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    picture.save(folder / "start.png")
    return folder / "start.png"


# What the picture-to-picture tests ask for: 5 steps at strength 0.6, so int(5 x 0.6) = 3 run.
STRENGTH, STEPS, SEED = 0.6, 5, 5


def strength_job(model: ModelRef, kind: JobKind, picture: Path) -> JobSpec:
    """Job 1: "a red door" from ``picture`` at ``STRENGTH`` in ``STEPS`` steps."""
    return job(
        model,
        1,
        kind=kind,
        prompt="a red door",
        seeds=(SEED,),
        strength=STRENGTH,
        steps=STEPS,
        image_path=str(picture),
    )


def plain_strength_pixels(plain: Any, picture: Path) -> np.ndarray:
    """What plain diffusers' ``plain`` makes of ``strength_job``, with the Euler scheduler the
    engine's default names and the engine's CPU kernels."""
    from diffusers import EulerDiscreteScheduler

    plain.set_progress_bar_config(disable=True)
    plain.scheduler = EulerDiscreteScheduler.from_config(plain.scheduler.config)
    with same_cpu_kernels():
        image = plain(
            "a red door",
            image=Image.open(picture),
            strength=STRENGTH,
            num_inference_steps=STEPS,
            generator=torch.Generator().manual_seed(SEED),
        ).images[0]
    return np.asarray(image)


def run_batched(worker: Worker, recorder: Recorder, spec: JobSpec) -> Result:
    """``spec`` again, as job 3, batched after another user's two-image job; its result."""
    recorder.events.clear()
    run(worker, replace(spec, job_id=2, prompt="a cat", seeds=(1, 2)), replace(spec, job_id=3))
    # Progress counts the steps really run: int(STEPS × STRENGTH).
    assert {p.total_steps for p in recorder.progress(3)} == {int(STEPS * STRENGTH)}
    return recorder.result(3)

"""Real weights on a real GPU: run only where CUDA and the weights are available."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.protocol import JobKind, JobSpec, ModelRef, Result, RunBatch
from engine.settings import EngineSettings
from engine.worker import Worker
from tests.engine.helpers import Recorder, pixels

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

MODEL = ModelRef(name="sd-1.5", source="stable-diffusion-v1-5/stable-diffusion-v1-5")


def spec(job_id: int, seed: int, prompt: str) -> JobSpec:
    return JobSpec(
        job_id=job_id,
        kind=JobKind.TEXT_TO_IMAGE,
        model=MODEL,
        prompt=prompt,
        seeds=(seed,),
        steps=20,
        scheduler="dpmpp_2m_karras",
    )


def test_real_model_in_half_precision_with_the_real_checker() -> None:
    recorder = Recorder()
    # The compiler's warm-up is tests/engine/test_fast_path.py's; here only the model counts.
    settings = EngineSettings(_env_file=None, compile_unet=False, compile_vae=False)  # type: ignore[call-arg]
    worker = Worker(settings, recorder)
    assert worker.dtype is torch.float16
    worker.handle(RunBatch(jobs=(spec(1, 7, "a lighthouse on a cliff, oil painting"),)))
    alone = recorder.result(1)
    assert not alone.images[0].nsfw
    assert alone.model_revision  # a commit from the Hub cache
    worker.handle(
        RunBatch(
            jobs=(
                spec(2, 8, "a red fox in snow"),
                spec(3, 7, "a lighthouse on a cliff, oil painting"),
            )
        )
    )
    batched = recorder.result(3)
    assert isinstance(batched, Result)
    # On CUDA, kernels chosen by shape may move a value by a rounding step; the picture stays.
    difference = np.abs(
        pixels(alone.images[0].png).astype(int) - pixels(batched.images[0].png).astype(int)
    )
    assert difference.mean() < 1.0

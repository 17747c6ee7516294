"""Schedulers by friendly name, swapped per job without reloading weights."""

from __future__ import annotations

import numpy as np
import pytest
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
)
from diffusers.schedulers.scheduling_lms_discrete import LMSDiscreteScheduler

from engine.models.schedulers import ExactLMSDiscreteScheduler, make_scheduler
from engine.protocol import SCHEDULERS, ModelRef
from engine.worker import Worker
from tests.engine.helpers import Recorder, job, pixels, run
from tests.fixtures.tiny_models import TinyModels

EXPECTED = {
    "euler": EulerDiscreteScheduler,
    "euler_a": EulerAncestralDiscreteScheduler,
    "dpmpp_2m_karras": DPMSolverMultistepScheduler,
    "ddim": DDIMScheduler,
    "pndm": PNDMScheduler,
    "lms": LMSDiscreteScheduler,
}


@pytest.fixture(scope="module")
def base_config(tiny_models: TinyModels):
    return StableDiffusionPipeline.from_pretrained(tiny_models.text_to_image).scheduler.config


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_every_name_builds_its_scheduler(name: str, base_config) -> None:
    scheduler = make_scheduler(name, base_config)
    assert isinstance(scheduler, EXPECTED[name])
    # The model's own training schedule is kept.
    assert scheduler.config.beta_schedule == base_config.beta_schedule
    assert scheduler.config.beta_end == base_config.beta_end
    assert make_scheduler(name, base_config) is not scheduler  # fresh state per call


def test_dpmpp_2m_karras_options(base_config) -> None:
    scheduler = make_scheduler("dpmpp_2m_karras", base_config)
    assert scheduler.config.algorithm_type == "dpmsolver++"
    assert scheduler.config.solver_order == 2
    assert scheduler.config.use_karras_sigmas


def test_exact_lms_coefficients_match_numerical_integration(base_config) -> None:
    scheduler = ExactLMSDiscreteScheduler.from_config(base_config)
    scheduler.set_timesteps(10)
    sigmas = [float(s) for s in scheduler.sigmas]
    nodes, weights = np.polynomial.legendre.leggauss(20)
    for t in range(3, 9):
        for current in range(4):
            low, high = sigmas[t], sigmas[t + 1]
            tau = (high - low) / 2 * nodes + (high + low) / 2
            basis = np.ones_like(tau)
            for k in range(4):
                if k != current:
                    basis *= (tau - sigmas[t - k]) / (sigmas[t - current] - sigmas[t - k])
            reference = float((high - low) / 2 * np.sum(weights * basis))
            got = scheduler.get_lms_coefficient(4, t, current)
            assert got == pytest.approx(reference, rel=1e-9, abs=1e-12)


def test_swapping_schedulers_keeps_the_loaded_weights(
    worker: Worker, recorder: Recorder, t2i_model: ModelRef
) -> None:
    images = {}
    for job_id, name in enumerate(SCHEDULERS, start=1):
        run(worker, job(t2i_model, job_id, scheduler=name))
        images[name] = pixels(recorder.result(job_id).images[0].png)
        entry = worker.registry.get(t2i_model)
        assert isinstance(entry.base.scheduler, EXPECTED[name])
        if job_id == 1:
            unet = entry.base.unet
        assert entry.base.unet is unet
    assert len(worker.registry.loaded()) == 1
    # Different samplers, different pictures from the same seed.
    assert not np.array_equal(images["euler"], images["ddim"])
    assert not np.array_equal(images["euler"], images["euler_a"])


@pytest.fixture(scope="module")
def model_without_skip_prk(tiny_models: TinyModels, tmp_path_factory) -> ModelRef:
    """The tiny model with a scheduler config that, like some checkpoints', lacks
    ``skip_prk_steps``: stock PNDM then runs its Runge-Kutta warm-up, which breaks below 4
    steps."""
    folder = tmp_path_factory.mktemp("no-skip-prk") / "tiny-sd"
    pipeline = StableDiffusionPipeline.from_pretrained(tiny_models.text_to_image)
    config = dict(pipeline.scheduler.config)
    config.pop("skip_prk_steps")
    pipeline.scheduler = PNDMScheduler.from_config(config)
    assert pipeline.scheduler.config.skip_prk_steps is False
    pipeline.save_pretrained(folder)
    return ModelRef("no-skip-prk", str(folder))


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_every_scheduler_works_at_every_small_step_count(
    name: str, worker: Worker, recorder: Recorder, model_without_skip_prk: ModelRef
) -> None:
    for steps in (1, 2, 3, 4):
        run(worker, job(model_without_skip_prk, steps, scheduler=name, steps=steps))
        assert recorder.result(steps).images, (name, steps)


def test_a_kept_scheduler_runs_each_call_as_a_fresh_one(
    worker: Worker, recorder: Recorder, t2i_model: ModelRef
) -> None:
    # Each model keeps one scheduler per kind (building one costs more than a tiny model's
    # step); a call after others must see it as it was built: no step index, multistep
    # history or instance attribute (comparisons wrap ``step``) left from before.
    for number, name in enumerate(SCHEDULERS):
        first, between, again = (3 * number + i for i in (1, 2, 3))
        run(worker, job(t2i_model, first, scheduler=name, steps=3, seeds=(42,)))
        scheduler = worker.registry.get(t2i_model).base.scheduler
        run(worker, job(t2i_model, between, scheduler=name, steps=2, seeds=(7,)))

        def broken(*args: object, **kwargs: object) -> None:
            raise AssertionError("an attribute from an earlier call survived")

        scheduler.step = broken
        run(worker, job(t2i_model, again, scheduler=name, steps=3, seeds=(42,)))
        assert worker.registry.get(t2i_model).base.scheduler is scheduler, name
        np.testing.assert_array_equal(
            pixels(recorder.result(again).images[0].png),
            pixels(recorder.result(first).images[0].png),
            err_msg=name,
        )

"""/compare grids and the course lessons on SDXL and FLUX.1 schnell (their own pipelines)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.protocol import ErrorKind, ModelRef, Result, Variant
from engine.worker import Worker
from tests.engine.helpers import Recorder, job, pixels, run
from tests.fixtures.tiny_families import TinyFamilies


@pytest.fixture(scope="module")
def sdxl(tiny_families: TinyFamilies) -> ModelRef:
    return ModelRef(name="tiny-sdxl", source=str(tiny_families.sdxl))


@pytest.fixture(scope="module")
def flux(tiny_families: TinyFamilies) -> ModelRef:
    return ModelRef(name="tiny-flux", source=str(tiny_families.flux))


def _panels(recorder: Recorder, job_id: int) -> list[np.ndarray]:
    return [pixels(image.png) for image in recorder.result(job_id).images]


def test_an_sdxl_grid_and_strip_keep_the_plain_pixels(
    worker: Worker, recorder: Recorder, sdxl: ModelRef
) -> None:
    # guidance (x, with the course's CFG 0) × scheduler (y); the job's own: CFG 6, Euler.
    variants = tuple(Variant(f"{g}/{s}", g, 3, s) for s in ("euler", "ddim") for g in (0.0, 6.0))
    run(worker, job(sdxl, 1, guidance=6.0, scheduler="euler", variants=variants))
    run(worker, job(sdxl, 2, guidance=6.0, scheduler="euler", decode_steps=(1, 2, 3)))
    run(worker, job(sdxl, 3, guidance=6.0, scheduler="euler"))
    grid, strip, (plain,) = (_panels(recorder, i) for i in (1, 2, 3))
    np.testing.assert_array_equal(grid[1], plain)  # the default panel is /imagine's picture
    assert len({panel.tobytes() for panel in grid}) == 4
    # The strip's last step is the finished picture; the earlier ones are SDXL's VAE decoding
    # the predicted x0 (a picture of the right size, not the finished one).
    np.testing.assert_array_equal(strip[-1], plain)
    assert strip[0].shape == plain.shape and strip[0].tobytes() != plain.tobytes()


def test_flux_steps_lesson_and_strip_run_without_guidance(
    worker: Worker, recorder: Recorder, flux: ModelRef
) -> None:
    # FLUX.1 schnell stores guidance 0 for "none": its panels run the prompt, not the course's
    # CFG-0 swap to the (empty) negative prompt, so the 4-step panel is the plain job.
    steps = tuple(Variant(f"{s} steps", 0.0, s, "euler") for s in (1, 2, 3, 4))
    run(worker, job(flux, 1, guidance=0.0, steps=4, scheduler="euler", variants=steps))
    run(worker, job(flux, 2, guidance=0.0, steps=4, scheduler="euler", decode_steps=(1, 2, 4)))
    run(worker, job(flux, 3, guidance=0.0, steps=4, scheduler="euler"))
    lesson, strip, (plain,) = (_panels(recorder, i) for i in (1, 2, 3))
    np.testing.assert_array_equal(lesson[-1], plain)
    assert len({panel.tobytes() for panel in lesson}) == 4
    # x0 = x_t - σ·v on the unpacked latents: a picture of the job's size at steps 1 and 2.
    np.testing.assert_array_equal(strip[-1], plain)
    assert all(panel.shape == plain.shape for panel in strip)
    assert strip[0].tobytes() != strip[1].tobytes() != plain.tobytes()


def test_a_flux_panel_outside_its_family_is_refused(
    worker: Worker, recorder: Recorder, flux: ModelRef
) -> None:
    variants = (Variant("2", 0.0, 2, "euler"), Variant("8", 0.0, 8, "euler"))
    run(worker, job(flux, 1, guidance=0.0, steps=2, variants=variants))
    error = recorder.error(1)
    assert error.kind is ErrorKind.BAD_INPUT and "FLUX.1 schnell takes steps" in error.message
    assert not recorder.of(Result, 1)

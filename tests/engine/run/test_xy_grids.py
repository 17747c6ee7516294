"""/compare's X/Y grids in the engine: two axes as one job's variants, seed and model among them."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from engine.images.metadata import parse_parameters, read_parameters
from engine.protocol import ModelRef, Variant
from engine.worker import Worker
from tests.engine.helpers import Recorder, job, pixels, run

SEEDS = (42, 7)  # the x axis; 42 is the job's own seed


def test_a_seed_by_model_grid_runs_each_panel_on_its_model_and_keeps_the_plain_pixels(
    worker: Worker, recorder: Recorder, t2i_model: ModelRef
):
    # The same weights under a second name: a model axis that must load and run both.
    copy = ModelRef(name="tiny-sd-copy", source=t2i_model.source)
    models = (t2i_model, copy)
    variants = tuple(
        Variant(f"seed {seed} / {model.name}", 7.5, 2, "euler", seed=seed, model=model)
        for model in models  # y: rows
        for seed in SEEDS  # x: columns
    )
    grid = job(t2i_model, 1, steps=2, variants=variants)
    run(worker, grid)
    result = recorder.result(1)
    panels = [pixels(image.png) for image in result.images]
    assert [image.seed for image in result.images] == [42, 7, 42, 7]

    # The default panel (the job's own seed and model) is the plain job, pixel for pixel.
    recorder.events.clear()
    run(worker, job(t2i_model, 2, steps=2))
    np.testing.assert_array_equal(panels[0], pixels(recorder.result(2).images[0].png))
    # Seeds differ; the same seed on the same weights under another name does not.
    assert panels[0].tobytes() != panels[1].tobytes()
    np.testing.assert_array_equal(panels[1], panels[3])

    params = [parse_parameters(read_parameters(image.png)) for image in result.images]
    assert [(p["Seed"], p["Model"]) for p in params] == [
        ("42", "tiny-sd"),
        ("7", "tiny-sd"),
        ("42", "tiny-sd-copy"),
        ("7", "tiny-sd-copy"),
    ]


def test_a_seed_axis_needs_a_job_of_one_seed(
    worker: Worker, recorder: Recorder, t2i_model: ModelRef
):
    variants = (Variant("1", 7.5, 2, "euler", seed=1), Variant("2", 7.5, 2, "euler", seed=2))
    run(worker, replace(job(t2i_model, 1, variants=variants), seeds=(1, 2)))
    assert "one seed" in recorder.error(1).message

"""Course comparisons in the engine: panels from one seed, batched where settings allow."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from engine.images.metadata import parse_parameters, read_parameters
from engine.protocol import (
    SCHEDULERS,
    ErrorKind,
    JobKind,
    JobSpec,
    ModelRef,
    Progress,
    Result,
    Variant,
)
from engine.tasks import text_to_image
from engine.worker import Worker
from tests.engine.helpers import Recorder, job, pixels, run

GUIDANCE = (0.0, 1.0, 7.5)


def sweep(model: ModelRef, job_id: int = 1, **fields: object) -> JobSpec:
    variants = tuple(Variant(f"CFG {g:g}", g, 3, "euler") for g in GUIDANCE)
    return job(model, job_id, variants=variants, negative_prompt="blurry", **fields)


def alone(worker: Worker, recorder: Recorder, spec: JobSpec) -> np.ndarray:
    """The pixels of a plain job run on its own."""
    recorder.events.clear()
    run(worker, spec)
    return pixels(recorder.result(spec.job_id).images[0].png)


def test_each_panel_is_the_plain_job_with_that_setting(
    worker: Worker, recorder: Recorder, t2i_model: ModelRef
):
    run(worker, sweep(t2i_model))
    result = recorder.result(1)
    panels = [pixels(image.png) for image in result.images]
    assert [image.seed for image in result.images] == [42] * 3
    base = job(t2i_model, 2, negative_prompt="blurry", steps=3)
    for guidance, panel in zip(GUIDANCE[1:], panels[1:], strict=True):
        plain = alone(worker, recorder, replace(base, guidance=guidance))
        np.testing.assert_array_equal(panel, plain, err_msg=f"CFG {guidance}")
    # CFG 0 is the unconditional prediction: what the negative prompt alone draws.
    unconditional = alone(
        worker, recorder, replace(base, prompt="blurry", negative_prompt="", guidance=1.0)
    )
    np.testing.assert_array_equal(panels[0], unconditional)
    assert len({p.tobytes() for p in panels}) == 3
    # Each panel's metadata says what it is, with the job's own prompt.
    params = [parse_parameters(read_parameters(image.png)) for image in result.images]
    assert [p["CFG scale"] for p in params] == ["0.0", "1.0", "7.5"]
    assert {p["prompt"] for p in params} == {"a cat on a hill"}


@pytest.mark.parametrize(
    "variants",
    [
        (Variant("2 steps", 7.5, 2, "euler"), Variant("4 steps", 7.5, 4, "euler")),
        (Variant("DDIM", 7.5, 3, "ddim"), Variant("DPM++ 2M Karras", 7.5, 3, "dpmpp_2m_karras")),
    ],
    ids=["steps", "schedulers"],
)
def test_steps_and_scheduler_panels(
    variants: tuple[Variant, ...], worker: Worker, recorder: Recorder, t2i_model: ModelRef
):
    run(worker, job(t2i_model, 1, variants=variants))
    panels = [pixels(image.png) for image in recorder.result(1).images]
    for index, variant in enumerate(variants):
        plain = job(t2i_model, 10 + index, steps=variant.steps, scheduler=variant.scheduler)
        np.testing.assert_array_equal(panels[index], alone(worker, recorder, plain))


def test_equal_comparisons_share_pipeline_calls_and_keep_their_pixels(
    worker: Worker, recorder: Recorder, t2i_model: ModelRef, monkeypatch: pytest.MonkeyPatch
):
    run(worker, sweep(t2i_model, 1))
    expected = [pixels(image.png) for image in recorder.result(1).images]
    calls: list[list[int]] = []
    original = text_to_image.text_to_image

    def counting(pipeline, jobs, on_step, **options):  # type: ignore[no-untyped-def]
        calls.append([spec.job_id for spec in jobs])
        return original(pipeline, jobs, on_step, **options)

    monkeypatch.setattr(text_to_image, "text_to_image", counting)
    recorder.events.clear()
    plain = job(t2i_model, 3)
    run(worker, sweep(t2i_model, 1), sweep(t2i_model, 2, seeds=(42,)), plain)
    # The plain job runs first, on its own. CFG 0 runs unguided like CFG 1 (another prompt), so
    # they share a call: two calls for the panels, each for both jobs.
    assert calls == [[3], [1, 1, 2, 2], [1, 2]]
    for job_id in (1, 2):
        got = [pixels(image.png) for image in recorder.result(job_id).images]
        for panel, want in zip(got, expected, strict=True):
            np.testing.assert_array_equal(panel, want)
    assert len(recorder.result(3).images) == 1


@pytest.mark.parametrize("scheduler", list(SCHEDULERS))
def test_denoising_strip_ends_with_the_finished_image(
    scheduler: str, worker: Worker, recorder: Recorder, t2i_model: ModelRef
):
    spec = job(t2i_model, 1, steps=4, scheduler=scheduler, decode_steps=(1, 2, 4))
    run(worker, spec)
    strip = [pixels(image.png) for image in recorder.result(1).images]
    assert len(strip) == 3
    finished = alone(worker, recorder, replace(spec, job_id=2, decode_steps=()))
    np.testing.assert_array_equal(strip[-1], finished)
    # The predictions change along the run: the early ones are not the end picture.
    assert not np.array_equal(strip[0], strip[-1])


def test_progress_counts_every_panel_and_ends_at_the_total(
    worker: Worker, recorder: Recorder, t2i_model: ModelRef
):
    variants = (Variant("a", 7.5, 2, "euler"), Variant("b", 7.5, 3, "pndm"))
    run(worker, job(t2i_model, 1, variants=variants))
    steps = [(p.step, p.total_steps) for p in recorder.of(Progress, 1)]
    total = 2 + (3 + 1)  # PNDM runs one step more than asked
    assert [s for s, _ in steps] == list(range(1, total + 1))
    assert {t for _, t in steps} == {total}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"variants": (Variant("a", 7.5, 2, "euler"),), "decode_steps": (1,)},
            "not both",
        ),
        ({"variants": tuple(Variant(str(i), 7.5, 2, "euler") for i in range(17))}, "at most 16"),
        ({"variants": (Variant("x", 7.5, 2, "nope"),)}, "unknown scheduler"),
        ({"variants": (Variant("x", 99.0, 2, "euler"),)}, "guidance must be"),
        ({"decode_steps": (3, 1)}, "increasing order"),
        ({"decode_steps": (0, 1)}, "from 1"),
    ],
)
def test_bad_comparisons_are_refused(
    fields: dict, message: str, worker: Worker, recorder: Recorder, t2i_model: ModelRef
):
    run(worker, job(t2i_model, 1, **fields))
    error = recorder.error(1)
    assert error.kind is ErrorKind.BAD_INPUT and message in error.message


def test_a_cancelled_comparison_stops_and_posts_nothing(
    worker: Worker, recorder: Recorder, t2i_model: ModelRef
):
    def cancel_on_first_progress(event: object) -> None:
        if isinstance(event, Progress) and event.job_id == 1:
            worker.cancel(1)

    recorder.on_event = cancel_on_first_progress
    run(worker, sweep(t2i_model))
    assert recorder.error(1).kind is ErrorKind.CANCELLED
    assert recorder.of(Result, 1) == []
    assert len(recorder.of(Progress, 1)) < 3 * 3  # it stopped early, not after every panel


def test_inpainting_comparison_panels(
    worker: Worker, recorder: Recorder, inpaint_model: ModelRef, tmp_path
):
    from PIL import Image

    picture, mask = tmp_path / "in.png", tmp_path / "mask.png"
    Image.new("RGB", (64, 64), (200, 80, 40)).save(picture)
    Image.new("L", (64, 64), 255).save(mask)
    spec = job(
        inpaint_model,
        1,
        kind=JobKind.INPAINT,
        image_path=str(picture),
        mask_path=str(mask),
        strength=0.75,
        steps=4,
        variants=(Variant("CFG 2", 2.0, 4, "euler"), Variant("CFG 7.5", 7.5, 4, "euler")),
    )
    run(worker, spec)
    panels = [pixels(image.png) for image in recorder.result(1).images]
    plain = alone(worker, recorder, replace(spec, job_id=2, variants=(), guidance=7.5))
    np.testing.assert_array_equal(panels[1], plain)

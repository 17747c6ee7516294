"""The worker's events: accepted, progress, cancel, errors, out of memory, model requests."""

from __future__ import annotations

import io
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline
from PIL import Image

from engine.images.metadata import parse_parameters, read_parameters
from engine.protocol import (
    Accepted,
    Cancel,
    ErrorKind,
    JobError,
    JobKind,
    ListModels,
    LoadModel,
    ModelRef,
    ModelsReply,
    Progress,
    Result,
    RunBatch,
    UnloadModel,
)
from engine.worker import Worker
from tests.engine.helpers import Recorder, engine_settings, job, pixels, run
from tests.fixtures.tiny_models import TinyModels


def test_events_of_a_job_in_order(worker: Worker, recorder: Recorder, t2i_model: ModelRef) -> None:
    run(worker, job(t2i_model, steps=4, seeds=(1, 2)))
    kinds = [type(e) for e in recorder.events]
    assert kinds == [Accepted, Progress, Progress, Progress, Progress, Result]
    steps = recorder.progress(1)
    assert [(p.step, p.total_steps) for p in steps] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    # Previews for the steps before the last; the result follows the last at once.
    for progress in steps[:-1]:
        assert progress.preview_png is not None
        with Image.open(io.BytesIO(progress.preview_png)) as preview:
            assert preview.size == (8, 8)  # the latents' size: a 64x64 image / 8
    assert steps[-1].preview_png is None
    result = recorder.result(1)
    assert [image.seed for image in result.images] == [1, 2]
    assert not any(image.nsfw for image in result.images)
    assert result.model_revision is None  # a local folder has no commit
    assert result.seconds > 0


def test_no_previews_when_not_asked(
    worker: Worker, recorder: Recorder, t2i_model: ModelRef
) -> None:
    run(worker, job(t2i_model, preview=False))
    assert all(p.preview_png is None for p in recorder.progress(1))


def test_progress_is_throttled_but_keeps_the_last_step(
    tiny_models: TinyModels, recorder: Recorder, t2i_model: ModelRef
) -> None:
    worker = Worker(engine_settings(tiny_models, progress_interval_s=60.0), recorder)
    run(worker, job(t2i_model, steps=6))
    assert [p.step for p in recorder.progress(1)] == [1, 6]


def test_png_carries_parameters(worker: Worker, recorder: Recorder, t2i_model: ModelRef) -> None:
    run(
        worker,
        job(
            t2i_model,
            prompt="a lighthouse, at dusk",
            negative_prompt="fog",
            seeds=(99,),
            guidance=5.0,
            scheduler="dpmpp_2m_karras",
        ),
    )
    text = read_parameters(recorder.result(1).images[0].png)
    assert text is not None
    assert text.splitlines()[0] == "a lighthouse, at dusk"
    fields = parse_parameters(text)
    assert fields["prompt"] == "a lighthouse, at dusk"
    assert fields["negative_prompt"] == "fog"
    assert fields["Steps"] == "3"
    assert fields["Sampler"] == "DPM++ 2M Karras"
    assert fields["CFG scale"] == "5.0"
    assert fields["Seed"] == "99"
    assert fields["Size"] == "64x64"
    assert fields["Model"] == "tiny-sd"


def test_cancel_while_running_interrupts_the_pipeline(
    worker: Worker, recorder: Recorder, t2i_model: ModelRef
) -> None:
    def cancel_at_step_two(event: Any) -> None:
        if isinstance(event, Progress) and event.step == 2:
            worker.submit(Cancel(job_id=1))

    recorder.on_event = cancel_at_step_two
    run(worker, job(t2i_model, steps=20))
    error = recorder.error(1)
    assert error.kind is ErrorKind.CANCELLED
    assert not recorder.of(Result)
    # Interrupted: no step after the cancel was reported.
    assert [p.step for p in recorder.progress(1)] == [1, 2]


def test_cancelling_one_job_of_a_batch_leaves_the_others_alone(
    worker: Worker, recorder: Recorder, t2i_model: ModelRef
) -> None:
    run(worker, job(t2i_model, 3, seeds=(11,), steps=5))
    expected = pixels(recorder.result(3).images[0].png)
    recorder.events.clear()

    def cancel_job_2(event: Any) -> None:
        if isinstance(event, Progress) and event.job_id == 2 and event.step == 1:
            worker.cancel(2)

    recorder.on_event = cancel_job_2
    run(worker, job(t2i_model, 2, seeds=(10,), steps=5), job(t2i_model, 3, seeds=(11,), steps=5))
    assert recorder.error(2).kind is ErrorKind.CANCELLED
    assert not recorder.of(Result, 2)
    assert [p.step for p in recorder.progress(3)] == [1, 2, 3, 4, 5]
    np.testing.assert_array_equal(pixels(recorder.result(3).images[0].png), expected)


def test_cancel_before_the_job_starts(
    worker: Worker, recorder: Recorder, t2i_model: ModelRef
) -> None:
    worker.submit(RunBatch(jobs=(job(t2i_model, 1), job(t2i_model, 2))))
    worker.submit(Cancel(job_id=1))
    worker.submit(Cancel(job_id=12345))  # unknown: ignored
    worker.serve(until_idle=True)
    assert recorder.error(1).kind is ErrorKind.CANCELLED
    assert not recorder.of(Accepted, 1)
    assert recorder.result(2)


def _fail_with_oom(monkeypatch: pytest.MonkeyPatch, when: Any) -> list[int]:
    """Make text-to-image calls raise OutOfMemoryError when ``when(images)`` holds."""
    real_call = StableDiffusionPipeline.__call__
    calls: list[int] = []

    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        images = len(kwargs["prompt"])
        calls.append(images)
        if when(images):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_call(self, *args, **kwargs)

    monkeypatch.setattr(StableDiffusionPipeline, "__call__", call)
    return calls


def test_out_of_memory_fails_the_job_and_the_engine_keeps_serving(
    monkeypatch: pytest.MonkeyPatch, worker: Worker, recorder: Recorder, t2i_model: ModelRef
) -> None:
    _fail_with_oom(monkeypatch, lambda images: images >= 4)
    run(worker, job(t2i_model, 1, seeds=(1, 2, 3, 4), width=128, height=96))
    error = recorder.error(1)
    assert error.kind is ErrorKind.OUT_OF_MEMORY
    assert error.message == "ran out of GPU memory at 128x96 with 4 images; try fewer or smaller"
    run(worker, job(t2i_model, 2, seeds=(1,)))
    assert recorder.result(2)


def test_out_of_memory_in_a_batch_retries_each_job_alone(
    monkeypatch: pytest.MonkeyPatch, worker: Worker, recorder: Recorder, t2i_model: ModelRef
) -> None:
    run(worker, job(t2i_model, 1, seeds=(5,)), job(t2i_model, 2, seeds=(6, 7)))
    expected = {r.job_id: [pixels(i.png) for i in r.images] for r in recorder.of(Result)}
    recorder.events.clear()
    calls = _fail_with_oom(monkeypatch, lambda images: images > 2)
    run(worker, job(t2i_model, 1, seeds=(5,)), job(t2i_model, 2, seeds=(6, 7)))
    assert calls == [3, 1, 2]
    assert not recorder.of(JobError)
    for result in recorder.of(Result):
        for got, want in zip(result.images, expected[result.job_id], strict=True):
            np.testing.assert_array_equal(pixels(got.png), want)


def test_unexpected_errors_get_a_generic_message(
    monkeypatch: pytest.MonkeyPatch, worker: Worker, recorder: Recorder, t2i_model: ModelRef
) -> None:
    def broken(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internal detail at 0x7f")

    monkeypatch.setattr(StableDiffusionPipeline, "__call__", broken)
    run(worker, job(t2i_model))
    error = recorder.error(1)
    assert error.kind is ErrorKind.INTERNAL
    assert "secret" not in error.message
    assert error.message.startswith("something went wrong while making this image (error ")


def test_bad_jobs_are_refused_without_stopping_the_others(
    worker: Worker, recorder: Recorder, t2i_model: ModelRef
) -> None:
    run(worker, job(t2i_model, 1, width=100), job(t2i_model, 2), job(t2i_model, 3, steps=0))
    assert recorder.error(1) == JobError(
        job_id=1, kind=ErrorKind.BAD_INPUT, message="width must be a multiple of 8 (got 100)"
    )
    assert recorder.error(3).message == "steps must be from 1 to 100 (got 0)"
    assert recorder.result(2)


def test_unreadable_inpainting_input(
    tmp_path: Any, worker: Worker, recorder: Recorder, inpaint_model: ModelRef
) -> None:
    (tmp_path / "in.png").write_bytes(b"not an image")
    Image.new("L", (64, 64), 255).save(tmp_path / "mask.png")
    spec = job(
        inpaint_model,
        kind=JobKind.INPAINT,
        image_path=str(tmp_path / "in.png"),
        mask_path=str(tmp_path / "mask.png"),
    )
    run(worker, spec)
    assert recorder.error(1).message == "the image could not be read as an image"


def test_missing_model(worker: Worker, recorder: Recorder, t2i_model: ModelRef) -> None:
    missing = ModelRef(name="nowhere", source="no-such-org/no-such-model")
    run(worker, job(missing, 1), job(t2i_model, 2))
    assert recorder.error(1) == JobError(
        job_id=1, kind=ErrorKind.MODEL_UNAVAILABLE, message="could not load the model nowhere"
    )
    assert recorder.result(2)


def test_text_to_image_on_an_inpainting_checkpoint(
    worker: Worker, recorder: Recorder, inpaint_model: ModelRef
) -> None:
    run(worker, job(inpaint_model))
    error = recorder.error(1)
    assert error.kind is ErrorKind.BAD_INPUT
    assert "inpainting model" in error.message


def test_model_requests(
    worker: Worker, recorder: Recorder, t2i_model: ModelRef, inpaint_model: ModelRef
) -> None:
    worker.handle(LoadModel(request_id=1, model=t2i_model, kind=JobKind.TEXT_TO_IMAGE))
    worker.handle(LoadModel(request_id=2, model=inpaint_model, kind=JobKind.INPAINT))
    worker.submit(ListModels(request_id=3))  # answered at once, even while a batch runs
    worker.handle(UnloadModel(request_id=4, model=ModelRef(name="tiny-sd", source="")))
    worker.handle(UnloadModel(request_id=5, model=t2i_model))
    worker.handle(LoadModel(request_id=6, model=inpaint_model, kind=JobKind.TEXT_TO_IMAGE))
    replies = {r.request_id: r for r in recorder.of(ModelsReply)}
    assert replies[1].ok and replies[1].message == "tiny-sd is loaded"
    assert [m.kind for m in replies[2].loaded] == [JobKind.TEXT_TO_IMAGE, JobKind.INPAINT]
    assert [m.model for m in replies[3].loaded] == [t2i_model, inpaint_model]
    assert all(m.bytes > 1_000_000 for m in replies[3].loaded)
    assert replies[4].ok  # matched by name
    assert [m.model for m in replies[4].loaded] == [inpaint_model]
    assert not replies[5].ok and replies[5].message == "tiny-sd was not loaded"
    assert not replies[6].ok and "inpainting model" in replies[6].message
    assert [m.model for m in replies[6].loaded] == [inpaint_model]  # it was loaded before


def test_safety_checker_flags_and_obscures(
    tiny_models: TinyModels, worker: Worker, recorder: Recorder, t2i_model: ModelRef
) -> None:
    from engine.images.safety import obscure

    run(worker, job(t2i_model, steps=3))
    clean = recorder.result(1).images[0]
    clean_previews = [p.preview_png for p in recorder.progress(1)]

    flagging = Recorder()
    strict = Worker(
        engine_settings(tiny_models, safety_checker=str(tiny_models.safety_checker_always)),
        flagging,
    )
    run(strict, job(t2i_model, steps=3))
    flagged = flagging.result(1).images[0]
    assert flagged.nsfw and not clean.nsfw
    with Image.open(io.BytesIO(clean.png)) as original:
        np.testing.assert_array_equal(pixels(flagged.png), np.asarray(obscure(original)))
    assert parse_parameters(read_parameters(flagged.png) or "")["Seed"] == "42"
    # Previews are obscured whatever the checker says (see the next test).
    assert [p.preview_png for p in flagging.progress(1)] == clean_previews


def test_previews_are_always_obscured_and_never_left_to_the_checker(
    worker: Worker, recorder: Recorder, t2i_model: ModelRef, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CLIP checker cannot judge a preview a few dozen pixels wide, even one that it passes
    (this one passes everything): every preview is obscured, and the checker sees only the
    full-size images."""
    from engine.images import preview

    made: list[Image.Image] = []
    checked: list[tuple[int, int]] = []
    latents_to_images, judge = preview.latents_to_images, worker.safety.judge

    def making(*args: Any) -> list[Image.Image]:
        images = latents_to_images(*args)
        made.extend(images)
        return images

    def checking(images: list[torch.Tensor]) -> tuple[list[bool], list[float | None]]:
        checked.extend((int(image.shape[2]), int(image.shape[1])) for image in images)
        return judge(images)

    monkeypatch.setattr(preview, "latents_to_images", making)
    monkeypatch.setattr(worker.safety, "judge", checking)
    run(worker, job(t2i_model, steps=3, width=256, height=256))
    shown = [p.preview_png for p in recorder.progress(1) if p.preview_png is not None]
    assert len(shown) == len(made) == 2
    for png, raw in zip(shown, made, strict=True):
        assert raw.size == (32, 32)  # the latents' size
        np.testing.assert_array_equal(pixels(png), np.asarray(preview.obscured(raw)))
        assert not np.array_equal(pixels(png), np.asarray(raw))
    assert checked == [(256, 256)]  # the result only


def test_submitted_batch_runs_when_served(
    worker: Worker, recorder: Recorder, t2i_model: ModelRef
) -> None:
    worker.submit(RunBatch(jobs=(replace(job(t2i_model), job_id=8),)))
    worker.serve(until_idle=True)
    assert recorder.result(8)


def test_every_job_ends_even_when_something_unexpected_breaks(
    monkeypatch: pytest.MonkeyPatch, worker: Worker, recorder: Recorder, t2i_model: ModelRef
) -> None:
    def broken_registry(ref: ModelRef) -> Any:
        raise KeyError("surprise")

    monkeypatch.setattr(worker.registry, "get", broken_registry)
    run(worker, job(t2i_model, 1), job(t2i_model, 2, width=128))
    for job_id in (1, 2):
        assert recorder.error(job_id).kind is ErrorKind.INTERNAL


def test_cancel_while_the_model_loads(
    monkeypatch: pytest.MonkeyPatch, worker: Worker, recorder: Recorder, t2i_model: ModelRef
) -> None:
    real_get = worker.registry.get

    def slow_load(ref: ModelRef) -> Any:
        worker.submit(Cancel(job_id=1))
        return real_get(ref)

    monkeypatch.setattr(worker.registry, "get", slow_load)
    run(worker, job(t2i_model, 1), job(t2i_model, 2))
    assert recorder.error(1).kind is ErrorKind.CANCELLED
    assert not recorder.of(Accepted, 1)
    assert recorder.result(2)


def test_result_pngs_use_the_compression_setting(
    tiny_models: TinyModels, t2i_model: ModelRef
) -> None:
    pngs = {}
    for level in (0, 9):
        recorder = Recorder()
        run(
            Worker(engine_settings(tiny_models, png_compress_level=level), recorder), job(t2i_model)
        )
        pngs[level] = recorder.result(1).images[0].png
    assert len(pngs[0]) > len(pngs[9])
    np.testing.assert_array_equal(pixels(pngs[0]), pixels(pngs[9]))

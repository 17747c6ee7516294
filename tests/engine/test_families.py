"""SDXL and FLUX.1 schnell in the worker: their own pipelines, what each refuses, previews."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import FluxPipeline, StableDiffusionXLPipeline
from PIL import Image

from engine.protocol import BOUNDS, ErrorKind, JobKind, ModelRef, Result
from engine.worker import Worker
from tests.engine.helpers import Recorder, job, pixels, run
from tests.engine.test_worker_images import _write_inpaint_inputs, same_cpu_kernels
from tests.fixtures.tiny_families import TinyFamilies


@pytest.fixture(scope="module")
def sdxl(tiny_families: TinyFamilies) -> ModelRef:
    return ModelRef(name="tiny-sdxl", source=str(tiny_families.sdxl))


@pytest.fixture(scope="module")
def flux(tiny_families: TinyFamilies) -> ModelRef:
    return ModelRef(name="tiny-flux", source=str(tiny_families.flux))


def _plain(pipeline_class: type, folder: Path, **arguments: object) -> np.ndarray:
    pipe = pipeline_class.from_pretrained(folder, use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    with same_cpu_kernels():
        image = pipe(
            generator=torch.Generator().manual_seed(7), width=64, height=64, **arguments
        ).images[0]
    return np.asarray(image.convert("RGB"))


def test_sdxl_runs_its_own_pipeline_with_previews(
    tiny_families: TinyFamilies, worker: Worker, recorder: Recorder, sdxl: ModelRef
) -> None:
    spec = job(sdxl, 1, prompt="a cat", negative_prompt="dog", seeds=(7,), guidance=6.0)
    run(worker, spec)
    made = pixels(recorder.result(1).images[0].png)
    expected = _plain(
        StableDiffusionXLPipeline,
        tiny_families.sdxl,
        prompt="a cat",
        negative_prompt="dog",
        num_inference_steps=3,
        guidance_scale=6.0,
    )
    np.testing.assert_array_equal(made, expected)
    previews = [p.preview_png for p in recorder.progress(1) if p.preview_png]
    assert previews  # the SDXL latent colours, obscured


def test_flux_schnell_runs_without_guidance_and_previews_its_packed_latents(
    tiny_families: TinyFamilies, worker: Worker, recorder: Recorder, flux: ModelRef
) -> None:
    spec = job(flux, 1, prompt="a cat", seeds=(7,), guidance=0.0, steps=3)
    run(worker, spec)
    made = pixels(recorder.result(1).images[0].png)
    expected = _plain(
        FluxPipeline,
        tiny_families.flux,
        prompt="a cat",
        num_inference_steps=3,
        max_sequence_length=256,
    )
    np.testing.assert_array_equal(made, expected)
    assert [p.preview_png for p in recorder.progress(1) if p.preview_png]


@pytest.mark.parametrize(
    ("family", "fields", "message"),
    [
        ("flux", {"negative_prompt": "blurry"}, "FLUX.1 schnell takes no negative prompt"),
        ("flux", {"guidance": 7.5}, "FLUX.1 schnell takes no guidance (it is guidance-distilled)"),
        ("flux", {"steps": 8}, "FLUX.1 schnell takes steps from 1 to 4 (got 8)"),
        ("flux", {"scheduler": "ddim"}, "FLUX.1 schnell runs only the Euler scheduler"),
        ("flux", {"prompt": "a (cat:1.4)"}, "FLUX.1 schnell does not read prompt weights"),
        # The tiny T5 spells "zebra" letter by letter: 50 of them are 300 tokens and the end
        # marker, past what T5 reads, so refused, not cut.
        (
            "flux",
            {"prompt": " ".join(["zebra"] * 50)},
            "FLUX.1 schnell reads at most 256 tokens of a prompt and yours is 301",
        ),
    ],
)
def test_options_a_family_does_not_take_are_refused_naming_it(
    worker: Worker,
    recorder: Recorder,
    request: pytest.FixtureRequest,
    family: str,
    fields: dict[str, object],
    message: str,
) -> None:
    model = request.getfixturevalue(family)
    values: dict[str, object] = {"guidance": 0.0 if family == "flux" else BOUNDS.guidance.default}
    run(worker, job(model, 1, **{**values, **fields}))
    error = recorder.error(1)
    assert error.kind is ErrorKind.BAD_INPUT and message in error.message
    assert not recorder.of(Result, 1) and not recorder.progress(1)


@pytest.mark.parametrize(
    ("family", "kind"),
    [
        ("sdxl", JobKind.IMAGE_TO_IMAGE),
        ("sdxl", JobKind.INPAINT),
        ("flux", JobKind.IMAGE_TO_IMAGE),
    ],
)
def test_families_start_from_a_picture_where_they_can(
    tmp_path: Path,
    worker: Worker,
    recorder: Recorder,
    request: pytest.FixtureRequest,
    family: str,
    kind: JobKind,
) -> None:
    picture = tmp_path / "start.png"
    Image.new("RGB", (64, 64), "orange").save(picture)
    fields: dict[str, object] = {"kind": kind, "image_path": str(picture), "steps": 4}
    if family == "flux":
        fields["guidance"] = 0.0
    else:  # SDXL reads weights and long prompts from a picture too (compel's embeddings)
        fields["prompt"] = "a (cat:1.3) " + " ".join(["cat"] * 80)
    if kind is JobKind.INPAINT:
        mask = tmp_path / "mask.png"
        Image.new("L", (64, 64), 255).save(mask)
        fields["mask_path"] = str(mask)
    else:
        fields["strength"] = 0.5
    run(worker, job(request.getfixturevalue(family), 1, **fields))
    (image,) = recorder.result(1).images
    assert pixels(image.png).shape == (64, 64, 3)


def test_flux_inpaints_on_its_text_to_image_weights_keeping_the_picture_outside_the_mask(
    tmp_path: Path, worker: Worker, recorder: Recorder, flux: ModelRef
) -> None:
    picture, mask = _write_inpaint_inputs(tmp_path)
    spec = job(
        flux,
        1,
        kind=JobKind.INPAINT,
        image_path=str(picture),
        mask_path=str(mask),
        guidance=0.0,
        steps=2,
        strength=0.8,
        mask_blend=0,
    )
    run(worker, spec)
    (image,) = recorder.result(1).images
    made = pixels(image.png)
    assert made.shape == (64, 64, 3)
    inside = np.asarray(Image.open(mask)) > 0
    kept = np.asarray(Image.open(picture).convert("RGB"))
    np.testing.assert_array_equal(made[~inside], kept[~inside])
    assert not np.array_equal(made[inside], kept[inside])  # the masked area was repainted
    entry = worker.registry.get(flux)  # no second copy of the weights
    assert entry.pipeline_for(JobKind.INPAINT).transformer is entry.base.transformer

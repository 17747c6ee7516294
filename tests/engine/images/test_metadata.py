"""PNG metadata in the AUTOMATIC1111 format, read back the way that web UI reads it."""

from __future__ import annotations

import io

from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from engine.images.metadata import (
    parameters_text,
    parse_parameters,
    png_with_parameters,
    read_parameters,
)
from engine.protocol import JobKind, JobSpec, ModelRef

MODEL = ModelRef(name="runwayml/stable-diffusion-v1-5", source="runwayml/stable-diffusion-v1-5")


def spec(**fields: object) -> JobSpec:
    values: dict[str, object] = {
        "job_id": 1,
        "kind": JobKind.TEXT_TO_IMAGE,
        "model": MODEL,
        "prompt": "a cat",
        "seeds": (1,),
    }
    values.update(fields)
    return JobSpec(**values)  # type: ignore[arg-type]


def test_the_web_ui_layout() -> None:
    text = parameters_text(
        spec(
            prompt="a castle, oil painting",
            negative_prompt="blurry",
            steps=30,
            guidance=7.5,
            scheduler="euler_a",
            width=512,
            height=768,
        ),
        seed=1234,
    )
    assert text == (
        "a castle, oil painting\n"
        "Negative prompt: blurry\n"
        "Steps: 30, Sampler: Euler a, CFG scale: 7.5, Seed: 1234, Size: 512x768, "
        "Model: runwayml/stable-diffusion-v1-5"
    )


def test_no_negative_line_without_a_negative_prompt_and_inpainting_strength() -> None:
    text = parameters_text(spec(kind=JobKind.INPAINT, strength=0.75), seed=3, model_revision="abc")
    assert text.splitlines()[1].startswith("Steps: 30, Sampler: Euler, CFG scale: 7.5, Seed: 3")
    assert text.endswith("Model revision: abc, Denoising strength: 0.75")


def test_values_with_commas_are_quoted() -> None:
    named = ModelRef(name="my model, v2: final", source="x")
    text = parameters_text(spec(model=named), seed=1)
    assert 'Model: "my model, v2: final"' in text
    assert parse_parameters(text)["Model"] == "my model, v2: final"


prompts = (
    st.text(st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=80)
    .map(str.strip)
    .filter(lambda p: p and not p.startswith("Negative prompt:"))
)


@settings(max_examples=40, deadline=None)
@given(
    prompt=prompts,
    negative=st.one_of(st.just(""), prompts),
    seed=st.integers(0, 2**32 - 1),
    steps=st.integers(1, 100),
    guidance=st.sampled_from([0.0, 1.0, 4.5, 7.5, 30.0]),
)
def test_round_trip_through_a_png(
    prompt: str, negative: str, seed: int, steps: int, guidance: float
) -> None:
    job = spec(prompt=prompt, negative_prompt=negative, steps=steps, guidance=guidance)
    png = png_with_parameters(Image.new("RGB", (8, 8)), parameters_text(job, seed))
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG"
    fields = parse_parameters(read_parameters(png) or "")
    assert fields["prompt"] == prompt
    assert fields["negative_prompt"] == negative
    assert fields["Seed"] == str(seed)
    assert fields["Steps"] == str(steps)
    assert float(fields["CFG scale"]) == guidance
    assert fields["Sampler"] == "Euler"
    assert fields["Size"] == "512x512"


def test_every_compression_level_keeps_the_pixels_and_the_parameters() -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    smooth = np.add.outer(np.arange(64), np.arange(64)).astype(np.uint8)
    pixels = np.stack([smooth, smooth.T, smooth // 2], axis=-1) + rng.integers(0, 3, (64, 64, 3))
    image = Image.fromarray(pixels.astype(np.uint8))
    text = parameters_text(spec(), 7)
    sizes = {}
    for level in (0, 1, 6, 9):
        png = png_with_parameters(image, text, level)
        sizes[level] = len(png)
        with Image.open(io.BytesIO(png)) as decoded:
            assert np.array_equal(np.asarray(decoded), pixels)
        assert read_parameters(png) == text
    assert sizes[0] > sizes[1] > sizes[9]

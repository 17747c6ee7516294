"""The engine's own input checks, with the precise messages users see."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from engine.protocol import BOUNDS, JobKind, JobSpec, ModelRef
from engine.settings import EngineSettings
from engine.tasks.checks import BadInput, check_job, load_inpaint_inputs

SETTINGS = EngineSettings(_env_file=None)  # type: ignore[call-arg]
MODEL = ModelRef(name="m", source="org/m")


def spec(**fields: Any) -> JobSpec:
    values: dict[str, Any] = {
        "job_id": 1,
        "kind": JobKind.TEXT_TO_IMAGE,
        "model": MODEL,
        "prompt": "a cat",
        "seeds": (1,),
    }
    values.update(fields)
    return JobSpec(**values)


def test_a_good_job_passes() -> None:
    check_job(spec(width=1024, height=64, steps=100, guidance=30.0, seeds=(0, 2**32 - 1)), SETTINGS)


def test_the_engine_takes_exactly_the_protocols_bounds() -> None:
    """No setting of the engine's own widens or narrows them: the bot's LIMITS_* narrow."""
    most = spec(
        width=BOUNDS.side.max,
        height=BOUNDS.side.min,
        steps=BOUNDS.steps.max,
        guidance=BOUNDS.guidance.max,
        seeds=tuple(range(BOUNDS.count.max)),
        prompt="x" * BOUNDS.prompt_chars.max,
    )
    check_job(most, SETTINGS)
    for fields in (
        {"steps": BOUNDS.steps.max + 1},
        {"guidance": BOUNDS.guidance.max + 0.5},
        {"seeds": tuple(range(BOUNDS.count.max + 1))},
        {"width": BOUNDS.side.max + BOUNDS.side_multiple},
        {"prompt": "x" * (BOUNDS.prompt_chars.max + 1)},
    ):
        with pytest.raises(BadInput):
            check_job(spec(**fields), SETTINGS)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"width": 500}, "width must be a multiple of 8 (got 500)"),
        ({"height": 1544}, "height must be between 64 and 1536 pixels (got 1544)"),
        ({"width": 56}, "width must be between 64 and 1536 pixels (got 56)"),
        ({"steps": 0}, "steps must be from 1 to 100 (got 0)"),
        ({"steps": 101}, "steps must be from 1 to 100 (got 101)"),
        ({"guidance": 30.5}, "guidance must be from 0 to 30 (got 30.5)"),
        ({"guidance": float("nan")}, "guidance must be a number"),
        ({"seeds": ()}, "a job needs at least one seed"),
        ({"seeds": (2**32,)}, "seeds must be whole numbers from 0 to 4294967295 (got 4294967296)"),
        ({"seeds": (-1,)}, "seeds must be whole numbers from 0 to 4294967295 (got -1)"),
        ({"seeds": tuple(range(5))}, "at most 4 images per job"),
        ({"scheduler": "heun"}, "unknown scheduler 'heun'; choose one of euler, euler_a"),
        ({"prompt": "x" * 1001}, "the prompt is longer than 1000 characters"),
        ({"negative_prompt": "x" * 1001}, "the negative prompt is longer than 1000 characters"),
        ({"model": ModelRef(name="m", source=" ")}, "no model was given"),
        (
            {"image_path": "a.png"},
            "an image or mask is only used for jobs that start from a picture",
        ),
        ({"kind": JobKind.INPAINT}, "inpainting needs an image and a mask"),
        (
            {"kind": JobKind.INPAINT, "image_path": "a", "mask_path": "b", "strength": 0.0},
            "strength must be from 0.01 to 1 (got 0.0)",
        ),
        (
            {"kind": JobKind.INPAINT, "image_path": "a", "mask_path": "b", "strength": 0.01},
            "steps × strength must give at least one denoising step",
        ),
        (
            {"kind": JobKind.INPAINT, "image_path": "a", "mask_prompt": "the sky " * 30},
            "the mask words are longer than 200 characters",
        ),
    ],
)
def test_refusals(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(BadInput) as refused:
        check_job(spec(**fields), SETTINGS)
    assert str(refused.value).startswith(message)


def inpaint_spec(tmp_path: Path, **fields: Any) -> JobSpec:
    return spec(
        kind=JobKind.INPAINT,
        image_path=str(tmp_path / "in.png"),
        mask_path=str(tmp_path / "mask.png"),
        width=64,
        height=96,
        **fields,
    )


def test_inpainting_inputs_are_resized_to_the_job(tmp_path: Path) -> None:
    Image.new("RGBA", (200, 300), (255, 0, 0, 128)).save(tmp_path / "in.png")
    Image.new("1", (20, 30), 1).save(tmp_path / "mask.png")
    image, mask = load_inpaint_inputs(inpaint_spec(tmp_path), SETTINGS)
    assert (image.mode, image.size) == ("RGB", (64, 96))
    assert (mask.mode, mask.size) == ("L", (64, 96))
    assert mask.getextrema() == (255, 255)


def test_missing_and_undecodable_inputs(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match=r"^the image file is missing$"):
        load_inpaint_inputs(inpaint_spec(tmp_path), SETTINGS)
    Image.new("RGB", (8, 8)).save(tmp_path / "in.png")
    (tmp_path / "mask.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(BadInput, match=r"^the mask could not be read as an image$"):
        load_inpaint_inputs(inpaint_spec(tmp_path), SETTINGS)


def test_too_many_input_pixels(tmp_path: Path) -> None:
    Image.new("RGB", (300, 300)).save(tmp_path / "in.png")
    Image.new("L", (8, 8)).save(tmp_path / "mask.png")
    small = EngineSettings(_env_file=None, max_input_pixels=256 * 256)  # type: ignore[call-arg]
    with pytest.raises(BadInput, match="the image is 300x300; at most 65536 pixels"):
        load_inpaint_inputs(inpaint_spec(tmp_path), small)

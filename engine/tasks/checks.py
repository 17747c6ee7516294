"""The engine's own checks on a job, before any tensor work.

The bot checks the same bounds; the engine checks again because it is the last line before the
GPU, and a spec can come from elsewhere (the command line, another client). Every message is
safe to show to a user as it is.
"""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from engine.protocol import MAX_SEED, SCHEDULERS, JobKind, JobSpec
from engine.settings import EngineSettings


class BadInput(ValueError):
    """A job the engine refuses; ``str(error)`` is the user-safe reason."""


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_side(name: str, value: object, low: int, high: int) -> None:
    if not _is_int(value):
        raise BadInput(f"{name} must be a whole number of pixels")
    assert isinstance(value, int)
    if value % 8:
        raise BadInput(f"{name} must be a multiple of 8 (got {value})")
    if not low <= value <= high:
        raise BadInput(f"{name} must be between {low} and {high} pixels (got {value})")


def check_job(spec: JobSpec, settings: EngineSettings) -> None:
    """Raise ``BadInput`` with a precise reason when ``spec`` cannot run here."""
    if not spec.model.source.strip():
        raise BadInput("no model was given")
    if len(spec.prompt) > settings.max_prompt_chars:
        raise BadInput(f"the prompt is longer than {settings.max_prompt_chars} characters")
    if len(spec.negative_prompt) > settings.max_prompt_chars:
        raise BadInput(f"the negative prompt is longer than {settings.max_prompt_chars} characters")
    if not spec.seeds:
        raise BadInput("a job needs at least one seed")
    if len(spec.seeds) > settings.max_images_per_job:
        raise BadInput(f"at most {settings.max_images_per_job} images per job")
    for seed in spec.seeds:
        if not _is_int(seed) or not 0 <= seed <= MAX_SEED:
            raise BadInput(f"seeds must be whole numbers from 0 to {MAX_SEED} (got {seed!r})")
    _check_side("width", spec.width, settings.min_size, settings.max_width)
    _check_side("height", spec.height, settings.min_size, settings.max_height)
    if not _is_int(spec.steps) or not 1 <= spec.steps <= settings.max_steps:
        raise BadInput(f"steps must be from 1 to {settings.max_steps} (got {spec.steps})")
    guidance = spec.guidance
    if not isinstance(guidance, int | float) or not math.isfinite(guidance):
        raise BadInput("guidance must be a number")
    if not settings.min_guidance <= guidance <= settings.max_guidance:
        raise BadInput(
            f"guidance must be from {settings.min_guidance:g} to {settings.max_guidance:g} "
            f"(got {guidance:g})"
        )
    if spec.scheduler not in SCHEDULERS:
        names = ", ".join(SCHEDULERS)
        raise BadInput(f"unknown scheduler {spec.scheduler!r}; choose one of {names}")
    if spec.kind is JobKind.INPAINT:
        words = (spec.mask_prompt or "").strip()
        if not spec.image_path or not (spec.mask_path or words):
            raise BadInput("inpainting needs an image and a mask (a mask file or mask words)")
        if spec.mask_path and words:
            raise BadInput("give the area to repaint as a mask file or as mask words, not both")
        if len(words) > settings.max_prompt_chars:
            raise BadInput(f"the mask words are longer than {settings.max_prompt_chars} characters")
        strength = spec.strength
        if not isinstance(strength, int | float) or not 0 < strength <= 1:
            raise BadInput(f"strength must be above 0 and at most 1 (got {strength})")
        if int(spec.steps * strength) < 1:
            raise BadInput("steps × strength must give at least one denoising step")
    elif spec.image_path or spec.mask_path or spec.mask_prompt:
        raise BadInput("an image or mask is only used for inpainting")


def _open_image(path: str, what: str, settings: EngineSettings) -> Image.Image:
    file = Path(path)
    if not file.is_file():
        raise BadInput(f"the {what} file is missing")
    try:
        with Image.open(file) as image:
            width, height = image.size
            if width * height > settings.max_input_pixels:
                raise BadInput(
                    f"the {what} is {width}x{height}; at most {settings.max_input_pixels} "
                    "pixels are accepted"
                )
            image.load()
            return image.copy()
    except BadInput:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
        raise BadInput(f"the {what} could not be read as an image") from error


def load_inpaint_inputs(
    spec: JobSpec, settings: EngineSettings
) -> tuple[Image.Image, Image.Image | None]:
    """The picture (RGB) and mask (L, white = repaint), resized to the job's size.

    The mask is None when the job names the area in words (``mask_prompt``): the worker makes
    it from the resized picture.
    """
    assert spec.image_path  # check_job ran first
    image = _open_image(spec.image_path, "image", settings).convert("RGB")
    size = (spec.width, spec.height)
    if image.size != size:
        image = image.resize(size, Image.Resampling.LANCZOS)
    if not spec.mask_path:
        return image, None
    mask = _open_image(spec.mask_path, "mask", settings).convert("L")
    if mask.size != size:
        mask = mask.resize(size, Image.Resampling.BILINEAR)
    return image, mask

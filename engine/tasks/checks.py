"""The engine's own checks on a job, before any tensor work.

The bounds are ``engine.protocol.BOUNDS``, which the bot checks too (or a narrower copy of them,
from its ``LIMITS_*`` settings), so a job the bot accepted always passes here. The engine checks
again because it is the last line before the GPU, and a spec can come from elsewhere (the
command line, another client). Every message is safe to show to a user as it is.
"""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from engine.prompt_syntax import PromptSyntaxError, is_plain, loras, parse
from engine.protocol import (
    BOUNDS,
    FAMILIES,
    SCHEDULERS,
    AdapterKind,
    Bound,
    Family,
    JobKind,
    JobSpec,
    number_text,
)
from engine.settings import EngineSettings


class BadInput(ValueError):
    """A job the engine refuses; ``str(error)`` is the user-safe reason."""


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_side(name: str, value: object) -> None:
    if not _is_int(value):
        raise BadInput(f"{name} must be a whole number of pixels")
    assert isinstance(value, int)
    if value % BOUNDS.side_multiple:
        raise BadInput(f"{name} must be a multiple of {BOUNDS.side_multiple} (got {value})")
    if value not in BOUNDS.side:
        raise BadInput(
            f"{name} must be between {BOUNDS.side.min} and {BOUNDS.side.max} pixels (got {value})"
        )


def _range(bound: Bound[int] | Bound[float]) -> str:
    return f"from {number_text(bound.min)} to {number_text(bound.max)}"


def _check_length(what: str, text: str, bound: Bound[int]) -> None:
    if len(text) > bound.max:
        raise BadInput(f"{what} longer than {bound.max} characters")


def _check_syntax(what: str, text: str) -> None:
    """The web UI's weights and brackets must read (``engine.prompt_syntax``)."""
    try:
        parse(text)
    except PromptSyntaxError as error:
        raise BadInput(f"{what} {error.reason}") from None


def check_job(spec: JobSpec, settings: EngineSettings) -> None:
    """Raise ``BadInput`` with a precise reason when ``spec`` cannot run here."""
    if not spec.model.source.strip():
        raise BadInput("no model was given")
    _check_length("the prompt is", spec.prompt, BOUNDS.prompt_chars)
    _check_length("the negative prompt is", spec.negative_prompt, BOUNDS.prompt_chars)
    _check_syntax("the prompt", spec.prompt)
    _check_syntax("the negative prompt", spec.negative_prompt)
    _check_adapters(spec)
    if not spec.seeds:
        raise BadInput("a job needs at least one seed")
    if len(spec.seeds) > BOUNDS.count.max:
        raise BadInput(f"at most {BOUNDS.count.max} images per job")
    for seed in spec.seeds:
        if not _is_int(seed) or seed not in BOUNDS.seed:
            raise BadInput(f"seeds must be whole numbers {_range(BOUNDS.seed)} (got {seed!r})")
    _check_side("width", spec.width)
    _check_side("height", spec.height)
    if not _is_int(spec.steps) or spec.steps not in BOUNDS.steps:
        raise BadInput(f"steps must be {_range(BOUNDS.steps)} (got {spec.steps})")
    guidance = spec.guidance
    if not isinstance(guidance, int | float) or not math.isfinite(guidance):
        raise BadInput("guidance must be a number")
    if guidance not in BOUNDS.guidance:
        raise BadInput(f"guidance must be {_range(BOUNDS.guidance)} (got {guidance:g})")
    if spec.scheduler not in SCHEDULERS:
        names = ", ".join(SCHEDULERS)
        raise BadInput(f"unknown scheduler {spec.scheduler!r}; choose one of {names}")
    if spec.kind is JobKind.INPAINT:
        words = (spec.mask_prompt or "").strip()
        if not spec.image_path or not (spec.mask_path or words):
            raise BadInput("inpainting needs an image and a mask (a mask file or mask words)")
        if spec.mask_path and words:
            raise BadInput("give the area to repaint as a mask file or as mask words, not both")
        _check_length("the mask words are", words, BOUNDS.mask_prompt_chars)
        _check_strength(spec, BOUNDS.strength)
    elif spec.kind in (JobKind.IMAGE_TO_IMAGE, JobKind.DEPTH_TO_IMAGE):
        if not spec.image_path:
            what = spec.kind.value.replace("_", "-")
            raise BadInput(f"{what} needs a picture to start from")
        if spec.mask_path or spec.mask_prompt:
            raise BadInput("a mask is only used for inpainting")
        # Depth-to-image noises the picture the same way image-to-image does.
        _check_strength(spec, BOUNDS.image_strength)
    elif spec.kind is JobKind.UPSCALE:
        _check_upscale(spec)
    elif spec.image_path or spec.mask_path or spec.mask_prompt:
        raise BadInput("an image or mask is only used for jobs that start from a picture")


def _check_upscale(spec: JobSpec) -> None:
    """A picture and no mask, small enough that four times its sides fit the memory budget,
    and a noise level the upscaler was trained for."""
    if not spec.image_path:
        raise BadInput("upscaling needs a picture to upscale")
    if spec.mask_path or spec.mask_prompt:
        raise BadInput("a mask is only used for inpainting")
    pixels = spec.width * spec.height
    if pixels > BOUNDS.upscale_pixels.max:
        raise BadInput(
            f"the picture to upscale is {spec.width}×{spec.height}; at most "
            f"{BOUNDS.upscale_pixels.max:,} pixels (896×512) can be upscaled"
        )
    level = spec.noise_level
    if not _is_int(level) or level not in BOUNDS.noise_level:
        raise BadInput(f"noise_level must be {_range(BOUNDS.noise_level)} (got {level})")


def _check_adapters(spec: JobSpec) -> None:
    """The job's LoRAs are exactly the prompt's ``<lora:name:weight>``s; embeddings have tokens."""
    if loras(spec.negative_prompt):
        raise BadInput("LoRAs go in the prompt, not in the negative prompt")
    try:
        asked = [(use.name, use.weight) for use in loras(spec.prompt)]
    except PromptSyntaxError as error:
        raise BadInput(f"the prompt {error.reason}") from None
    given = [(a.name, a.weight) for a in spec.adapters if a.kind is AdapterKind.LORA]
    if asked != given:
        raise BadInput("the job's LoRAs do not match the <lora:…> of its prompt")
    if len(given) > BOUNDS.loras_per_job:
        raise BadInput(f"at most {BOUNDS.loras_per_job} LoRAs per job")
    for adapter in spec.adapters:
        if adapter.kind is AdapterKind.EMBEDDING and not adapter.token.strip():
            raise BadInput(f"the embedding {adapter.name} has no token")


def check_family(spec: JobSpec, family: Family) -> None:
    """What the model's family does not take (``FAMILIES``), refused naming the family; run
    once the model is loaded, since the family is the loaded pipeline's."""
    traits = FAMILIES[family]
    if spec.kind not in traits.kinds:
        raise BadInput(f"{traits.label} models do not do {spec.kind.value.replace('_', '-')}")
    if spec.negative_prompt.strip() and not traits.negative_prompt:
        raise BadInput(f"{traits.label} takes no negative prompt")
    if spec.guidance != traits.default_guidance and traits.guidance is None:
        raise BadInput(f"{traits.label} takes no guidance (it is guidance-distilled)")
    if spec.steps not in traits.steps:
        raise BadInput(f"{traits.label} takes steps {_range(traits.steps)} (got {spec.steps})")
    if not traits.takes_scheduler(spec.scheduler):
        raise BadInput(
            f"{traits.label} runs only the {', '.join(SCHEDULERS[s] for s in traits.schedulers)} "
            "scheduler"
        )
    if not traits.weighted_prompts:
        for what, text in (("prompt", spec.prompt), ("negative prompt", spec.negative_prompt)):
            if not is_plain(parse(text)):
                raise BadInput(
                    f"{traits.label} does not read prompt weights; write the {what} without "
                    "(…), […] or (word:1.3)"
                )
    if not traits.embeddings and any(a.kind is AdapterKind.EMBEDDING for a in spec.adapters):
        raise BadInput(f"{traits.label} takes no embeddings")


def _check_strength(spec: JobSpec, bound: Bound[float]) -> None:
    """A strength within ``bound`` that leaves at least one of the job's steps to run (both
    pipelines run ``int(steps × strength)`` of them)."""
    strength = spec.strength
    if strength not in bound:
        raise BadInput(f"strength must be {_range(bound)} (got {strength})")
    if int(spec.steps * strength) < 1:
        raise BadInput("steps × strength must give at least one denoising step")


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


def load_picture(spec: JobSpec, settings: EngineSettings) -> Image.Image:
    """The job's picture (RGB) at the job's size."""
    assert spec.image_path  # check_job ran first
    image = _open_image(spec.image_path, "image", settings).convert("RGB")
    size = (spec.width, spec.height)
    if image.size != size:
        image = image.resize(size, Image.Resampling.LANCZOS)
    return image


def load_inpaint_inputs(
    spec: JobSpec, settings: EngineSettings
) -> tuple[Image.Image, Image.Image | None]:
    """The picture (RGB) and mask (L, white = repaint), resized to the job's size.

    The mask is None when the job names the area in words (``mask_prompt``): the worker makes
    it from the resized picture.
    """
    image = load_picture(spec, settings)
    size = image.size
    if not spec.mask_path:
        return image, None
    mask = _open_image(spec.mask_path, "mask", settings).convert("L")
    if mask.size != size:
        mask = mask.resize(size, Image.Resampling.BILINEAR)
    return image, mask

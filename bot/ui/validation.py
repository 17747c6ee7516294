"""Checks on what users type, with messages in their terms.

The bounds are ``engine.protocol.BOUNDS`` (or an operator's narrower copy of it, from the
``LIMITS_*`` settings): nothing here declares a number of its own. The slash-command option
types (``bot.ui.options``) call these checks, so Discord shows the same ranges that are checked
here; a client can send anything, so every value is checked before a job exists. A failed check
raises :class:`UserInputError` and nothing is written.
"""

from __future__ import annotations

import random
import re
import unicodedata

from bot.ui.errors import UserInputError
from engine.prompt_syntax import PromptSyntaxError, lora_token, loras, parse
from engine.protocol import BOUNDS, SCHEDULERS, SIZES, Bound, Bounds, Size, number_text

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Bidirectional controls (embeddings, overrides, isolates, marks) reorder the text around them
# when it is shown: a caption could be made to read backwards, and quoted into a script they
# hide code from its reader ("Trojan Source"). They mean nothing to the text encoder.
BIDI_CONTROLS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# Characters that take no room: zero-width space, word joiner, byte order mark. Dropped too;
# the zero-width (non-)joiners stay, as emoji sequences and some scripts need them.
_ZERO_WIDTH = re.compile("[\u200b\u2060\ufeff]")
# Letters that draw nothing (Hangul fillers, the blank Braille pattern): a prompt of only these
# (or of format characters such as the joiners) looks empty to its writer and to the channel.
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def without_bidi_controls(text: str) -> str:
    """``text`` without bidirectional controls: for text stored before prompts were cleaned."""
    return BIDI_CONTROLS.sub("", text)


def _shows_anything(text: str) -> bool:
    return any(
        not c.isspace() and c not in _BLANK_LETTERS and unicodedata.category(c) != "Cf"
        for c in text
    )


def clean_prompt(text: str | None, *, what: str, max_chars: int, required: bool) -> str:
    """Normalise a prompt: control characters and bidirectional controls dropped, whitespace
    collapsed, length bounded; a prompt with nothing visible in it counts as empty."""
    text = _ZERO_WIDTH.sub("", without_bidi_controls(_CONTROL.sub(" ", text or "")))
    # After the removals: a dropped character may have separated a letter from its accent.
    text = unicodedata.normalize("NFC", text)
    text = " ".join(text.split()) if _shows_anything(text) else ""
    if required and not text:
        raise UserInputError(
            f"The {what} is empty: describe the image you want, "
            "for example “a watercolor fox in the snow”."
        )
    if len(text) > max_chars:
        raise UserInputError(
            f"The {what} is {len(text)} characters long; the most is {max_chars}. "
            "A few well-chosen words steer the picture more than many."
        )
    return text


def check_prompt_syntax(text: str, *, what: str) -> str:
    """``text`` when its weights and brackets read (``engine.prompt_syntax``): the web UI's
    ``(word:1.3)``; a mistake is refused naming the place, before a job exists."""
    try:
        parse(text)
    except PromptSyntaxError as error:
        raise UserInputError(f"The {what} {error.reason}") from None
    return text


def lora_option_tokens(text: str | None) -> str:
    """The ``loras`` option (“ink:0.8, film”) as the prompt's ``<lora:ink:0.8> <lora:film:1>``;
    a weight left out is full strength. Refused, naming the item, when one does not read."""
    tokens = []
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, _, weight = item.strip().partition(":")
        token = f"<lora:{name.strip()}:{weight.strip()}>" if weight else f"<lora:{name.strip()}>"
        try:
            (use,) = loras(token)
        except (PromptSyntaxError, ValueError):
            raise UserInputError(
                f"The loras option reads “{item.strip()}” as no LoRA: write names with "
                f"weights from {number_text(BOUNDS.lora_weight.min)} to "
                f"{number_text(BOUNDS.lora_weight.max)}, like “ink:0.8, film:0.5”."
            ) from None
        tokens.append(lora_token(use.name, use.weight))
    return " ".join(tokens)


def with_loras(prompt: str, loras_option: str | None, max_chars: int) -> str:
    """``prompt`` with the ``loras`` option's tokens at its end, where the stored prompt (and
    so Details, history, a reroll and the PNG's metadata) carries them."""
    tokens = lora_option_tokens(loras_option)
    if not tokens:
        return prompt
    joined = f"{prompt} {tokens}"
    if len(joined) > max_chars:
        raise UserInputError(
            f"The prompt with its LoRAs is {len(joined)} characters long; the most is "
            f"{max_chars}. Shorten the prompt or name fewer LoRAs."
        )
    return check_prompt_syntax(joined, what="prompt")


def _within(name: str, value: float, bound: Bound[int] | Bound[float], hint: str = "") -> None:
    """Refuse ``value`` outside ``bound``: “steps must be between 1 and 100 (you gave 0).”"""
    if value in bound:
        return
    kind = "a number " if isinstance(bound.min, float) else ""
    given = value if isinstance(value, int) else number_text(value)
    raise UserInputError(
        f"{name} must be {kind}between {number_text(bound.min)} and {number_text(bound.max)} "
        f"(you gave {given}){hint}."
    )


def check_steps(steps: int | None, bounds: Bounds = BOUNDS) -> int:
    """Denoising steps within the bounds; the default when none are given."""
    if steps is None:
        return bounds.steps.default
    _within("steps", steps, bounds.steps)
    return steps


def check_guidance(guidance: float | None, bounds: Bounds = BOUNDS) -> float:
    """A finite guidance scale within the bounds; the default when none is given."""
    if guidance is None:
        return bounds.guidance.default
    _within("guidance", guidance, bounds.guidance, "; 7 to 8.5 is typical")
    return float(guidance)


def check_count(count: int | None, bounds: Bounds = BOUNDS) -> int:
    """How many images one job makes; the default when none is given."""
    if count is None:
        return bounds.count.default
    _within("count", count, bounds.count)
    return count


def check_seed(seed: int | None, bounds: Bounds = BOUNDS) -> int | None:
    """A seed within the bounds, or None (random seeds)."""
    if seed is not None:
        _within("seed", seed, bounds.seed)
    return seed


def check_strength(strength: float | None, bounds: Bounds = BOUNDS) -> float:
    """Inpainting strength within the bounds; the default when none is given."""
    if strength is None:
        return bounds.strength.default
    _within(
        "strength",
        strength,
        bounds.strength,
        "; 1 repaints the area from scratch, lower keeps more of what is there",
    )
    return float(strength)


def check_image_strength(strength: float | None, bounds: Bounds = BOUNDS) -> float:
    """Image-to-image strength within the bounds; the default when none is given."""
    if strength is None:
        return bounds.image_strength.default
    _within(
        "strength",
        strength,
        bounds.image_strength,
        "; low values keep the picture close, 1 keeps only a trace of it",
    )
    return float(strength)


def check_denoising_left(steps: int, strength: float) -> None:
    """Inpainting and image-to-image run ``int(steps × strength)`` steps; refuse settings
    that leave none."""
    if int(steps * strength) < 1:
        raise UserInputError(
            f"With strength {number_text(strength)} and {steps} step{'s' if steps != 1 else ''}, "
            "no denoising step is left (steps × strength must be at least 1); raise steps or "
            "strength."
        )


def steps_with_one_left(steps: int, strength: float) -> int:
    """``steps``, or the fewest more that leave one denoising step at ``strength`` (a Vary of
    a one-step result): the same loop as the engine's ``int(steps × strength)``."""
    if strength <= 0:
        raise ValueError("a strength of 0 leaves no step at any step count")
    while int(steps * strength) < 1:
        steps += 1  # at most 1 / strength rounds
    return steps


def check_size(size: str | None, bounds: Bounds = BOUNDS) -> Size:
    """The named size; the default when none is given."""
    key = size or bounds.size
    if key not in SIZES:
        raise UserInputError(f"size must be one of: {', '.join(SIZES)}.")
    return SIZES[key]


def check_scheduler(name: str | None, bounds: Bounds = BOUNDS) -> str:
    """A scheduler's wire name; the default when none is given."""
    key = name or bounds.scheduler
    if key not in SCHEDULERS:
        raise UserInputError(f"scheduler must be one of: {', '.join(SCHEDULERS.values())}.")
    return key


def seeds_for(seed: int | None, count: int, bounds: Bounds = BOUNDS) -> tuple[int, ...]:
    """The seed of each image: the given one and the next ones, or random ones."""
    top = bounds.seed.max
    if check_seed(seed, bounds) is None:
        return tuple(random.randint(bounds.seed.min, top) for _ in range(count))
    assert seed is not None
    # seed, seed+1, ... like most SD front ends, wrapping at the top.
    return tuple((seed + i) % (top + 1) for i in range(count))

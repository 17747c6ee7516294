"""Checks on what users type, with messages in their terms.

Discord enforces the ranges we declare on command options, but a client can send anything,
so every value is checked again here before a job exists. A failed check raises
:class:`UserInputError` and nothing is written.
"""

from __future__ import annotations

import math
import random
import re
import unicodedata
from dataclasses import dataclass

from bot.ui.errors import UserInputError
from engine.protocol import MAX_SEED, SCHEDULERS

MIN_STEPS, MAX_STEPS = 1, 100
MIN_GUIDANCE, MAX_GUIDANCE = 0.0, 30.0
MAX_COUNT = 4
DEFAULT_STEPS = 30
DEFAULT_GUIDANCE = 7.5
DEFAULT_SCHEDULER = "euler"


@dataclass(frozen=True)
class Size:
    width: int
    height: int
    label: str


# Sizes near the 512 px that SD 1.x was trained at, all multiples of 8 (the VAE's factor).
SIZES: dict[str, Size] = {
    "square": Size(512, 512, "Square 512×512"),
    "landscape": Size(768, 512, "Landscape 3:2, 768×512"),
    "portrait": Size(512, 768, "Portrait 2:3, 512×768"),
    "wide": Size(896, 512, "Wide 16:9, 896×512"),
    "tall": Size(512, 896, "Tall 9:16, 512×896"),
}
DEFAULT_SIZE = "square"

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean_prompt(text: str | None, *, what: str, max_chars: int, required: bool) -> str:
    """Normalise a prompt: control characters dropped, whitespace collapsed, length bounded."""
    text = unicodedata.normalize("NFC", text or "")
    text = _CONTROL.sub(" ", text)
    text = " ".join(text.split())
    if required and not text:
        raise UserInputError(
            f"The {what} is empty: describe the image you want, "
            "for example “a watercolor fox in the snow”."
        )
    if len(text) > max_chars:
        raise UserInputError(
            f"The {what} is {len(text)} characters long; the most is {max_chars}. "
            "Only the first 77 tokens (roughly 50–60 words) reach the model anyway."
        )
    return text


def check_steps(steps: int | None) -> int:
    if steps is None:
        return DEFAULT_STEPS
    if not MIN_STEPS <= steps <= MAX_STEPS:
        raise UserInputError(
            f"steps must be between {MIN_STEPS} and {MAX_STEPS} (you gave {steps})."
        )
    return steps


def check_guidance(guidance: float | None) -> float:
    if guidance is None:
        return DEFAULT_GUIDANCE
    if not math.isfinite(guidance) or not MIN_GUIDANCE <= guidance <= MAX_GUIDANCE:
        raise UserInputError(
            f"guidance must be a number between {MIN_GUIDANCE:g} and {MAX_GUIDANCE:g} "
            f"(you gave {guidance}); 7 to 8.5 is typical."
        )
    return float(guidance)


def check_count(count: int | None) -> int:
    if count is None:
        return 1
    if not 1 <= count <= MAX_COUNT:
        raise UserInputError(f"count must be between 1 and {MAX_COUNT} (you gave {count}).")
    return count


def check_size(size: str | None) -> Size:
    key = size or DEFAULT_SIZE
    if key not in SIZES:
        raise UserInputError(f"size must be one of: {', '.join(SIZES)}.")
    return SIZES[key]


def check_scheduler(name: str | None) -> str:
    key = name or DEFAULT_SCHEDULER
    if key not in SCHEDULERS:
        raise UserInputError(f"scheduler must be one of: {', '.join(SCHEDULERS.values())}.")
    return key


def seeds_for(seed: int | None, count: int) -> tuple[int, ...]:
    """The seed of each image: the given one and the next ones, or random ones."""
    if seed is None:
        return tuple(random.randint(0, MAX_SEED) for _ in range(count))
    if not 0 <= seed <= MAX_SEED:
        raise UserInputError(f"seed must be between 0 and {MAX_SEED} (you gave {seed}).")
    # seed, seed+1, ... like most SD front ends, wrapping at the top.
    return tuple((seed + i) % (MAX_SEED + 1) for i in range(count))

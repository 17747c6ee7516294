"""A new job's settings for its model's family: what it does not take is refused, naming the
family; what the user left out comes from the family (``engine.protocol.FAMILIES``).

A command tells which options the user typed (``NewImages.given``); the others hold the command's
defaults, which are Stable Diffusion 1.x's, and are replaced here by the family's own: FLUX.1
schnell's 4 steps, SDXL's megapixel sizes. A typed option the family does not take is refused
before anything is written, never silently dropped. The engine checks the same table again.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from bot.ui.errors import UserInputError
from bot.ui.validation import check_denoising_left
from engine.prompt_syntax import is_plain, parse
from engine.protocol import BOUNDS, FAMILIES, SCHEDULERS, SIZES, Bounds, Family, JobKind


def family_settings(
    family: Family,
    kind: JobKind,
    settings: dict[str, Any],
    given: Collection[str],
    bounds: Bounds = BOUNDS,
) -> dict[str, Any]:
    """``settings`` fitted to ``family``; ``given`` names the options the user typed.

    ``bounds`` are the operator's (``LIMITS_*``): a family's default steps never exceed them.
    Raises ``UserInputError`` for an option the family does not take.
    """
    traits = FAMILIES[family]
    label = traits.label
    if kind not in traits.kinds:
        raise UserInputError(f"{label} models do not do {kind.value.replace('_', '-')} here.")
    if family is Family.SD:
        return settings  # the commands' defaults are SD 1.x's (narrowed by LIMITS_*) already
    fitted = dict(settings)
    if fitted.get("negative_prompt") and not traits.negative_prompt:
        raise UserInputError(f"{label} takes no negative prompt; leave negative_prompt out.")
    if traits.guidance is None and "guidance" in given:
        raise UserInputError(
            f"{label} takes no guidance: it is guidance-distilled. Leave guidance out."
        )
    if "guidance" not in given:
        fitted["guidance"] = min(traits.default_guidance, bounds.guidance.max)
    if "steps" in given:
        steps = fitted["steps"]
        if steps not in traits.steps:
            raise UserInputError(
                f"steps must be between {traits.steps.min} and {traits.steps.max} for {label} "
                f"(you gave {steps})."
            )
    else:
        fitted["steps"] = min(traits.steps.default, bounds.steps.max)
    if "scheduler" in given and not traits.takes_scheduler(fitted["scheduler"]):
        only = ", ".join(SCHEDULERS[name] for name in traits.schedulers)
        raise UserInputError(f"{label} runs only its own sampler ({only}); leave scheduler out.")
    if "scheduler" not in given:
        fitted["scheduler"] = traits.schedulers[0]
    if not traits.weighted_prompts:
        for what in ("prompt", "negative_prompt"):
            if not is_plain(parse(fitted.get(what, ""))):
                raise UserInputError(
                    f"{label} does not read prompt weights such as (word:1.3); write the "
                    f"{what.replace('_', ' ')} without them."
                )
    if kind.takes_picture and fitted.get("strength") is not None:
        check_denoising_left(fitted["steps"], fitted["strength"])
    if "width" in fitted:
        fitted["width"], fitted["height"] = _family_size(traits.sizes, fitted, given, bounds)
    return fitted


def _family_size(
    sizes: dict[str, Any], fitted: dict[str, Any], given: Collection[str], bounds: Bounds
) -> tuple[int, int]:
    """The family's own pixels for the size the user picked by name (or the default one)."""
    picked = bounds.size
    if "size" in given:
        shape = (fitted["width"], fitted["height"])
        picked = next(
            (name for name, size in SIZES.items() if (size.width, size.height) == shape), picked
        )
    size = sizes[picked]
    return size.width, size.height

"""/compare's axes checked against the model's family (``engine.protocol.FAMILIES``).

The axes are parsed before the model is known (``bot.jobs.xy_values``, against the bot-wide
bounds); once the job service has looked the model up, each axis is checked again against what
that family takes: FLUX.1 schnell has no guidance to vary, steps only from 1 to 4 and one
sampler, so such an axis is refused plainly, naming the family, rather than run half-right. A
model axis compares models of one family only: their panels would not share sizes, steps or
guidance.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.jobs.xy_values import Axis
from bot.store.models import Model
from bot.ui.errors import UserInputError
from bot.ui.validation import check_denoising_left
from engine.protocol import FAMILIES, SCHEDULERS, Family

OPTIONS = ("x_values", "y_values")  # the option each axis was typed in, x first


def check_family_axes(axes: Sequence[Axis], family: Family) -> None:
    """Refuse an axis, or a value of one, that ``family`` does not take."""
    traits = FAMILIES[family]
    label = traits.label
    for option, axis in zip(OPTIONS, axes, strict=False):
        if axis.kind == "guidance" and traits.guidance is None:
            raise UserInputError(
                f"{label} takes no guidance: it is guidance-distilled. Compare another setting."
            )
        if axis.kind == "steps":
            bound = traits.steps
            for value in axis.values:
                if value not in bound:
                    raise UserInputError(
                        f"{option}: steps {value} is out of range for {label}; its steps are "
                        f"between {bound.min} and {bound.max}."
                    )
        if axis.kind == "scheduler":
            if len(traits.schedulers) == 1:
                only = SCHEDULERS[traits.schedulers[0]]
                raise UserInputError(
                    f"{label} runs only its own sampler ({only}): there are no schedulers to "
                    "compare. Compare another setting."
                )
            for value in axis.values:
                if not traits.takes_scheduler(str(value)):
                    raise UserInputError(
                        f"{option}: {label} does not run {SCHEDULERS.get(str(value), value)}."
                    )


def one_family(models: Sequence[Model]) -> Family:
    """The family every model of a model axis is of; refused, naming each, when they differ."""
    families = {model.family for model in models}
    if len(families) > 1:
        named = ", ".join(f"{m.name} ({FAMILIES[m.family].label})" for m in models)
        raise UserInputError(
            f"A model axis compares models of one family; these differ: {named}. Compare "
            "models of one family."
        )
    return models[0].family


def check_denoising_left_on_axes(axes: Sequence[Axis], steps: int, strength: float) -> None:
    """Image-to-image runs ``int(steps × strength)`` steps: every panel must keep one. ``steps``
    is the job's as its family fills it (FLUX.1 schnell's 4, not /imagine's SD default)."""
    steps_values = [steps]
    strengths = [strength]
    for axis in axes:
        if axis.kind == "steps":
            steps_values = [int(v) for v in axis.values]
        if axis.kind == "strength":
            strengths = [float(v) for v in axis.values]
    check_denoising_left(min(steps_values), min(strengths))

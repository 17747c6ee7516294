"""/compare's axes as typed: an axis name and a comma list of values, checked one by one.

The web UI's X/Y plot takes "5, 7.5, 12" for guidance and "Euler a, DDIM" for samplers; so do
we. Every value is checked against the bounds in force (``engine.protocol.BOUNDS``, or the
operator's narrower copy), and a refusal names the option and the value that failed, so a
student can fix one number instead of guessing. Model values are names, looked up (enabled,
of the right kind) by the job service, which knows the models table.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from bot.ui.errors import UserInputError
from engine.protocol import BOUNDS, SCHEDULERS, Bound, Bounds, number_text

Value = float | int | str

# The axes a grid can have, in the order the option offers them.
AXES = ("guidance", "steps", "scheduler", "seed", "strength", "model")
# Commas as typed on a Chinese keyboard too ("，", "、").
_SEPARATORS = re.compile(r"[,，、]")
MAX_VALUE_CHARS = 50  # one value as typed: a model's name is the longest there is


@dataclass(frozen=True)
class Axis:
    """One axis of a grid: what varies, and its values in the order typed."""

    kind: str
    values: tuple[Value, ...]


def _range(bound: Bound[int] | Bound[float]) -> str:
    return f"between {number_text(bound.min)} and {number_text(bound.max)}"


def _number(kind: str, text: str, option: str, bound: Bound[int] | Bound[float]) -> Value:
    """A guidance, steps, seed or strength value, within ``bound``."""
    whole = isinstance(bound.min, int)
    what = "whole numbers" if whole else "numbers"
    rule = f"{kind} values are {what} {_range(bound)}"
    try:
        value: Value = int(text) if whole else float(text)
    except ValueError:
        article = "a whole number" if whole else "a number"
        raise UserInputError(f"{option}: “{text}” is not {article}; {rule}.") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise UserInputError(f"{option}: “{text}” is not a number; {rule}.")
    if value not in bound:
        raise UserInputError(f"{option}: {kind} {text} is out of range; {rule}.")
    return value


def scheduler_key(text: str) -> str | None:
    """The wire name of a scheduler typed by its name or its label, any case ("Euler a")."""
    wanted = text.casefold()
    for key, label in SCHEDULERS.items():
        if wanted in (key.casefold(), label.casefold()):
            return key
    return None


def _value(kind: str, text: str, option: str, bounds: Bounds) -> Value:
    if kind == "guidance":
        return _number(kind, text, option, bounds.guidance)
    if kind == "steps":
        return _number(kind, text, option, bounds.steps)
    if kind == "seed":
        return _number(kind, text, option, bounds.seed)
    if kind == "strength":
        return _number(kind, text, option, bounds.image_strength)
    if kind == "scheduler":
        key = scheduler_key(text)
        if key is None:
            known = ", ".join(SCHEDULERS.values())
            raise UserInputError(f"{option}: there is no scheduler “{text}”; they are: {known}.")
        return key
    if kind == "model":
        return text
    raise UserInputError(f"There is no axis “{kind}”; the axes are: {', '.join(AXES)}.")


def parse_axis(kind: str, text: str, option: str, bounds: Bounds = BOUNDS) -> Axis:
    """The axis ``kind`` with the values of ``text``, a comma list typed in option ``option``
    (“x_values”); a clear refusal naming the first bad value otherwise."""
    items = [item.strip() for item in _SEPARATORS.split(text)]
    items = [item for item in items if item]  # "5, 7.5," : a trailing comma is no value
    if not items:
        raise UserInputError(f"{option} is empty: give {kind} values separated by commas.")
    for item in items:
        if len(item) > MAX_VALUE_CHARS:
            raise UserInputError(
                f"{option}: a value is {len(item)} characters long; the most is {MAX_VALUE_CHARS}."
            )
    values = [_value(kind, item, option, bounds) for item in items]
    seen: dict[Value, str] = {}
    for item, value in zip(items, values, strict=True):
        key = value.casefold() if isinstance(value, str) else value
        if key in seen:
            raise UserInputError(
                f"{option}: “{item}” is the same {kind} as “{seen[key]}”; give each value once."
            )
        seen[key] = item
    return Axis(kind, tuple(values))


def check_grid(x: Axis, y: Axis | None, bounds: Bounds = BOUNDS) -> int:
    """The grid's panel count, when the two axes make a grid we draw; refused otherwise."""
    if y is not None and y.kind == x.kind:
        raise UserInputError(
            f"x and y are both {x.kind}: an axis varies one setting; pick two different ones."
        )
    columns, rows = len(x.values), len(y.values) if y else 1
    panels = columns * rows
    limit = bounds.compare_panels
    if panels > limit.max:
        shown = f"{columns} × {rows} = {panels}" if y else f"{panels}"
        raise UserInputError(f"{shown} panels; the most is {limit.max}. Give fewer values.")
    if panels < limit.min:
        raise UserInputError(
            f"That grid has {panels} panel; a comparison needs at least {limit.min}: give two or "
            "more values."
        )
    return panels

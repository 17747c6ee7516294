"""Slash-command option types that carry the bounds, so command bodies carry no checks.

Each type is an ``app_commands.Transformer``: Discord is told its range (``min_value`` and
``max_value``, lengths for text) or its choices, so the client offers only what is allowed, and
``transform`` checks the value again with ``bot.ui.validation`` (a client can send anything),
raising the message the user sees. A command declares ``steps: options.Steps =
BOUNDS.steps.default`` and its body gets a checked number.

The bounds are ``engine.protocol.BOUNDS`` when a command is defined, which is before the settings
exist. An operator may narrow them (``LIMITS_*``, ``LimitSettings.bounds()``), so at setup
:func:`apply_bounds` gives every bounded option of the command tree the narrowed bounds, before
the commands are synced: Discord then shows the narrowed range, and values outside it are refused
before a job is written or counted. Descriptions of bounded options may hold ``{min}``, ``{max}``
and ``{default}``; :func:`apply_bounds` fills them in, and the zh-CN translator fills its own
texts the same way (:func:`fill_bounds`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, ClassVar, Self, TypeVar

import discord
from discord import AppCommandOptionType, app_commands
from discord.app_commands import Choice, locale_str
from discord.app_commands.transformers import CommandParameter

from bot.ui import validation
from bot.ui.errors import UserInputError
from engine.protocol import BOUNDS, SCHEDULERS, SIZES, Bound, Bounds, Size, number_text


class OptionError(UserInputError, app_commands.AppCommandError):
    """A refused option value, with the message the user sees.

    An ``AppCommandError``, so discord.py hands it to the error handler as it is: any other
    exception from a transformer becomes a ``TransformerError`` that only says the conversion
    failed.
    """


class BoundedOption(app_commands.Transformer[discord.Client]):
    """An option checked against ``bounds``; subclasses say which bound and which check."""

    def __init__(self, bounds: Bounds = BOUNDS) -> None:
        self.bounds = bounds

    def with_bounds(self, bounds: Bounds) -> Self:
        """The same option, checked against other (an operator's narrowed) bounds."""
        return type(self)(bounds)

    @property
    def default(self) -> Any:
        """The value a command gets when the option is left out; None keeps the command's."""
        return None

    def check(self, value: Any) -> Any:
        """The checked value; raises ``UserInputError`` with the user's message."""
        raise NotImplementedError

    async def transform(
        self, interaction: discord.Interaction[discord.Client], value: Any, /
    ) -> Any:
        try:
            return self.check(value)
        except UserInputError as error:
            raise OptionError(str(error)) from None


class _RangeOption(BoundedOption):
    """A number (or a text's length) within the bound ``bound_name`` of ``Bounds``."""

    option_type: ClassVar[AppCommandOptionType]
    bound_name: ClassVar[str]

    @property
    def bound(self) -> Bound[int] | Bound[float]:
        bound: Bound[int] | Bound[float] = getattr(self.bounds, self.bound_name)
        return bound

    @property
    def default(self) -> Any:
        return getattr(self.bound, "default", None)

    @property
    def type(self) -> AppCommandOptionType:
        return self.option_type

    @property
    def min_value(self) -> int | float | None:
        return self.bound.min

    @property
    def max_value(self) -> int | float | None:
        return self.bound.max


class StepsOption(_RangeOption):
    option_type, bound_name = AppCommandOptionType.integer, "steps"

    def check(self, value: int) -> int:
        return validation.check_steps(value, self.bounds)


class GuidanceOption(_RangeOption):
    option_type, bound_name = AppCommandOptionType.number, "guidance"

    def check(self, value: float) -> float:
        return validation.check_guidance(value, self.bounds)


class CountOption(_RangeOption):
    option_type, bound_name = AppCommandOptionType.integer, "count"

    def check(self, value: int) -> int:
        return validation.check_count(value, self.bounds)


class SeedOption(_RangeOption):
    """A seed; left out, the command gets None (random seeds)."""

    option_type, bound_name = AppCommandOptionType.integer, "seed"

    def check(self, value: int) -> int | None:
        return validation.check_seed(value, self.bounds)


class StrengthOption(_RangeOption):
    option_type, bound_name = AppCommandOptionType.number, "strength"

    def check(self, value: float) -> float:
        return validation.check_strength(value, self.bounds)


class ImageStrengthOption(_RangeOption):
    """How far image-to-image goes from the picture; left out, the command gets None (the
    command says what that means: the default with a picture, nothing without one)."""

    option_type, bound_name = AppCommandOptionType.number, "image_strength"

    @property
    def default(self) -> None:
        return None

    def check(self, value: float) -> float:
        return validation.check_image_strength(value, self.bounds)


class PromptOption(_RangeOption):
    """The prompt: required, control characters dropped, whitespace collapsed, its weights
    (the web UI's ``(word:1.3)``) readable."""

    option_type, bound_name = AppCommandOptionType.string, "prompt_chars"
    what, required = "prompt", True
    weighted = True  # the text encoder's prompts take weights; CLIPSeg's words do not

    def check(self, value: str) -> str:
        text = validation.clean_prompt(
            value, what=self.what, max_chars=int(self.bound.max), required=self.required
        )
        return validation.check_prompt_syntax(text, what=self.what) if self.weighted else text


class NegativePromptOption(PromptOption):
    """What to steer away from; may be empty."""

    what, required = "negative prompt", False

    @property
    def min_value(self) -> int | None:
        return None

    @property
    def default(self) -> str:
        return ""


class MaskPromptOption(PromptOption):
    """Words naming the area to repaint; left out, the command gets ""."""

    bound_name, what, required = "mask_prompt_chars", "mask prompt", False
    weighted = False

    @property
    def default(self) -> str:
        return ""


class SizeOption(BoundedOption):
    """One of ``SIZES``, by name; the command gets the ``Size``."""

    @property
    def choices(self) -> list[Choice[str | int | float]]:
        return [Choice(name=size.label, value=key) for key, size in SIZES.items()]

    @property
    def default(self) -> Size:
        return SIZES[self.bounds.size]

    def check(self, value: str) -> Size:
        return validation.check_size(value, self.bounds)


class SchedulerOption(BoundedOption):
    """One of ``SCHEDULERS``, shown by its label; the command gets its wire name."""

    @property
    def choices(self) -> list[Choice[str | int | float]]:
        return [Choice(name=label, value=key) for key, label in SCHEDULERS.items()]

    @property
    def default(self) -> str:
        return self.bounds.scheduler

    def check(self, value: str) -> str:
        return validation.check_scheduler(value, self.bounds)


class _LeftOutIsNone(BoundedOption):
    """Left out, the command gets None: /compare tells a setting left out (the default, or an
    axis's values) from one typed, which an axis of the same setting contradicts."""

    @property
    def default(self) -> None:
        return None


class OptionalStepsOption(_LeftOutIsNone, StepsOption):
    pass


class OptionalGuidanceOption(_LeftOutIsNone, GuidanceOption):
    pass


class OptionalSchedulerOption(_LeftOutIsNone, SchedulerOption):  # type: ignore[misc]  # None wins
    pass


# What commands annotate their options with (``Annotated`` for type checkers).
Steps = app_commands.Transform[int, StepsOption]
Guidance = app_commands.Transform[float, GuidanceOption]
Count = app_commands.Transform[int, CountOption]
Seed = app_commands.Transform[int, SeedOption]
Strength = app_commands.Transform[float, StrengthOption]
ImageStrength = app_commands.Transform[float, ImageStrengthOption]
Prompt = app_commands.Transform[str, PromptOption]
NegativePrompt = app_commands.Transform[str, NegativePromptOption]
MaskPrompt = app_commands.Transform[str, MaskPromptOption]
ImageSize = app_commands.Transform[Size, SizeOption]
Scheduler = app_commands.Transform[str, SchedulerOption]
OptionalSteps = app_commands.Transform[int, OptionalStepsOption]
OptionalGuidance = app_commands.Transform[float, OptionalGuidanceOption]
OptionalScheduler = app_commands.Transform[str, OptionalSchedulerOption]


_WHICH_MODEL = "Which {kind}model to use (default: the server's default)"
# The help of the options that mean the same in every image command (English; the zh-CN side,
# ``bot.ui.i18n._commands.SHARED_OPTIONS``, has the same keys). Where a command's option means
# something else (/compare's "when steps is not an axis", /inpaint's prompt for an area), the
# command writes its own text, so each difference shows where the command is declared.
OPTION_HELP: Mapping[str, str] = MappingProxyType(
    {
        "prompt": "What to draw, e.g. “a watercolor fox in the snow”",
        "negative_prompt": "What to steer away from, e.g. “blurry, text”",
        "seed": "Same seed + same settings = same image (random when empty)",
        # {min}, {max} and {default}: filled from the bounds in force (apply_bounds).
        "steps": "Denoising steps, {min}-{max} (default {default})",
        "guidance": "Classifier-free guidance: how closely to follow the prompt "
        "(default {default})",
        "size": "Image size and shape",
        "model": _WHICH_MODEL.format(kind=""),
    }
)

_Command = TypeVar("_Command")


def describe(*shared: str, **own: str) -> Callable[[_Command], _Command]:
    """``app_commands.describe`` with the ``OPTION_HELP`` of the options named in ``shared``,
    and a command's ``own`` texts for the others."""
    twice = set(shared) & set(own)
    if twice:
        raise ValueError(f"options described twice: {sorted(twice)}")
    return app_commands.describe(**{name: OPTION_HELP[name] for name in shared}, **own)


def with_note(name: str, note: str) -> str:
    """The shared help of option ``name`` with a command's own ``note`` inside the brackets it
    ends with, or in new ones: how a command says more than the shared help ("(default
    {default}; 7-8.5 is typical)")."""
    text = OPTION_HELP[name]
    if text.endswith(")"):
        return f"{text[:-1]}; {note})"
    return f"{text} ({note})"


def model_help(kind: str) -> str:
    """The ``model`` option's help for a command that runs one kind of model ("inpainting")."""
    return _WHICH_MODEL.format(kind=f"{kind} ")


def typed_options(interaction: discord.Interaction) -> frozenset[str]:
    """The options the user typed (Discord sends only those); the others hold defaults."""
    return frozenset(name for name, _ in interaction.namespace)


def fill_bounds(text: str, low: object, high: object, default: object) -> str:
    """``text`` with ``{min}``, ``{max}`` and ``{default}`` filled in where they are numbers."""
    for field, value in (("{min}", low), ("{max}", high), ("{default}", default)):
        if isinstance(value, int | float) and not isinstance(value, bool):
            text = text.replace(field, number_text(value))
    return text


def apply_bounds(tree: app_commands.CommandTree[discord.Client], bounds: Bounds) -> None:
    """Give every bounded option of ``tree`` these bounds, and fill in its description.

    Call it at setup, before ``make_translatable`` and the sync. It uses discord.py's parameter
    objects (``_params``, ``_annotation``): an option's range is read when a command is defined,
    and there is no public way to change it. Each parameter is replaced, not changed: the
    objects are shared with the cog's class, and so with every other bot in the process (the
    tests run several, with different settings).
    """
    for command in tree.walk_commands():
        if not isinstance(command, app_commands.Command):
            continue
        for name, param in command._params.items():
            if isinstance(param._annotation, BoundedOption):
                command._params[name] = _with_option(param, param._annotation.with_bounds(bounds))


def _with_option(param: CommandParameter, option: BoundedOption) -> CommandParameter:
    default = param.default if param.required or option.default is None else option.default
    low, high = option.min_value, option.max_value
    description = param.description
    if isinstance(description, locale_str):
        message = fill_bounds(description.message, low, high, default)
        description = locale_str(message, **description.extras)
    else:
        description = fill_bounds(description, low, high, default)
    return dataclasses.replace(
        param,
        _annotation=option,
        min_value=low,
        max_value=high,
        default=default,
        description=description,
    )

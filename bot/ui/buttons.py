"""Buttons under job messages, and under the moderators' review cards.

Each button is a ``DynamicItem`` whose custom id carries the action and the job id
(``job:reroll:42``) or the review id of a flagged image (``review:release:7``), so a button
works on any message the bot ever posted, after restarts, without keeping views in memory.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import ClassVar, Protocol, Self, cast

import discord

from bot.ui.errors import report
from bot.ui.i18n import label as localized_label
from engine.protocol import BOUNDS, JobKind

ButtonHandler = Callable[[discord.Interaction, int], Awaitable[None]]

ACTIONS = {
    "reroll": ("Reroll", "🎲", discord.ButtonStyle.primary),
    "details": ("Details", "🔎", discord.ButtonStyle.secondary),
    "delete": ("Delete", "🗑️", discord.ButtonStyle.danger),
    "cancel": ("Cancel", "✖️", discord.ButtonStyle.secondary),
    # A new image from the result's first (image-to-image, a new seed), at the two strengths
    # ``VARY_STRENGTHS`` gives.
    "vary": ("Vary (subtle)", "🌱", discord.ButtonStyle.secondary),
    "varymore": ("Vary (strong)", "🌪️", discord.ButtonStyle.secondary),
    # Course mode (bot.course): each makes one comparison grid from the result's seed.
    "cfg": ("Compare CFG", "🎚️", discord.ButtonStyle.secondary),
    "steps": ("Compare steps", "🔢", discord.ButtonStyle.secondary),
    "sched": ("Compare schedulers", "🧮", discord.ButtonStyle.secondary),
    "denoise": ("Denoising strip", "🌫️", discord.ButtonStyle.secondary),
    # The x4 upscaler on one image of the result, by its position ("up2": the second).
    **{
        f"up{n}": (f"Upscale {n}", "🔍", discord.ButtonStyle.secondary)
        for n in range(1, BOUNDS.count.max + 1)
    },
}
# Under a moderators' card for one flagged image (bot.features.moderation).
REVIEW_ACTIONS = {
    "release": ("Release", "🔓", discord.ButtonStyle.success),
    "confirm": ("Confirm", "🔒", discord.ButtonStyle.secondary),
    "strike": ("Strike", "⚠️", discord.ButtonStyle.danger),
}
LESSON_ACTIONS = ("cfg", "steps", "sched", "denoise")  # a row of their own (Discord: 5 a row)
VARY_STRENGTHS = {"vary": BOUNDS.vary_subtle, "varymore": BOUNDS.vary_strong}
# One per image a job can have (at most 4), on a row of their own below the lessons.
UPSCALE_ACTIONS = {f"up{n}": n - 1 for n in range(1, BOUNDS.count.max + 1)}
UPSCALE_ONE = "Upscale ×4"  # the label when the result has a single image
_ROWS = {**dict.fromkeys(LESSON_ACTIONS, 1), **dict.fromkeys(UPSCALE_ACTIONS, 2)}


class ActionButton(
    discord.ui.DynamicItem[discord.ui.Button],
    template=r"(?!)",  # matches nothing: only the concrete buttons below are registered
):
    """A button whose custom id is ``<prefix>:<action>:<id>``; a subclass names its prefix, its
    actions (label, emoji, style each) and what its id is of (the template's group name), and
    may put actions on other rows. Pressed, it runs the action registered in ``ButtonActions``.

    The custom ids are on messages already posted: changing their shape kills those buttons.
    """

    actions: ClassVar[Mapping[str, tuple[str, str, discord.ButtonStyle]]]
    id_name: ClassVar[str]
    rows: ClassVar[Mapping[str, int]]
    prefix: ClassVar[str]

    def __init_subclass__(
        cls,
        *,
        prefix: str,
        actions: Mapping[str, tuple[str, str, discord.ButtonStyle]],
        id_name: str,
        rows: Mapping[str, int] | None = None,
    ) -> None:
        template = rf"{prefix}:(?P<action>{'|'.join(actions)}):(?P<{id_name}>[0-9]{{1,19}})"
        super().__init_subclass__(template=template)
        cls.prefix, cls.actions, cls.id_name, cls.rows = prefix, actions, id_name, rows or {}

    def __init__(
        self,
        action: str,
        item_id: int,
        label: str | None = None,
        *,
        disabled: bool = False,
        locale: str | None = None,
    ) -> None:
        default_label, emoji, style = self.actions[action]
        super().__init__(
            discord.ui.Button(
                label=localized_label(label or default_label, locale),
                emoji=emoji,
                style=style,
                custom_id=f"{self.prefix}:{action}:{item_id}",
                disabled=disabled,
                row=self.rows.get(action),
            )
        )
        self.action = action
        self.item_id = item_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction,
        item: discord.ui.Item,
        match: re.Match[str],
    ) -> Self:
        return cls(match["action"], int(match[cls.id_name]))

    async def callback(self, interaction: discord.Interaction) -> None:
        """Run the action on the job or review the custom id carries."""
        # The client is the bot, which also carries the services; discord.py types it as a
        # plain Client because it builds a button from a custom id alone.
        bot = cast("_BotWithButtons", interaction.client)
        try:
            await bot.services.buttons.handle(interaction, self.action, self.item_id)
        except Exception as error:
            await report(interaction, error)


class JobButton(ActionButton, prefix="job", actions=ACTIONS, id_name="job_id", rows=_ROWS):
    """Under a job's message: ``job:reroll:42``; ``label`` replaces the action's own."""


class ReviewButton(ActionButton, prefix="review", actions=REVIEW_ACTIONS, id_name="review_id"):
    """Under a moderators' card for one flagged image: ``review:release:7``."""


class _Services(Protocol):
    buttons: ButtonActions


class _BotWithButtons(Protocol):
    """How a button reaches the actions: the client carries the services (``bot.services``)."""

    services: _Services


class ButtonActions:
    """What each job button does: features register their actions at setup, the buttons
    (built by discord.py from a custom id alone) look them up here."""

    def __init__(self) -> None:
        self._handlers: dict[str, ButtonHandler] = {}

    def register(self, action: str, handler: ButtonHandler) -> None:
        if action not in ACTIONS and action not in REVIEW_ACTIONS:
            raise ValueError(f"no button is labelled for action {action!r}")
        self._handlers[action] = handler

    async def handle(self, interaction: discord.Interaction, action: str, item_id: int) -> None:
        """Run ``action`` on the job (or, for a review button, the review) ``item_id``."""
        await self._handlers[action](interaction, item_id)


def job_view(job_id: int, *actions: str, locale: str | None = None) -> discord.ui.View:
    """Buttons for ``actions`` on job ``job_id``, labelled in ``locale`` (the asker's)."""
    view = discord.ui.View(timeout=None)
    for action in actions:
        view.add_item(JobButton(action, job_id, locale=locale))
    return view


def running_view(job_id: int, locale: str | None = None) -> discord.ui.View:
    return job_view(job_id, "cancel", locale=locale)


def result_view(
    job_id: int,
    kind: JobKind = JobKind.TEXT_TO_IMAGE,
    images: int = 1,
    lessons: Sequence[str] = LESSON_ACTIONS,
    locale: str | None = None,
) -> discord.ui.View:
    """Under a result: five on the first row (Discord's most), the lessons on the second, an
    Upscale per image on the third.

    An upscale gets Details and Delete only: nothing builds on a picture that large. A
    depth-to-image result has neither Vary (it would run image-to-image on another model,
    losing the depth that made the result) nor the lessons (their comparisons are not tried
    on depth models yet). ``lessons``: the lessons' actions that apply to the result's model
    family (``bot.jobs.lessons.lesson_actions``). Labels are in ``locale``, the asker's.
    """
    if kind is JobKind.UPSCALE:
        return job_view(job_id, "details", "delete", locale=locale)
    if kind is JobKind.DEPTH_TO_IMAGE:
        view = job_view(job_id, "reroll", "details", "delete", locale=locale)
    else:
        actions = ("reroll", "details", "delete", *VARY_STRENGTHS, *lessons)
        view = job_view(job_id, *actions, locale=locale)
    upscales = list(UPSCALE_ACTIONS)[:images]
    for action in upscales:
        one = UPSCALE_ONE if len(upscales) == 1 else None
        view.add_item(JobButton(action, job_id, one, locale=locale))
    return view


def review_view(review_id: int, *, decided: bool = False) -> discord.ui.View:
    """Under a moderators' card: Release, Confirm, Strike; disabled once decided."""
    view = discord.ui.View(timeout=None)
    for action in REVIEW_ACTIONS:
        view.add_item(ReviewButton(action, review_id, disabled=decided))
    return view

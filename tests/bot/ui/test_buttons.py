"""Buttons on messages posted long ago: their custom ids still parse and reach their action.

The ids below are written out as Discord holds them on posted messages, not built from the
button classes, so a change to their shape fails here before it kills the buttons in Discord.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any
from unittest import mock

import discord
import pytest

from bot.ui.buttons import ButtonActions, JobButton, ReviewButton
from tests.bot.doubles import interaction_by, member

POSTED = [
    *(
        (JobButton, f"job:{action}:1234567890123456789", action, 1234567890123456789)
        for action in (
            *("reroll", "details", "delete", "cancel", "vary", "varymore"),
            *("cfg", "steps", "sched", "denoise", "up1", "up2", "up3", "up4"),
        )
    ),
    *(
        (ReviewButton, f"review:{action}:7", action, 7)
        for action in ("release", "confirm", "strike")
    ),
]


@pytest.mark.parametrize(("kind", "custom_id", "action", "item_id"), POSTED)
async def test_a_posted_buttons_custom_id_still_reaches_its_action(
    kind: type[JobButton | ReviewButton], custom_id: str, action: str, item_id: int
) -> None:
    pressed: list[tuple[str, int]] = []
    actions = ButtonActions()

    async def handler(interaction: discord.Interaction, pressed_id: int) -> None:
        pressed.append((action, pressed_id))

    actions.register(action, handler)
    interaction: Any = interaction_by(member(1, "student"))
    interaction.client = SimpleNamespace(services=SimpleNamespace(buttons=actions))
    # What discord.py does with a click after a restart: find the class whose template
    # matches the whole id, build the button from the match, run its callback.
    matches = {
        b: b.__discord_ui_compiled_template__.fullmatch(custom_id)
        for b in (JobButton, ReviewButton)
    }
    assert [b for b, m in matches.items() if m] == [kind]
    match = matches[kind]
    assert match is not None
    button = await kind.from_custom_id(interaction, mock.sentinel.item, match)
    assert button.custom_id == custom_id  # built again byte for byte
    await button.callback(interaction)
    assert pressed == [(action, item_id)]

"""Answering an interaction whose first answer Discord took but the bot never heard back from."""

from __future__ import annotations

from types import SimpleNamespace
from unittest.mock import AsyncMock, MagicMock

import discord

from bot.ui.interactions import ALREADY_ACKNOWLEDGED, reply


def http_error(status: int, code: int) -> discord.HTTPException:
    response = SimpleNamespace(status=status, reason="Bad Request")
    return discord.HTTPException(response, {"code": code, "message": "refused"})  # type: ignore[arg-type]


def interaction_whose_deferral_was_lost() -> MagicMock:
    """discord.py saw the deferral's connection drop, so it thinks nothing was answered; Discord
    made the "thinking…" message all the same."""
    interaction = MagicMock(spec_set=discord.Interaction)
    interaction.response.is_done.return_value = False
    interaction.response.type = None
    interaction.response.send_message = AsyncMock(side_effect=http_error(400, ALREADY_ACKNOWLEDGED))
    thinking = MagicMock(spec_set=discord.InteractionMessage)
    thinking.flags = discord.MessageFlags(loading=True)
    interaction.original_response = AsyncMock(return_value=thinking)
    interaction.edit_original_response = AsyncMock()
    interaction.followup.send = AsyncMock()
    return interaction


async def test_a_reply_replaces_a_thinking_message_discord_took_but_the_bot_never_heard_of():
    interaction = interaction_whose_deferral_was_lost()
    await reply(interaction, "The picture took too long to read.")
    interaction.edit_original_response.assert_awaited_once_with(
        content="The picture took too long to read."
    )
    interaction.followup.send.assert_not_awaited()


async def test_other_refusals_of_the_answer_still_raise():
    interaction = interaction_whose_deferral_was_lost()
    interaction.response.send_message = AsyncMock(side_effect=http_error(400, 50035))
    try:
        await reply(interaction, "x")
    except discord.HTTPException as error:
        assert error.code == 50035
    else:
        raise AssertionError("a malformed answer must not be swallowed")

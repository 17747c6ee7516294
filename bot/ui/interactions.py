"""Answering an interaction safely, whatever state it is in.

Not yet answered: the response. Deferred and still "thinking…": an edit of that. Answered:
a followup. Expired (the token lives 15 minutes; Discord may also say it is invalid earlier):
the channel, with a mention, because ephemeral replies cannot outlive their token.
"""

from __future__ import annotations

import logging

import discord

log = logging.getLogger(__name__)

# Discord's codes for "this interaction token can no longer be used".
EXPIRED_CODES = {10015, 10062, 50027}


def is_expired_token(error: discord.HTTPException) -> bool:
    return error.code in EXPIRED_CODES or error.status == 401


async def still_thinking(interaction: discord.Interaction) -> bool:
    """Whether the answer is a deferral still showing "thinking…" (nothing replaced it yet)."""
    if interaction.response.type is not discord.InteractionResponseType.deferred_channel_message:
        return False
    try:
        original = await interaction.original_response()
    except discord.NotFound:  # the user dismissed it
        return False
    return original.flags.loading


async def reply(
    interaction: discord.Interaction, content: str, *, ephemeral: bool = True
) -> discord.Message | None:
    """Send ``content`` as the answer to ``interaction``; never raises for a dead token."""
    try:
        if not interaction.response.is_done():
            await interaction.response.send_message(content, ephemeral=ephemeral)
            return None
        if await still_thinking(interaction):
            # The "thinking…" of a deferral is replaced by editing it; a followup does so only
            # by a behaviour Discord has deprecated.
            return await interaction.edit_original_response(content=content)
        return await interaction.followup.send(content, ephemeral=ephemeral, wait=True)
    except discord.HTTPException as error:
        if not is_expired_token(error):
            raise
    channel = interaction.channel
    if not isinstance(channel, discord.abc.Messageable):
        log.warning("could not answer interaction %s: token expired, no channel", interaction.id)
        return None
    return await channel.send(
        f"{interaction.user.mention} {content}",
        allowed_mentions=discord.AllowedMentions(users=[interaction.user]),
    )

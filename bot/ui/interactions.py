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
# "Interaction has already been acknowledged": Discord took an answer whose reply the bot never
# got (the connection dropped under it), so discord.py does not know the interaction is answered.
ALREADY_ACKNOWLEDGED = 40060


def is_expired_token(error: discord.HTTPException) -> bool:
    return error.code in EXPIRED_CODES or error.status == 401


async def still_thinking(interaction: discord.Interaction, *, answered: bool = False) -> bool:
    """Whether the answer is a deferral still showing "thinking…" (nothing replaced it yet).
    ``answered``: Discord has an answer discord.py did not record (``ALREADY_ACKNOWLEDGED``)."""
    deferred = interaction.response.type is discord.InteractionResponseType.deferred_channel_message
    if not (deferred or answered):
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
        answered = False
        if not interaction.response.is_done():
            try:
                await interaction.response.send_message(content, ephemeral=ephemeral)
                return None
            except discord.HTTPException as error:
                if error.code != ALREADY_ACKNOWLEDGED:
                    raise
                answered = True
        if await still_thinking(interaction, answered=answered):
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

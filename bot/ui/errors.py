"""Errors that carry the message a user sees, and the one handler for everything else.

Order of handling (python-discord's): input errors and failed checks and limits are the
user's to fix, and get their own message, ephemeral; anything unexpected gets a short
apology with an error id that is also in the log with the traceback.
"""

from __future__ import annotations

import logging
import secrets

import discord
from discord import app_commands

from bot.ui.interactions import reply

log = logging.getLogger(__name__)


class UserFacingError(Exception):
    """Raised with a message that is safe and useful to show as it is."""


class UserInputError(UserFacingError):
    """What the user typed or attached cannot be used."""


class NotAllowed(UserFacingError, app_commands.CheckFailure):
    """The user may not do this here (wrong channel, not an admin, not their job)."""


SIGNATURE_MISMATCH = (
    "A required option is missing (for /depth and /inpaint: the `image`), or Discord still "
    "shows this command's older form. Fill in every required option and try again; nothing "
    "was changed."
)


def unexpected_error_message(error_id: str) -> str:
    return (
        f"Something went wrong on our side (error id `{error_id}`). "
        "Nothing was changed; please try again, and tell an admin the id if it keeps happening."
    )


async def report(interaction: discord.Interaction, error: BaseException) -> None:
    """Answer an interaction that raised ``error``, whatever state it is in."""
    original = getattr(error, "original", error)
    if isinstance(original, UserFacingError):
        await reply(interaction, str(original), ephemeral=True)
        return
    if isinstance(error, app_commands.TransformerError | app_commands.CheckFailure):
        await reply(interaction, str(error) or "You can't do that here.", ephemeral=True)
        return
    if isinstance(error, app_commands.CommandSignatureMismatch):
        # A required option (such as /depth's picture) did not arrive: a client that skips
        # Discord's checks, or a command Discord still shows in an older shape.
        await reply(interaction, SIGNATURE_MISMATCH, ephemeral=True)
        return
    if isinstance(error, app_commands.CommandOnCooldown):
        await reply(interaction, f"Slow down: try again in {error.retry_after:.0f} s.")
        return
    error_id = secrets.token_hex(4)
    log.error(
        "unexpected error %s in %s by user %s",
        error_id,
        interaction.command.qualified_name if interaction.command else interaction.type.name,
        interaction.user.id,
        exc_info=original,
    )
    await reply(interaction, unexpected_error_message(error_id), ephemeral=True)

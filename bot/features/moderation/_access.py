"""Who is a moderator: decided in code on every click and command, like the admin check."""

from __future__ import annotations

import discord

from bot.settings import ModerationSettings
from bot.ui.errors import NotAllowed


def is_moderator(interaction: discord.Interaction, settings: ModerationSettings) -> bool:
    """A moderator role (``MODERATION_ROLES``), or Manage Messages where they clicked or typed
    (the member's permissions as Discord reports them with the interaction)."""
    user = interaction.user
    if not isinstance(user, discord.Member):
        return False
    if interaction.permissions.manage_messages:
        return True
    wanted = {name.casefold() for name in settings.roles}
    return any(role.name.casefold() in wanted for role in user.roles)


def require_moderator(interaction: discord.Interaction, settings: ModerationSettings) -> None:
    if not is_moderator(interaction, settings):
        roles = ", ".join(settings.roles) or "a moderator role"
        raise NotAllowed(
            f"Only moderators can do that (the {roles} role, or Manage Messages). "
            "Nothing was changed."
        )

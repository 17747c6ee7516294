"""Who is a moderator: decided in code on every click and command, like the admin check."""

from __future__ import annotations

import discord

from bot.settings import ModerationSettings
from bot.ui.checks import has_any_role
from bot.ui.errors import NotAllowed


def is_moderator(interaction: discord.Interaction, settings: ModerationSettings) -> bool:
    """A moderator role (``MODERATION_ROLES``), or Manage Messages where they clicked or typed
    (the member's permissions as Discord reports them with the interaction)."""
    user = interaction.user
    if not isinstance(user, discord.Member):
        return False
    return interaction.permissions.manage_messages or has_any_role(user, settings.roles)


def require_moderator(interaction: discord.Interaction, settings: ModerationSettings) -> None:
    if not is_moderator(interaction, settings):
        roles = ", ".join(settings.roles) or "a moderator role"
        raise NotAllowed(
            f"Only moderators can do that (the {roles} role, or Manage Messages). "
            "Nothing was changed."
        )

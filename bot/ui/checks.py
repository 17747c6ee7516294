"""Who may do what, where: decided in code on every call.

Discord's default command permissions can be changed by any server owner, so they are a
convenience, never the check.
"""

from __future__ import annotations

import discord

from bot.settings import DiscordSettings
from bot.ui.errors import NotAllowed


def is_admin(user: discord.abc.User, settings: DiscordSettings) -> bool:
    """A configured admin role, or the Manage Server permission."""
    if not isinstance(user, discord.Member):
        return False
    return user.guild_permissions.manage_guild or has_any_role(user, settings.admin_roles)


def has_any_role(member: discord.Member, names: list[str]) -> bool:
    """Whether ``member`` has one of the roles ``names`` (any case)."""
    wanted = {name.casefold() for name in names}
    return any(role.name.casefold() in wanted for role in member.roles)


def channel_allowed(channel: object, settings: DiscordSettings) -> bool:
    """An allowed channel, or a thread inside one."""
    allowed = {name.casefold() for name in settings.allowed_channels}
    if isinstance(channel, discord.Thread):
        channel = channel.parent
    name = getattr(channel, "name", None)
    return isinstance(name, str) and name.casefold() in allowed


def require_channel(interaction: discord.Interaction, settings: DiscordSettings) -> None:
    if channel_allowed(interaction.channel, settings):
        return
    places = []
    for name in settings.allowed_channels:
        found = interaction.guild and discord.utils.get(interaction.guild.channels, name=name)
        places.append(found.mention if found else f"#{name}")
    raise NotAllowed(
        f"I make images only in {' or '.join(places)} (and threads there). "
        "Ask there, and everyone can learn from the result."
    )


def require_admin(interaction: discord.Interaction, settings: DiscordSettings) -> None:
    if not is_admin(interaction.user, settings):
        roles = ", ".join(settings.admin_roles) or "an admin role"
        raise NotAllowed(
            f"Only admins can do that (the {roles} role, or Manage Server). Nothing was changed."
        )

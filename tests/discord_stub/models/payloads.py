"""JSON payloads in the shapes Discord sends them (API v10), built from stub entities.

Only fields discord.py reads (or that a bot might plausibly read) are filled in; discord.py
indexes several keys without ``.get`` (for example ``discriminator``, ``avatar``, member
``flags``, thread ``message_count``), so those are always present.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..snowflakes import iso_timestamp
from .entities import (
    ADMINISTRATOR,
    ALL_PERMISSIONS,
    Attachment,
    Channel,
    ChannelType,
    Guild,
    Membership,
    Message,
    Role,
    User,
)

JSON = dict[str, Any]


def user_payload(user: User) -> JSON:
    """A user object."""
    payload: JSON = {
        "id": str(user.id),
        "username": user.name,
        "global_name": user.global_name,
        "discriminator": "0",
        "avatar": None,
        "public_flags": 0,
    }
    if user.bot:
        payload["bot"] = True
    return payload


def bot_user_payload(user: User) -> JSON:
    """The bot's own user, as ``GET /users/@me`` and ``READY`` describe it."""
    return {**user_payload(user), "verified": True, "mfa_enabled": False, "flags": 0}


def member_permissions(guild: Guild, membership: Membership) -> int:
    """Guild-level permissions of a member: an explicit override, else @everyone | roles."""
    if membership.permissions is not None:
        return membership.permissions
    value = guild.roles[guild.id].permissions
    for role_id in membership.role_ids:
        value |= guild.roles[role_id].permissions
    # Discord sends the fully expanded set to administrators.
    return ALL_PERMISSIONS if value & ADMINISTRATOR else value


def member_payload(
    user: User, guild: Guild, *, include_user: bool = True, with_permissions: bool = False
) -> JSON:
    """A guild member; interactions also carry the computed ``permissions``."""
    membership = user.membership(guild.id)
    payload: JSON = {
        "roles": [str(r) for r in membership.role_ids],
        "nick": membership.nick,
        "avatar": None,
        "joined_at": membership.joined_at,
        "premium_since": None,
        "deaf": False,
        "mute": False,
        "pending": False,
        "flags": 0,
        "communication_disabled_until": None,
    }
    if include_user:
        payload["user"] = user_payload(user)
    if with_permissions:
        payload["permissions"] = str(member_permissions(guild, membership))
    return payload


def role_payload(role: Role) -> JSON:
    """A role object."""
    return {
        "id": str(role.id),
        "name": role.name,
        "permissions": str(role.permissions),
        "position": role.position,
        "color": 0,
        "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
        "hoist": False,
        "managed": role.managed,
        "mentionable": False,
        "icon": None,
        "unicode_emoji": None,
        "flags": 0,
    }


def channel_payload(channel: Channel, users: Mapping[int, User]) -> JSON:
    """A channel object: text channel, thread or DM."""
    payload: JSON = {"id": str(channel.id), "type": int(channel.type), "flags": 0}
    if channel.type is ChannelType.DM:
        payload["last_message_id"] = None
        payload["recipients"] = [user_payload(users[uid]) for uid in channel.recipient_ids]
        return payload
    payload.update(
        guild_id=str(channel.guild_id),
        name=channel.name,
        position=channel.position,
        permission_overwrites=[],
        nsfw=False,
        rate_limit_per_user=0,
        last_message_id=None,
    )
    if channel.is_thread:
        payload.update(
            parent_id=str(channel.parent_id),
            owner_id=str(channel.owner_id),
            message_count=0,
            member_count=1,
            total_message_sent=0,
            thread_metadata={
                "archived": False,
                "auto_archive_duration": 1440,
                "archive_timestamp": iso_timestamp(),
                "locked": False,
            },
        )
    else:
        payload.update(topic=channel.topic, parent_id=None, default_auto_archive_duration=1440)
    return payload


def guild_create_payload(
    guild: Guild, channels: Iterable[Channel], members: Iterable[User], users: Mapping[int, User]
) -> JSON:
    """The full ``GUILD_CREATE`` payload sent after ``READY``.

    ``member_count`` equals the number of members included, so discord.py considers the guild
    already chunked and does not need to request members.
    """
    channel_list = list(channels)
    member_list = list(members)
    return {
        "id": str(guild.id),
        "name": guild.name,
        "icon": None,
        "splash": None,
        "discovery_splash": None,
        "owner_id": str(guild.owner_id),
        "afk_channel_id": None,
        "afk_timeout": 300,
        "verification_level": 0,
        "default_message_notifications": 1,
        "explicit_content_filter": 0,
        "roles": [role_payload(r) for r in guild.roles.values()],
        "emojis": [],
        "stickers": [],
        "features": [],
        "mfa_level": 0,
        "system_channel_id": None,
        "system_channel_flags": 0,
        "rules_channel_id": None,
        "preferred_locale": guild.locale,
        "premium_tier": 0,
        "nsfw_level": 0,
        "joined_at": iso_timestamp(),
        "large": False,
        "unavailable": False,
        "member_count": len(member_list),
        "members": [member_payload(u, guild) for u in member_list],
        "channels": [channel_payload(c, users) for c in channel_list if not c.is_thread],
        "threads": [channel_payload(c, users) for c in channel_list if c.is_thread],
        "presences": [],
        "voice_states": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "soundboard_sounds": [],
    }


def partial_guild_payload(guild: Guild) -> JSON:
    """The small guild object carried by interactions."""
    return {"id": str(guild.id), "locale": guild.locale, "features": []}


def attachment_payload(attachment: Attachment) -> JSON:
    """An attachment object whose URLs point at the stub's CDN route."""
    payload: JSON = {
        "id": str(attachment.id),
        "filename": attachment.filename,
        "size": attachment.size,
        "url": attachment.url,
        "proxy_url": attachment.url,
        "content_type": attachment.content_type,
    }
    if attachment.description is not None:
        payload["description"] = attachment.description
    if attachment.title is not None:
        payload["title"] = attachment.title
    if attachment.ephemeral:
        payload["ephemeral"] = True
    if (size := attachment.image_size) is not None:
        payload["width"], payload["height"] = size
    return payload


def message_payload(
    message: Message,
    author: User,
    *,
    interaction_metadata: JSON | None = None,
) -> JSON:
    """A message object, as returned by REST and sent in gateway events."""
    payload: JSON = {
        "id": str(message.id),
        "channel_id": str(message.channel_id),
        "type": message.type,
        "author": user_payload(author),
        "content": message.content,
        "timestamp": message.created_at,
        "edited_timestamp": message.edited_at,
        "tts": False,
        "mention_everyone": False,
        "mentions": [],
        "mention_roles": [],
        "attachments": [attachment_payload(a) for a in message.attachments],
        "embeds": list(message.embeds),
        "components": list(message.components),
        "pinned": False,
        "flags": message.flags,
    }
    if message.guild_id is not None:
        payload["guild_id"] = str(message.guild_id)
    if message.webhook_id is not None:
        payload["webhook_id"] = str(message.webhook_id)
    if message.application_id is not None:
        payload["application_id"] = str(message.application_id)
    if interaction_metadata is not None:
        payload["interaction_metadata"] = interaction_metadata
    return payload


def application_payload(application_id: int, bot: User, owner: User) -> JSON:
    """``GET /oauth2/applications/@me``: the bot's application."""
    return {
        "id": str(application_id),
        "name": bot.name,
        "icon": None,
        "description": "",
        "bot_public": True,
        "bot_require_code_grant": False,
        "verify_key": "0" * 64,
        "owner": user_payload(owner),
        "team": None,
        "flags": 0,
        "bot": user_payload(bot),
        "interactions_endpoint_url": None,
        "redirect_uris": [],
        "tags": [],
        "approximate_guild_count": 1,
    }

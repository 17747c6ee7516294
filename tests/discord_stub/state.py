"""The stub's world: users, guilds, channels, messages, files, commands and interactions.

The REST routes, the gateway and the test driver all read and change this one object. It runs
on the test's event loop only, so it needs no locks.
"""

from __future__ import annotations

import copy
import dataclasses
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from .files import FileStore
from .interactions import InteractionHandle
from .models.commands import CommandRegistry, OptionType
from .models.entities import (
    BOT_PERMISSIONS,
    EPHEMERAL_FLAG,
    LOADING_FLAG,
    Channel,
    ChannelType,
    Guild,
    GuildSpec,
    InteractionType,
    Membership,
    Message,
    Role,
    Upload,
    User,
)
from .models.payloads import (
    attachment_payload,
    channel_payload,
    member_payload,
    member_permissions,
    message_payload,
    partial_guild_payload,
    role_payload,
    user_payload,
)
from .models.validation import DiscordError, unknown
from .records import RecordedRequest
from .snowflakes import SnowflakeGenerator, iso_timestamp
from .waiting import Signal

JSON = dict[str, Any]

# Flags a bot may set or clear on an edit; the rest (ephemeral, loading...) belong to Discord.
_EDITABLE_FLAGS = (1 << 2) | (1 << 12) | (1 << 15)  # SUPPRESS_EMBEDS, SUPPRESS_NOTIFICATIONS, V2
APPLICATION_COMMAND_MESSAGE = 20  # message type of slash-command responses
DEFAULT_MESSAGE = 0

# Gateway intents that gate message events (Discord's bit values).
GUILD_MESSAGES_INTENT = 1 << 9
DIRECT_MESSAGES_INTENT = 1 << 12
GUILD_MEMBERS_INTENT = 1 << 1

#: ``emit(event_name, data, required_intents)``: hands a gateway dispatch to the gateway hub.
Emitter = Callable[[str, JSON, int], None]


class StubState:
    """All the data the stub serves, with the operations the routes and the driver need."""

    def __init__(
        self,
        *,
        guild_specs: Sequence[GuildSpec],
        signal: Signal,
        bot_name: str,
        attachment_size_limit: int,
    ) -> None:
        self.ids = SnowflakeGenerator()
        self.signal = signal
        self.attachment_size_limit = attachment_size_limit
        #: set by the server once it listens; attachment URLs are built from it
        self.base_url = ""
        self.users: dict[int, User] = {}
        self.guilds: dict[int, Guild] = {}
        self.channels: dict[int, Channel] = {}
        self.messages: dict[int, Message] = {}
        self.nonces: dict[tuple[int, str], int] = {}  # (channel, nonce) -> message id
        self.channel_log: dict[int, list[int]] = {}
        self.files = FileStore(self.ids, lambda: self.base_url)
        self.interactions: dict[int, InteractionHandle] = {}
        self.tokens: dict[str, InteractionHandle] = {}
        self.requests: list[RecordedRequest] = []
        #: stub bugs (exceptions in route handlers), reported at exit
        self.internal_errors: list[str] = []
        self.emit: Emitter = lambda event, data, intents: None

        self.application_id = self.ids.next()
        self.bot = User(self.application_id, bot_name, bot=True)
        self.owner = User(self.ids.next(), "course-owner")
        self.users.update({self.bot.id: self.bot, self.owner.id: self.owner})
        self.commands = CommandRegistry(self.ids, self.application_id)
        for spec in guild_specs:
            self._build_guild(spec)

    # -- setup ----------------------------------------------------------------------------------

    def _build_guild(self, spec: GuildSpec) -> Guild:
        guild = Guild(self.ids.next(), spec.name, self.owner.id, spec.locale)
        guild.roles[guild.id] = Role(guild.id, "@everyone", spec.everyone_permissions, 0)
        for position, (name, permissions) in enumerate(spec.roles.items(), 1):
            role = Role(self.ids.next(), name, permissions, position)
            guild.roles[role.id] = role
        bot_role = Role(self.ids.next(), self.bot.name, BOT_PERMISSIONS, len(guild.roles), True)
        guild.roles[bot_role.id] = bot_role
        self.guilds[guild.id] = guild
        for position, name in enumerate(spec.channels):
            self._add_channel(
                Channel(self.ids.next(), name, ChannelType.GUILD_TEXT, guild.id, position)
            )
        for name, parent in spec.threads.items():
            self.create_thread(self.channel(parent, guild=guild), name, announce=False)
        self.join(self.owner, guild, [])
        self.join(self.bot, guild, [bot_role.id])
        return guild

    def _add_channel(self, channel: Channel) -> Channel:
        self.channels[channel.id] = channel
        self.channel_log[channel.id] = []
        if channel.guild_id is not None:
            self.guilds[channel.guild_id].channel_ids.append(channel.id)
        return channel

    def join(self, user: User, guild: Guild, role_ids: list[int], **membership: Any) -> None:
        """Make ``user`` a member of ``guild`` (a ``GUILD_MEMBER_ADD`` if the bot is connected)."""
        user.memberships[guild.id] = Membership(guild.id, role_ids, iso_timestamp(), **membership)
        if user.id not in guild.member_ids:
            guild.member_ids.append(user.id)
            self.emit(
                "GUILD_MEMBER_ADD",
                {**member_payload(user, guild), "guild_id": str(guild.id)},
                GUILD_MEMBERS_INTENT,
            )

    def add_user(
        self,
        name: str,
        *,
        guild: Guild,
        roles: Iterable[str | Role] = (),
        locale: str = "en-US",
        permissions: int | None = None,
        nick: str | None = None,
        global_name: str | None = None,
    ) -> User:
        """Create a user who is a member of ``guild`` with the given roles."""
        role_ids = [r.id if isinstance(r, Role) else guild.role_named(r).id for r in roles]
        user = User(self.ids.next(), name, global_name=global_name, locale=locale)
        self.users[user.id] = user
        self.join(user, guild, role_ids, nick=nick, permissions=permissions)
        return user

    def create_thread(
        self,
        parent: Channel,
        name: str,
        *,
        private: bool = False,
        announce: bool = True,
        thread_id: int | None = None,
    ) -> Channel:
        """A thread under ``parent`` (``THREAD_CREATE`` when the bot is connected).

        A thread started from a message takes the message's id, as on Discord.
        """
        kind = ChannelType.PRIVATE_THREAD if private else ChannelType.PUBLIC_THREAD
        thread = Channel(
            thread_id or self.ids.next(),
            name,
            kind,
            parent.guild_id,
            parent_id=parent.id,
            owner_id=self.bot.id,
        )
        self._add_channel(thread)
        if announce:
            self.emit(
                "THREAD_CREATE", {**channel_payload(thread, self.users), "newly_created": True}, 0
            )
        return thread

    def dm_channel(self, user: User) -> Channel:
        """The DM channel between the bot and ``user`` (created on first use)."""
        for channel in self.channels.values():
            if channel.type is ChannelType.DM and channel.recipient_ids == [user.id]:
                return channel
        return self._add_channel(
            Channel(self.ids.next(), user.name, ChannelType.DM, None, recipient_ids=[user.id])
        )

    # -- lookups --------------------------------------------------------------------------------

    @property
    def default_guild(self) -> Guild:
        """The first configured guild."""
        if not self.guilds:
            raise LookupError("the stub has no guilds")
        return next(iter(self.guilds.values()))

    def guild(self, ref: Guild | int | str | None) -> Guild:
        """A guild by object, id or name (``None``: the first one)."""
        if ref is None:
            return self.default_guild
        if isinstance(ref, Guild):
            return ref
        for guild in self.guilds.values():
            if ref in (guild.id, guild.name):
                return guild
        raise LookupError(f"no guild {ref!r} (guilds: {[g.name for g in self.guilds.values()]})")

    def channel(self, ref: Channel | int | str | None, *, guild: Guild | None = None) -> Channel:
        """A channel by object, id or name (``None``: the guild's first text channel)."""
        if isinstance(ref, Channel):
            return ref
        guild = guild or self.default_guild
        candidates = [self.channels[c] for c in guild.channel_ids]
        if ref is None:
            return next(c for c in candidates if c.type is ChannelType.GUILD_TEXT)
        if isinstance(ref, int) and ref in self.channels:
            return self.channels[ref]
        name = ref.lstrip("#") if isinstance(ref, str) else ref
        for channel in candidates:
            if channel.name == name:
                return channel
        raise LookupError(
            f"no channel {ref!r} in {guild.name!r} (has {[c.name for c in candidates]})"
        )

    def user(self, ref: User | int | str) -> User:
        """A user by object, id or name."""
        if isinstance(ref, User):
            return ref
        for user in self.users.values():
            if ref in (user.id, user.name):
                return user
        raise LookupError(f"no user {ref!r} (users: {[u.name for u in self.users.values()]})")

    def get_channel(self, channel_id: int) -> Channel:
        """A channel by id, or Discord's 404 Unknown Channel."""
        try:
            return self.channels[channel_id]
        except KeyError:
            raise unknown("Channel", 10003) from None

    def get_message(self, channel_id: int | None, message_id: int) -> Message:
        """A live message by id (in ``channel_id`` if given), or 404 Unknown Message."""
        message = self.messages.get(message_id)
        if message is None or message.deleted or channel_id not in (None, message.channel_id):
            raise unknown("Message", 10008)
        return message

    # -- permissions ----------------------------------------------------------------------------

    def permissions(self, user: User, channel: Channel) -> int:
        """The permissions Discord would report for ``user`` in ``channel`` (no overwrites)."""
        if channel.guild_id is None:
            return BOT_PERMISSIONS
        guild = self.guilds[channel.guild_id]
        return member_permissions(guild, user.membership(guild.id))

    # -- files and messages ---------------------------------------------------------------------

    def message_with_nonce(self, channel_id: int, nonce: str) -> Message | None:
        """The bot's message sent to ``channel_id`` with ``enforce_nonce`` and ``nonce``, if it
        still exists (the stub keeps nonces for its whole life: longer than Discord's minutes,
        which only matters to tests that wait that long)."""
        message = self.messages.get(self.nonces.get((channel_id, nonce), 0))
        return message if message is not None and not message.deleted else None

    def remember_nonce(self, channel_id: int, nonce: str, message: Message) -> None:
        self.nonces[(channel_id, nonce)] = message.id

    def create_message(
        self,
        channel: Channel,
        payload: Mapping[str, Any],
        uploads: Sequence[Upload] = (),
        *,
        source: str = "channel",
        interaction: InteractionHandle | None = None,
        extra_flags: int = 0,
    ) -> Message:
        """Store a message the bot sent and announce it on the gateway."""
        flags = (payload.get("flags") or 0) | extra_flags
        ephemeral = bool(flags & EPHEMERAL_FLAG)
        message = Message(
            id=self.ids.next(),
            channel_id=channel.id,
            guild_id=channel.guild_id,
            author_id=self.bot.id,
            content=payload.get("content") or "",
            embeds=tuple(copy.deepcopy(payload.get("embeds") or ())),
            components=tuple(copy.deepcopy(payload.get("components") or ())),
            attachments=self.files.resolve(
                payload, uploads, (), channel_id=channel.id, ephemeral=ephemeral
            ),
            flags=flags,
            type=self._message_type(interaction),
            created_at=iso_timestamp(),
            webhook_id=self.application_id if interaction else None,
            application_id=self.application_id if interaction else None,
            interaction_id=interaction.id if interaction else None,
            source=source,
        )
        self.messages[message.id] = message
        self.channel_log[channel.id].append(message.id)
        if not ephemeral:
            self._emit_message("MESSAGE_CREATE", message)
        self.signal.notify()
        return message

    @staticmethod
    def _message_type(interaction: InteractionHandle | None) -> int:
        if interaction is not None and interaction.type is InteractionType.APPLICATION_COMMAND:
            return APPLICATION_COMMAND_MESSAGE
        return DEFAULT_MESSAGE

    def edit_message(
        self, message: Message, payload: Mapping[str, Any], uploads: Sequence[Upload] = ()
    ) -> Message:
        """Apply a ``PATCH``: present fields replace, ``null`` clears, absent fields stay."""
        changes: dict[str, Any] = {}
        if "content" in payload:
            changes["content"] = payload["content"] or ""
        if "embeds" in payload:
            changes["embeds"] = tuple(copy.deepcopy(payload["embeds"] or ()))
        if "components" in payload:
            changes["components"] = tuple(copy.deepcopy(payload["components"] or ()))
        flags = message.flags & ~LOADING_FLAG  # an edit replaces the "thinking..." state
        if payload.get("flags") is not None:
            flags = (flags & ~_EDITABLE_FLAGS) | (payload["flags"] & _EDITABLE_FLAGS)
        attachments = self.files.resolve(
            payload,
            uploads,
            message.attachments,
            channel_id=message.channel_id,
            ephemeral=message.is_ephemeral,
        )
        edited = _replace(
            message, **changes, flags=flags, attachments=attachments, edited_at=iso_timestamp()
        )
        self.messages[message.id] = edited
        if not edited.is_ephemeral:
            self._emit_message("MESSAGE_UPDATE", edited)
        self.signal.notify()
        return edited

    def delete_message(self, message: Message) -> Message:
        """Mark a message deleted (kept, so tests can still see what it was)."""
        deleted = _replace(message, deleted=True)
        self.messages[message.id] = deleted
        if not message.is_ephemeral:
            data: JSON = {"id": str(message.id), "channel_id": str(message.channel_id)}
            if message.guild_id is not None:
                data["guild_id"] = str(message.guild_id)
            self.emit("MESSAGE_DELETE", data, self._message_intent(message))
        self.signal.notify()
        return deleted

    def channel_messages(self, channel: Channel, *, include_deleted: bool = False) -> list[Message]:
        """Current versions of the messages in ``channel``, oldest first."""
        messages = [self.messages[i] for i in self.channel_log[channel.id]]
        return [m for m in messages if include_deleted or not m.deleted]

    @staticmethod
    def _message_intent(message: Message) -> int:
        return GUILD_MESSAGES_INTENT if message.guild_id is not None else DIRECT_MESSAGES_INTENT

    def _emit_message(self, event: str, message: Message) -> None:
        self.emit(event, self.message_json(message), self._message_intent(message))

    def message_json(self, message: Message) -> JSON:
        """A message's payload, with interaction metadata for interaction messages."""
        metadata = None
        handle = self.interactions.get(message.interaction_id or 0)
        if handle is not None:
            user_data = handle.payload.get("member", {}).get("user") or handle.payload.get("user")
            metadata = {
                "id": str(handle.id),
                "type": int(handle.type),
                "user": user_data,
                "authorizing_integration_owners": handle.payload["authorizing_integration_owners"],
            }
            if message.id != handle.original_message_id and handle.original_message_id:
                metadata["original_response_message_id"] = str(handle.original_message_id)
            if handle.clicked_message_id:
                metadata["interacted_message_id"] = str(handle.clicked_message_id)
        return message_payload(
            message, self.users[message.author_id], interaction_metadata=metadata
        )

    # -- interactions ---------------------------------------------------------------------------

    def resolve_option(self, kind: OptionType, value: Any, resolved: JSON, channel: Channel) -> str:
        """Turn a test's value for a snowflake option into its id, filling ``resolved``."""
        guild = self.guilds.get(channel.guild_id or 0)
        if kind is OptionType.ATTACHMENT:
            attachment = self.files.store_file_like(value, channel_id=channel.id)
            resolved.setdefault("attachments", {})[str(attachment.id)] = attachment_payload(
                attachment
            )
            return str(attachment.id)
        if kind is OptionType.MENTIONABLE:
            is_role = isinstance(value, Role) or (
                guild is not None
                and isinstance(value, str)
                and any(r.name == value for r in guild.roles.values())
            )
            kind = OptionType.ROLE if is_role else OptionType.USER
        if kind is OptionType.ROLE:
            if guild is None:
                raise LookupError("role options need a guild channel")
            role = value if isinstance(value, Role) else guild.role_named(value)
            resolved.setdefault("roles", {})[str(role.id)] = role_payload(role)
            return str(role.id)
        if kind is OptionType.CHANNEL:
            channel = self.channel(value, guild=guild)
            resolved.setdefault("channels", {})[str(channel.id)] = {
                **channel_payload(channel, self.users),
                "permissions": str(BOT_PERMISSIONS),
            }
            return str(channel.id)
        user = self.user(value)
        resolved.setdefault("users", {})[str(user.id)] = user_payload(user)
        if guild is not None and guild.id in user.memberships:
            resolved.setdefault("members", {})[str(user.id)] = member_payload(
                user, guild, include_user=False, with_permissions=True
            )
        return str(user.id)

    def new_interaction(
        self,
        interaction_type: InteractionType,
        data: JSON,
        *,
        user: User,
        channel: Channel,
        locale: str | None,
        label: str,
        message: Message | None = None,
    ) -> InteractionHandle:
        """Build an ``INTERACTION_CREATE`` payload and its handle (not yet dispatched)."""
        interaction_id = self.ids.next()
        token = f"aW50ZXJhY3Rpb246{interaction_id}:{secrets.token_urlsafe(24)}"
        payload: JSON = {
            "id": str(interaction_id),
            "application_id": str(self.application_id),
            "type": int(interaction_type),
            "data": data,
            "token": token,
            "version": 1,
            "locale": locale or user.locale,
            "app_permissions": str(BOT_PERMISSIONS),
            "attachment_size_limit": self.attachment_size_limit,
            "entitlements": [],
            "channel_id": str(channel.id),
            "channel": {
                **channel_payload(channel, self.users),
                "permissions": str(self.permissions(user, channel)),
            },
        }
        if channel.guild_id is not None:
            guild = self.guilds[channel.guild_id]
            payload.update(
                guild_id=str(guild.id),
                guild=partial_guild_payload(guild),
                guild_locale=guild.locale,
                member=member_payload(user, guild, with_permissions=True),
                context=0,  # GUILD
                authorizing_integration_owners={"0": str(guild.id)},
            )
        else:
            payload.update(
                user=user_payload(user),
                context=1,  # BOT_DM
                authorizing_integration_owners={"1": str(user.id)},
            )
        if message is not None:
            payload["message"] = self.message_json(message)
        handle = InteractionHandle(
            interaction_id=interaction_id,
            token=token,
            interaction_type=interaction_type,
            label=label,
            payload=payload,
            signal=self.signal,
            messages=self.messages,
            clicked_message_id=message.id if message else None,
        )
        self.interactions[handle.id] = handle
        self.tokens[token] = handle
        return handle

    def record_request(self, request: RecordedRequest) -> None:
        """Log a served request and wake waiters."""
        self.requests.append(request)
        self.signal.notify()


def _replace(message: Message, **changes: Any) -> Message:
    """A new version of a frozen message."""
    return dataclasses.replace(message, **changes)


def raise_for_unknown_webhook(application_id: int, webhook_id: int) -> None:
    """Interaction webhooks are addressed by the application id; anything else is unknown."""
    if webhook_id != application_id:
        raise DiscordError(404, 10015, "Unknown Webhook")

"""Plain data classes for what the stub knows: users, guilds, channels, messages, files.

Entities that change in place (users gaining roles, guilds gaining members) are mutable;
messages and attachments are frozen so that every recorded event keeps the exact version the
bot produced at that moment, and an edit makes a new :class:`Message`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

# Permission bits used by the defaults (Discord's documented values).
ADMINISTRATOR = 1 << 3
ALL_PERMISSIONS = (1 << 51) - 1
DEFAULT_EVERYONE_PERMISSIONS = (
    (1 << 6)  # ADD_REACTIONS
    | (1 << 10)  # VIEW_CHANNEL
    | (1 << 11)  # SEND_MESSAGES
    | (1 << 14)  # EMBED_LINKS
    | (1 << 15)  # ATTACH_FILES
    | (1 << 16)  # READ_MESSAGE_HISTORY
    | (1 << 31)  # USE_APPLICATION_COMMANDS
    | (1 << 38)  # SEND_MESSAGES_IN_THREADS
)
BOT_PERMISSIONS = DEFAULT_EVERYONE_PERMISSIONS | (1 << 13) | (1 << 34) | (1 << 35)

EPHEMERAL_FLAG = 1 << 6
LOADING_FLAG = 1 << 7
COMPONENTS_V2_FLAG = 1 << 15

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ChannelType(IntEnum):
    """The channel types the stub models."""

    GUILD_TEXT = 0
    DM = 1
    PUBLIC_THREAD = 11
    PRIVATE_THREAD = 12


class ComponentType(IntEnum):
    """Message component types (buttons, selects, layout pieces)."""

    ACTION_ROW = 1
    BUTTON = 2
    STRING_SELECT = 3
    TEXT_INPUT = 4
    USER_SELECT = 5
    ROLE_SELECT = 6
    MENTIONABLE_SELECT = 7
    CHANNEL_SELECT = 8
    SECTION = 9
    CONTAINER = 17
    LABEL = 18


class InteractionType(IntEnum):
    """What a user did to cause an ``INTERACTION_CREATE``."""

    APPLICATION_COMMAND = 2
    MESSAGE_COMPONENT = 3
    AUTOCOMPLETE = 4
    MODAL_SUBMIT = 5


class CallbackType(IntEnum):
    """Interaction callback (response) types the bot may send."""

    PONG = 1
    CHANNEL_MESSAGE = 4
    DEFERRED_CHANNEL_MESSAGE = 5
    DEFERRED_UPDATE_MESSAGE = 6
    UPDATE_MESSAGE = 7
    AUTOCOMPLETE_RESULT = 8
    MODAL = 9
    LAUNCH_ACTIVITY = 12


@dataclass(frozen=True)
class GuildSpec:
    """How to build one guild when the stub starts.

    Defaults describe the course server from the design: the class channel first (it is where
    interactions happen unless a test says otherwise), a general channel, a results thread, and
    an admin role.
    """

    name: str = "Diffusion Models Course"
    channels: Sequence[str] = ("diffusion-models-class", "general")
    #: thread name -> parent channel name
    threads: Mapping[str, str] = field(
        default_factory=lambda: {"imagine-results": "diffusion-models-class"}
    )
    #: role name -> permission bits; ``@everyone`` is always created from ``everyone_permissions``
    roles: Mapping[str, int] = field(default_factory=lambda: {"Course Admin": ADMINISTRATOR})
    everyone_permissions: int = DEFAULT_EVERYONE_PERMISSIONS
    locale: str = "en-US"


@dataclass
class Role:
    """A guild role. The ``@everyone`` role shares its guild's id, as on Discord."""

    id: int
    name: str
    permissions: int
    position: int
    managed: bool = False


@dataclass
class Membership:
    """A user's membership of one guild."""

    guild_id: int
    role_ids: list[int]
    joined_at: str
    nick: str | None = None
    #: computed permissions sent in interactions; ``None`` means derive them from the roles
    permissions: int | None = None


@dataclass
class User:
    """A Discord user (a member of zero or more guilds)."""

    id: int
    name: str
    global_name: str | None = None
    locale: str = "en-US"
    bot: bool = False
    memberships: dict[int, Membership] = field(default_factory=dict)

    def membership(self, guild_id: int) -> Membership:
        """This user's membership of ``guild_id``; a clear error if they are not a member."""
        try:
            return self.memberships[guild_id]
        except KeyError:
            raise LookupError(f"user {self.name!r} is not a member of guild {guild_id}") from None


@dataclass
class Channel:
    """A guild text channel, a thread, or a DM channel."""

    id: int
    name: str
    type: ChannelType
    guild_id: int | None
    position: int = 0
    parent_id: int | None = None
    owner_id: int | None = None
    recipient_ids: list[int] = field(default_factory=list)
    topic: str | None = None

    @property
    def is_thread(self) -> bool:
        """Whether this channel is a thread."""
        return self.type in (ChannelType.PUBLIC_THREAD, ChannelType.PRIVATE_THREAD)


@dataclass
class Guild:
    """A guild with its roles (in position order), channel ids and member ids."""

    id: int
    name: str
    owner_id: int
    locale: str
    roles: dict[int, Role] = field(default_factory=dict)
    channel_ids: list[int] = field(default_factory=list)
    member_ids: list[int] = field(default_factory=list)

    def role_named(self, name: str) -> Role:
        """The role called ``name``; the error lists the roles that exist."""
        for role in self.roles.values():
            if role.name == name:
                return role
        known = ", ".join(repr(r.name) for r in self.roles.values())
        raise LookupError(f"guild {self.name!r} has no role {name!r} (roles: {known})")


@dataclass(frozen=True)
class Upload:
    """A file part of a multipart request, exactly as it arrived."""

    field_name: str
    filename: str
    data: bytes
    content_type: str


@dataclass(frozen=True)
class Attachment:
    """A stored file, downloadable from the stub's CDN route at :attr:`url`."""

    id: int
    filename: str
    data: bytes
    content_type: str
    url: str
    description: str | None = None
    title: str | None = None
    ephemeral: bool = False

    @property
    def size(self) -> int:
        """Size in bytes."""
        return len(self.data)

    @property
    def is_png(self) -> bool:
        """Whether the bytes are a PNG image (by signature, not by name)."""
        return self.data.startswith(PNG_SIGNATURE)

    @property
    def is_spoiler(self) -> bool:
        """Whether Discord would show it as a spoiler."""
        return self.filename.startswith("SPOILER_")

    @property
    def image_size(self) -> tuple[int, int] | None:
        """``(width, height)`` read from a PNG header, else ``None``."""
        if not self.is_png or len(self.data) < 24:
            return None
        width, height = struct.unpack(">II", self.data[16:24])
        return width, height


def iter_components(components: Sequence[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    """Walk components depth-first, through action rows, containers, sections and labels."""
    for component in components:
        yield component
        yield from iter_components(component.get("components", ()))
        for key in ("accessory", "component"):
            child = component.get(key)
            if child:
                yield from iter_components([child])


@dataclass(frozen=True)
class Message:
    """One version of a message. Edits create a new instance with the same id."""

    id: int
    channel_id: int
    guild_id: int | None
    author_id: int
    content: str = ""
    embeds: tuple[dict[str, Any], ...] = ()
    components: tuple[dict[str, Any], ...] = ()
    attachments: tuple[Attachment, ...] = ()
    flags: int = 0
    type: int = 0
    created_at: str = ""
    edited_at: str | None = None
    webhook_id: int | None = None
    application_id: int | None = None
    interaction_id: int | None = None
    #: where the message came from: "channel", "interaction" or "followup"
    source: str = "channel"
    deleted: bool = False

    @property
    def is_ephemeral(self) -> bool:
        """Whether only the invoking user can see it."""
        return bool(self.flags & EPHEMERAL_FLAG)

    @property
    def is_loading(self) -> bool:
        """Whether this is a deferred "Bot is thinking..." placeholder."""
        return bool(self.flags & LOADING_FLAG)

    @property
    def png_attachments(self) -> list[Attachment]:
        """Attachments whose bytes are PNG images."""
        return [a for a in self.attachments if a.is_png]

    def iter_components(self) -> Iterator[Mapping[str, Any]]:
        """Every component in the message, nested ones included."""
        return iter_components(self.components)

    @property
    def custom_ids(self) -> list[str]:
        """Custom ids of all interactive components, in layout order."""
        return [c["custom_id"] for c in self.iter_components() if "custom_id" in c]

    def component(self, custom_id: str) -> Mapping[str, Any]:
        """The component with ``custom_id``; the error lists the ids that exist."""
        for component in self.iter_components():
            if component.get("custom_id") == custom_id:
                return component
        raise LookupError(
            f"message {self.id} has no component {custom_id!r} (custom ids: {self.custom_ids})"
        )

    @property
    def buttons(self) -> list[Mapping[str, Any]]:
        """Button components, in layout order."""
        return [c for c in self.iter_components() if c.get("type") == ComponentType.BUTTON]

    def summary(self) -> str:
        """A one-line description for failure messages."""
        parts = [f"id={self.id}"]
        if self.content:
            content = self.content if len(self.content) <= 80 else self.content[:77] + "..."
            parts.append(f"content={content!r}")
        if self.embeds:
            titles = [e.get("title") or e.get("description", "")[:40] for e in self.embeds]
            parts.append(f"embeds={titles}")
        if self.attachments:
            parts.append(
                "attachments=["
                + ", ".join(
                    f"{a.filename} ({a.content_type}, {a.size} B)" for a in self.attachments
                )
                + "]"
            )
        if self.components:
            labels = [c.get("label") or c.get("custom_id") for c in self.buttons]
            parts.append(f"buttons={labels}" if labels else f"components={len(self.components)}")
        if self.is_ephemeral:
            parts.append("ephemeral")
        if self.is_loading:
            parts.append("loading")
        if self.deleted:
            parts.append("DELETED")
        return " ".join(parts)

"""A Discord-compatible stub server for testing the bot with the real discord.py client.

See ``README.md`` in this folder. The entry point is :class:`DiscordStub`::

    async with DiscordStub() as stub, stub.running(make_bot()) as bot:
        handle = await stub.invoke_slash("imagine", {"prompt": "a cat"})
        await handle.wait_for_response()
"""

from .driver import DiscordStub
from .faults import Fault
from .gateway import ConnectionRecord
from .images import png_bytes
from .interactions import EventKind, InteractionEvent, InteractionHandle
from .models.entities import (
    Attachment,
    CallbackType,
    Channel,
    GuildSpec,
    InteractionType,
    Message,
    Role,
    Upload,
    User,
)
from .records import RecordedRequest
from .waiting import StubTimeout

__all__ = [
    "Attachment",
    "CallbackType",
    "Channel",
    "ConnectionRecord",
    "DiscordStub",
    "EventKind",
    "Fault",
    "GuildSpec",
    "InteractionEvent",
    "InteractionHandle",
    "InteractionType",
    "Message",
    "RecordedRequest",
    "Role",
    "StubTimeout",
    "Upload",
    "User",
    "png_bytes",
]

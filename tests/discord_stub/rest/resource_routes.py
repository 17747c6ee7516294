"""Routes used with the bot token, and the CDN route serving stored files.

Users, gateway, application, application commands, channels, messages, threads and guilds.
"""

from __future__ import annotations

from aiohttp import web

from ..images import png_bytes
from ..models.entities import EPHEMERAL_FLAG, ChannelType
from ..models.payloads import (
    application_payload,
    bot_user_payload,
    channel_payload,
    guild_create_payload,
    member_payload,
    role_payload,
    user_payload,
)
from ..models.validation import DiscordError, unknown, validate_message
from .base import RouteBase, json_ok, no_content_response


class ResourceRoutes(RouteBase):
    """Everything except interactions."""

    # -- users, gateway, application ------------------------------------------------------------

    async def get_me(self, request: web.Request) -> web.Response:
        """The bot user (discord.py's login call)."""
        return json_ok(bot_user_payload(self.state.bot))

    async def get_user(self, request: web.Request) -> web.Response:
        """Any known user."""
        user = self.state.users.get(self._id(request, "user_id"))
        if user is None:
            raise unknown("User", 10013)
        return json_ok(user_payload(user))

    async def create_dm(self, request: web.Request) -> web.Response:
        """Open (or reuse) the DM channel with a user."""
        recipient = self.state.users.get(int(self._body(request).object.get("recipient_id", 0)))
        if recipient is None:
            raise unknown("User", 10013)
        return json_ok(channel_payload(self.state.dm_channel(recipient), self.state.users))

    async def get_gateway(self, request: web.Request) -> web.Response:
        """Where the websocket gateway is."""
        return json_ok({"url": self._gateway_url()})

    async def get_gateway_bot(self, request: web.Request) -> web.Response:
        """The gateway plus sharding advice (AutoShardedClient asks this)."""
        limit = {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}
        return json_ok({"url": self._gateway_url(), "shards": 1, "session_start_limit": limit})

    async def get_application(self, request: web.Request) -> web.Response:
        """The bot's application (discord.py's login reads its id and flags)."""
        state = self.state
        return json_ok(application_payload(state.application_id, state.bot, state.owner))

    # -- application commands -------------------------------------------------------------------

    async def list_commands(self, request: web.Request) -> web.Response:
        """``GET`` commands of a scope."""
        return json_ok(self.state.commands.list(self._scope(request)))

    async def overwrite_commands(self, request: web.Request) -> web.Response:
        """``PUT`` bulk overwrite (what ``CommandTree.sync`` sends)."""
        scope = self._scope(request)
        payload = self._body(request).json
        if not isinstance(payload, list):
            raise DiscordError(400, 50035, "Invalid Form Body")
        return json_ok(self.state.commands.overwrite(scope, payload))

    async def upsert_command(self, request: web.Request) -> web.Response:
        """``POST`` one command."""
        scope = self._scope(request)
        return json_ok(self.state.commands.upsert(scope, self._body(request).object), status=201)

    async def get_command(self, request: web.Request) -> web.Response:
        """``GET`` one command."""
        scope = self._scope(request)
        return json_ok(self.state.commands.get(scope, self._id(request, "command_id")))

    async def edit_command(self, request: web.Request) -> web.Response:
        """``PATCH`` one command."""
        scope = self._scope(request)
        command_id = self._id(request, "command_id")
        return json_ok(self.state.commands.edit(scope, command_id, self._body(request).object))

    async def delete_command(self, request: web.Request) -> web.Response:
        """``DELETE`` one command."""
        self.state.commands.delete(self._scope(request), self._id(request, "command_id"))
        return no_content_response()

    async def list_command_permissions(self, request: web.Request) -> web.Response:
        """No per-command permission overrides in the stub."""
        self._scope(request)
        return json_ok([])

    # -- channels and messages ------------------------------------------------------------------

    async def get_channel(self, request: web.Request) -> web.Response:
        """A channel object."""
        return json_ok(channel_payload(self._channel(request), self.state.users))

    async def list_messages(self, request: web.Request) -> web.Response:
        """Channel history, newest first (``limit``, ``before``, ``after``)."""
        channel = self._channel(request)
        messages = self.state.channel_messages(channel)
        if "before" in request.query:
            messages = [m for m in messages if m.id < int(request.query["before"])]
        if "after" in request.query:
            messages = [m for m in messages if m.id > int(request.query["after"])]
        limit = int(request.query.get("limit", 50))
        newest = list(reversed([m for m in messages if not m.is_ephemeral]))[:limit]
        return json_ok([self.state.message_json(m) for m in newest])

    async def create_message(self, request: web.Request) -> web.Response:
        """``POST /channels/{id}/messages`` with the bot token (JSON or multipart)."""
        channel = self._channel(request)
        body = self._body(request)
        validate_message(
            body.object, body.uploads, size_limit=self.state.attachment_size_limit, editing=False
        )
        payload = {**body.object, "flags": (body.object.get("flags") or 0) & ~EPHEMERAL_FLAG}
        nonce = body.object.get("nonce") if body.object.get("enforce_nonce") else None
        # Discord answers a repeated nonce (same author and channel, a few minutes) with the
        # message it already made, and makes no new one.
        if nonce is not None and (earlier := self.state.message_with_nonce(channel.id, str(nonce))):
            return json_ok(self.state.message_json(earlier))
        message = self.state.create_message(channel, payload, body.uploads)
        if nonce is not None:
            self.state.remember_nonce(channel.id, str(nonce), message)
        return json_ok(self.state.message_json(message))

    async def get_message(self, request: web.Request) -> web.Response:
        """One message."""
        channel = self._channel(request)
        message = self.state.get_message(channel.id, self._id(request, "message_id"))
        return json_ok(self.state.message_json(message))

    async def edit_message(self, request: web.Request) -> web.Response:
        """Edit one of the bot's messages."""
        channel = self._channel(request)
        message = self.state.get_message(channel.id, self._id(request, "message_id"))
        if message.author_id != self.state.bot.id:
            raise DiscordError(403, 50005, "Cannot edit a message authored by another user")
        body = self._body(request)
        validate_message(
            body.object, body.uploads, size_limit=self.state.attachment_size_limit, editing=True
        )
        return json_ok(
            self.state.message_json(self.state.edit_message(message, body.object, body.uploads))
        )

    async def delete_message(self, request: web.Request) -> web.Response:
        """Delete a message."""
        channel = self._channel(request)
        self.state.delete_message(
            self.state.get_message(channel.id, self._id(request, "message_id"))
        )
        return no_content_response()

    async def no_content(self, request: web.Request) -> web.Response:
        """Routes whose effect the stub only records (typing, reactions)."""
        self._channel(request)
        return no_content_response()

    async def create_thread(self, request: web.Request) -> web.Response:
        """A thread in a channel, optionally from a message (then it shares the message's id)."""
        parent = self._channel(request)
        if parent.type is not ChannelType.GUILD_TEXT:
            raise DiscordError(400, 50024, "Cannot execute action on this channel type")
        body = self._body(request).object
        thread_id = None
        if "message_id" in request.match_info:
            thread_id = self.state.get_message(parent.id, self._id(request, "message_id")).id
        thread = self.state.create_thread(
            parent,
            body.get("name") or "thread",
            private=body.get("type") == ChannelType.PRIVATE_THREAD,
            thread_id=thread_id,
        )
        return json_ok(channel_payload(thread, self.state.users), status=201)

    # -- guilds ---------------------------------------------------------------------------------

    async def get_guild(self, request: web.Request) -> web.Response:
        """A guild object (with roles; without members, as over REST)."""
        guild = self._guild(request)
        payload = guild_create_payload(guild, [], [], self.state.users)
        for key in ("members", "channels", "threads", "joined_at", "large", "member_count"):
            payload.pop(key, None)
        return json_ok(payload)

    async def get_guild_channels(self, request: web.Request) -> web.Response:
        """The guild's channels (threads are not listed here, as on Discord)."""
        guild = self._guild(request)
        channels = [self.state.channels[c] for c in guild.channel_ids]
        return json_ok([channel_payload(c, self.state.users) for c in channels if not c.is_thread])

    async def get_guild_roles(self, request: web.Request) -> web.Response:
        """The guild's roles."""
        return json_ok([role_payload(r) for r in self._guild(request).roles.values()])

    async def get_member(self, request: web.Request) -> web.Response:
        """One member of the guild."""
        guild = self._guild(request)
        user = self.state.users.get(self._id(request, "user_id"))
        if user is None or guild.id not in user.memberships:
            raise unknown("Member", 10007)
        return json_ok(member_payload(user, guild))

    # -- CDN ------------------------------------------------------------------------------------

    async def cdn_attachment(self, request: web.Request) -> web.Response:
        """The bytes of a stored attachment (``Attachment.read()`` fetches this)."""
        attachment = self.state.files.attachments.get(self._id(request, "attachment_id"))
        if attachment is None or attachment.filename != request.match_info["filename"]:
            raise DiscordError(404, 0, "Not Found")
        return web.Response(body=attachment.data, content_type=attachment.content_type)

    async def cdn_default_avatar(self, request: web.Request) -> web.Response:
        """Default avatars (``Asset.BASE`` points here while patched)."""
        return web.Response(body=png_bytes(4, 4), content_type="image/png")

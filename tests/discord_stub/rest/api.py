"""The REST API application: route table, bot-token check, and the recording middleware.

Every request passes through :meth:`RestApi.middleware`, which parses the body once, applies
injected faults, turns :class:`DiscordError` into Discord's JSON errors, and records the
request. Unknown routes get ``404 {"message": "Unknown", "code": 0}`` and are recorded as
unknown so tests notice them.
"""

from __future__ import annotations

import copy
import logging
import traceback
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import hdrs, web

from ..models.validation import DiscordError, unauthorized, unknown_route
from ..records import RecordedRequest
from ..responses import json_response
from .body import BODY_KEY, ParsedBody, parse_body
from .interaction_routes import InteractionRoutes
from .resource_routes import ResourceRoutes

log = logging.getLogger(__name__)

API_PREFIX = "/api/v10"
GATEWAY_PATH = "/gateway"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class RestApi(InteractionRoutes, ResourceRoutes):
    """The REST and CDN routes, bound to one :class:`StubState`."""

    def install(self, app: web.Application) -> None:
        """Register every route on ``app``."""
        bot = self._bot_auth
        routes: list[tuple[str, str, Handler]] = [
            ("GET", "/users/@me", bot(self.get_me)),
            ("GET", "/users/{user_id}", bot(self.get_user)),
            ("POST", "/users/@me/channels", bot(self.create_dm)),
            ("GET", "/gateway", self.get_gateway),
            ("GET", "/gateway/bot", bot(self.get_gateway_bot)),
            ("GET", "/oauth2/applications/@me", bot(self.get_application)),
            ("GET", "/applications/@me", bot(self.get_application)),
            # application commands, global and per guild
            ("GET", "/applications/{app_id}/commands", bot(self.list_commands)),
            ("PUT", "/applications/{app_id}/commands", bot(self.overwrite_commands)),
            ("POST", "/applications/{app_id}/commands", bot(self.upsert_command)),
            ("GET", "/applications/{app_id}/commands/{command_id}", bot(self.get_command)),
            ("PATCH", "/applications/{app_id}/commands/{command_id}", bot(self.edit_command)),
            ("DELETE", "/applications/{app_id}/commands/{command_id}", bot(self.delete_command)),
            ("GET", "/applications/{app_id}/guilds/{guild_id}/commands", bot(self.list_commands)),
            (
                "PUT",
                "/applications/{app_id}/guilds/{guild_id}/commands",
                bot(self.overwrite_commands),
            ),
            ("POST", "/applications/{app_id}/guilds/{guild_id}/commands", bot(self.upsert_command)),
            (
                "GET",
                "/applications/{app_id}/guilds/{guild_id}/commands/permissions",
                bot(self.list_command_permissions),
            ),
            (
                "GET",
                "/applications/{app_id}/guilds/{guild_id}/commands/{command_id}",
                bot(self.get_command),
            ),
            (
                "PATCH",
                "/applications/{app_id}/guilds/{guild_id}/commands/{command_id}",
                bot(self.edit_command),
            ),
            (
                "DELETE",
                "/applications/{app_id}/guilds/{guild_id}/commands/{command_id}",
                bot(self.delete_command),
            ),
            # interactions: the callback, then the interaction webhook (no bot token needed)
            ("POST", "/interactions/{interaction_id}/{token}/callback", self.interaction_callback),
            ("GET", "/webhooks/{app_id}/{token}/messages/{message_id}", self.get_webhook_message),
            (
                "PATCH",
                "/webhooks/{app_id}/{token}/messages/{message_id}",
                self.edit_webhook_message,
            ),
            (
                "DELETE",
                "/webhooks/{app_id}/{token}/messages/{message_id}",
                self.delete_webhook_message,
            ),
            ("POST", "/webhooks/{app_id}/{token}", self.execute_webhook),
            # channels and messages sent with the bot token
            ("GET", "/channels/{channel_id}", bot(self.get_channel)),
            ("GET", "/channels/{channel_id}/messages", bot(self.list_messages)),
            ("POST", "/channels/{channel_id}/messages", bot(self.create_message)),
            ("GET", "/channels/{channel_id}/messages/{message_id}", bot(self.get_message)),
            ("PATCH", "/channels/{channel_id}/messages/{message_id}", bot(self.edit_message)),
            ("DELETE", "/channels/{channel_id}/messages/{message_id}", bot(self.delete_message)),
            ("POST", "/channels/{channel_id}/typing", bot(self.no_content)),
            (
                "PUT",
                "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me",
                bot(self.no_content),
            ),
            (
                "DELETE",
                "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me",
                bot(self.no_content),
            ),
            ("POST", "/channels/{channel_id}/threads", bot(self.create_thread)),
            (
                "POST",
                "/channels/{channel_id}/messages/{message_id}/threads",
                bot(self.create_thread),
            ),
            # guilds
            ("GET", "/guilds/{guild_id}", bot(self.get_guild)),
            ("GET", "/guilds/{guild_id}/channels", bot(self.get_guild_channels)),
            ("GET", "/guilds/{guild_id}/roles", bot(self.get_guild_roles)),
            ("GET", "/guilds/{guild_id}/members/{user_id}", bot(self.get_member)),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, API_PREFIX + path, handler)
        app.router.add_get(
            "/attachments/{channel_id}/{attachment_id}/{filename}", self.cdn_attachment
        )
        app.router.add_get("/embed/avatars/{index}.png", self.cdn_default_avatar)

    def _bot_auth(self, handler: Handler) -> Handler:
        """Require ``Authorization: Bot <token>`` (any token when the stub has none set)."""

        async def checked(request: web.Request) -> web.StreamResponse:
            header = request.headers.get(hdrs.AUTHORIZATION, "")
            if not header.startswith("Bot ") or (
                self.token is not None and header != f"Bot {self.token}"
            ):
                raise unauthorized()
            return await handler(request)

        return checked

    def _record_dropped(self, request: web.Request, path: str, body: ParsedBody) -> None:
        self.state.record_request(
            RecordedRequest(
                method=request.method,
                path=path,
                query=dict(request.query),
                json=copy.deepcopy(body.json),
                files=body.uploads,
                status=0,
                known=True,
                error=None,
                injected=True,
            )
        )

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Parse, inject faults, map errors, record. The gateway websocket passes straight by."""
        if request.path == GATEWAY_PATH:
            return await handler(request)
        path = request.path.removeprefix(API_PREFIX)
        known = request.match_info.http_exception is None
        body = ParsedBody()
        error: DiscordError | None = None
        injected = False
        response: web.StreamResponse
        try:
            body = await parse_body(request)
            request[BODY_KEY] = body
            fault = self.faults.take(request.method, path)
            if fault is not None and fault.drop:
                if fault.drop == "after" and known:  # done, then the answer is lost
                    response = await handler(request)
                self._record_dropped(request, path, body)
                assert request.transport is not None
                request.transport.close()
                raise ConnectionResetError("dropped by a fault")
            if fault is not None:
                injected = True
                response = fault.response()
            elif not known:
                raise unknown_route()
            else:
                response = await handler(request)
        except DiscordError as exc:
            error = exc
        except (ConnectionResetError, aiohttp.ClientPayloadError):
            # The client hung up mid-request (a bot shutting down cancels its uploads): that
            # is the client's business, not a stub bug, and nobody is left to answer.
            raise
        except Exception as exc:
            # A bug in the stub. Answer 400 rather than 5xx: discord.py would retry a 5xx
            # for many seconds; the error is reported when the stub stops.
            details = "".join(traceback.format_exception(exc))
            self.state.internal_errors.append(f"{request.method} {path}\n{details}")
            log.error("discord stub failed on %s %s\n%s", request.method, path, details)
            error = DiscordError(400, -1, f"discord stub internal error: {exc!r}")
        if error is not None:
            response = json_response(error.body(), status=error.status, headers=error.headers)
        record = RecordedRequest(
            method=request.method,
            path=path,
            query=dict(request.query),
            json=copy.deepcopy(body.json),
            files=body.uploads,
            status=response.status,
            known=known,
            error=error.body() if error is not None else None,
            injected=injected,
        )
        self.state.record_request(record)
        handle = self.state.tokens.get(request.match_info.get("token", ""))
        if handle is not None and response.status >= 400:
            handle.reject(record)
        return response

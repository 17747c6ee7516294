"""Shared helpers of the route handlers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from ..faults import FaultInjector
from ..models.entities import Channel, Guild
from ..models.validation import DiscordError, FormErrors, unknown
from ..responses import json_response
from ..state import StubState
from .body import BODY_KEY, ParsedBody

JSON = dict[str, Any]


def json_ok(data: Any, status: int = 200) -> web.Response:
    """A successful JSON response."""
    return json_response(data, status=status)


def no_content_response() -> web.Response:
    """``204 No Content`` (deletes, typing, followups without ``wait``)."""
    return web.Response(status=204)


def truthy(value: str | None) -> bool:
    """A query flag as discord.py sends them (``wait=1``, ``with_response=1``)."""
    return (value or "").lower() in ("1", "true")


class RouteBase:
    """State and request helpers shared by the route groups."""

    def __init__(
        self,
        state: StubState,
        faults: FaultInjector,
        *,
        token: str | None,
        gateway_url: Callable[[], str],
        callback_deadline: Callable[[], float],
        token_lifetime: Callable[[], float],
    ) -> None:
        self.state = state
        self.faults = faults
        self.token = token
        self._gateway_url = gateway_url
        self._callback_deadline = callback_deadline
        self._token_lifetime = token_lifetime

    @staticmethod
    def _body(request: web.Request) -> ParsedBody:
        return request.get(BODY_KEY) or ParsedBody()

    @staticmethod
    def _id(request: web.Request, name: str) -> int:
        """A snowflake from the path; Discord answers 400 for a non-numeric one."""
        try:
            return int(request.match_info[name])
        except ValueError:
            errors = FormErrors()
            errors.add([name], "NUMBER_TYPE_COERCE", "Value is not snowflake.")
            raise errors.error() from None

    def _check_app(self, request: web.Request) -> None:
        if self._id(request, "app_id") != self.state.application_id:
            raise DiscordError(403, 50001, "Missing Access")

    def _scope(self, request: web.Request) -> int | None:
        """The command scope of a route: ``None`` (global) or a guild id."""
        self._check_app(request)
        if "guild_id" not in request.match_info:
            return None
        guild_id = self._id(request, "guild_id")
        if guild_id not in self.state.guilds:
            raise DiscordError(403, 50001, "Missing Access")
        return guild_id

    def _channel(self, request: web.Request) -> Channel:
        return self.state.get_channel(self._id(request, "channel_id"))

    def _guild(self, request: web.Request) -> Guild:
        guild = self.state.guilds.get(self._id(request, "guild_id"))
        if guild is None:
            raise unknown("Guild", 10004)
        return guild

"""Where discord.py sends REST calls and opens the gateway, from settings.

discord.py keeps both as class attributes (``Route.BASE`` for every REST call, webhook and
interaction routes included; ``DiscordWebSocket.DEFAULT_GATEWAY`` for the websocket, which
a non-sharded client uses without asking ``/gateway/bot``). Large bots point them at
proxies; the tests point them at a local stub.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route


@contextlib.contextmanager
def use_endpoints(api_base_url: str, gateway_url: str = "") -> Iterator[None]:
    """Point discord.py at ``api_base_url`` (and ``gateway_url`` when set) while inside."""
    saved = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    Route.BASE = api_base_url.rstrip("/")
    if gateway_url:
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
    try:
        yield
    finally:
        Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = saved

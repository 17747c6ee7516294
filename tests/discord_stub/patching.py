"""Point discord.py at the stub: every base URL it builds requests from.

discord.py 2.7 has three, all class attributes read when a request or asset is built:

* ``discord.http.Route.BASE`` - every REST route, *including* the interaction callback and the
  interaction webhook routes (``discord.webhook.async_`` builds them with the same ``Route``);
* ``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY`` - ``Client.connect`` opens the gateway
  at this URL directly; only ``AutoShardedClient`` asks ``GET /gateway/bot``. After READY the
  client reconnects to READY's ``resume_gateway_url``, which the stub sets to itself;
* ``discord.asset.Asset.BASE`` - CDN URLs of avatars, icons... Attachment URLs come from the
  payloads, which already point at the stub.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def patch_discord(api_base: str, gateway_url: str, cdn_base: str) -> Iterator[None]:
    """Point discord.py's base URLs at the stub, restoring the previous values afterwards.

    The attributes are process-wide, so one stub at a time per process.
    """
    import yarl
    from discord.asset import Asset
    from discord.gateway import DiscordWebSocket
    from discord.http import Route

    saved = (Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY, Asset.BASE)
    Route.BASE = api_base
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
    Asset.BASE = cdn_base
    try:
        yield
    finally:
        Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY, Asset.BASE = saved

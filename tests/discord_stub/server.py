"""The aiohttp application serving REST, CDN and gateway on one 127.0.0.1 port."""

from __future__ import annotations

import socket

from aiohttp import web

from .gateway import GatewayHub
from .rest import API_PREFIX, GATEWAY_PATH, RestApi

# Large enough for JSON bodies; uploads are streamed and limited by the stub's own size check.
_MAX_BODY = 256 * 1024 * 1024


class StubServer:
    """Owns the listening socket and the aiohttp runner; ``stop`` leaves nothing running."""

    def __init__(self, rest: RestApi, gateway: GatewayHub) -> None:
        self.rest = rest
        self.gateway = gateway
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        """What ``discord.http.Route.BASE`` should be."""
        return self.url + API_PREFIX

    @property
    def gateway_url(self) -> str:
        """The websocket gateway URL (without query; discord.py adds ``v``, ``encoding``...)."""
        return f"ws://127.0.0.1:{self.port}{GATEWAY_PATH}"

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1."""
        app = web.Application(middlewares=[self.rest.middleware], client_max_size=_MAX_BODY)
        self.rest.install(app)
        app.router.add_get(GATEWAY_PATH, self.gateway.handle)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        # Binding the socket ourselves gives the port without reaching into aiohttp internals.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
            site = web.SockSite(runner, sock)
            await site.start()
        except BaseException:
            sock.close()
            await runner.cleanup()
            raise
        self._runner = runner

    async def stop(self) -> None:
        """Close websockets, then the server (bounded by ``shutdown_timeout``)."""
        if self._runner is None:
            return
        await self.gateway.close_all()
        await self._runner.cleanup()
        self._runner = None

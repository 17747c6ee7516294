"""JSON responses with the exact ``Content-Type`` discord.py expects."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web


def json_response(
    data: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A JSON response whose ``Content-Type`` is exactly ``application/json``.

    discord.py only decodes a body as JSON when the header equals ``application/json``;
    aiohttp's ``json_response`` appends ``; charset=utf-8``, which discord.py would hand to
    the bot as a plain string.
    """
    body = json.dumps(data, separators=(",", ":")).encode()
    return web.Response(
        body=body, status=status, headers={**(headers or {}), "Content-Type": "application/json"}
    )

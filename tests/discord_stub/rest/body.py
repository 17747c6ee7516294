"""Request bodies: JSON, or multipart with ``payload_json`` and ``files[n]`` parts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, hdrs, web

from ..models.entities import Upload
from ..models.validation import DiscordError

JSON = dict[str, Any]


@dataclass(frozen=True)
class ParsedBody:
    """A request body: the JSON part (``payload_json`` for multipart) and the file parts."""

    json: Any = None
    uploads: tuple[Upload, ...] = ()

    @property
    def object(self) -> JSON:
        """The JSON body as an object (``{}`` when absent)."""
        return self.json if isinstance(self.json, dict) else {}


#: where the middleware leaves the parsed body for the route handlers
BODY_KEY = web.RequestKey("discord_stub_body", ParsedBody)


async def parse_body(request: web.Request) -> ParsedBody:
    """Read the body once: JSON, or multipart with ``payload_json`` and file parts."""
    if not request.body_exists:
        return ParsedBody()
    if request.content_type.startswith("multipart/"):
        payload: Any = None
        fields: JSON = {}
        uploads: list[Upload] = []
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, BodyPartReader):  # nested multipart: not used by Discord
                continue
            data = await part.read(decode=False)
            if part.name == "payload_json":
                payload = json.loads(data)
            elif part.filename is not None:
                content_type = part.headers.get(hdrs.CONTENT_TYPE, "application/octet-stream")
                uploads.append(Upload(part.name or "", part.filename, bytes(data), content_type))
            elif part.name:
                fields[part.name] = data.decode()
        return ParsedBody(payload if payload is not None else fields, tuple(uploads))
    raw = await request.read()
    if not raw:
        return ParsedBody()
    try:
        return ParsedBody(json.loads(raw))
    except ValueError:
        raise DiscordError(400, 50109, "The request body contains invalid JSON.") from None

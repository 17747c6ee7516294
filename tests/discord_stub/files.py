"""Stored files: what the bot uploaded and what test users attach, served by the CDN route."""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from .models.entities import Attachment, Upload
from .models.validation import FormErrors
from .snowflakes import SnowflakeGenerator

#: What a test may pass for a file: ``(filename, bytes)``, ``(filename, bytes, content_type)``
#: or an :class:`Attachment` already stored in the stub.
FileLike = tuple[str, bytes] | tuple[str, bytes, str] | Attachment

_FILE_FIELD = re.compile(r"^files\[(\d+)\]$|^file(\d*)$")
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
)


def sniff_content_type(filename: str, data: bytes, declared: str | None) -> str:
    """The content type Discord would report: from the bytes, else the name, else as declared.

    discord.py uploads every file as ``application/octet-stream``; Discord works the real type
    out itself, and bots check ``Attachment.content_type``.
    """
    for signature, content_type in _SIGNATURES:
        if data.startswith(signature):
            return content_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    guessed, _ = mimetypes.guess_type(filename)
    if guessed:
        return guessed
    return declared or "application/octet-stream"


class FileStore:
    """Attachments by id, with download URLs under the stub's base URL."""

    def __init__(self, ids: SnowflakeGenerator, base_url: Callable[[], str]) -> None:
        self._ids = ids
        self._base_url = base_url
        self.attachments: dict[int, Attachment] = {}

    def store(
        self,
        filename: str,
        data: bytes,
        *,
        channel_id: int,
        content_type: str | None = None,
        description: str | None = None,
        title: str | None = None,
        ephemeral: bool = False,
    ) -> Attachment:
        """Keep a file and make it downloadable from the CDN route."""
        attachment_id = self._ids.next()
        url = f"{self._base_url()}/attachments/{channel_id}/{attachment_id}/{quote(filename)}"
        attachment = Attachment(
            attachment_id,
            filename,
            bytes(data),
            sniff_content_type(filename, data, content_type),
            url,
            description,
            title,
            ephemeral,
        )
        self.attachments[attachment.id] = attachment
        return attachment

    def store_file_like(self, value: FileLike, *, channel_id: int) -> Attachment:
        """An :class:`Attachment` from what a test passed for a file."""
        if isinstance(value, Attachment):
            return value
        if isinstance(value, tuple) and len(value) in (2, 3):
            filename, data, *rest = value
            content_type = rest[0] if rest else None
            return self.store(filename, data, channel_id=channel_id, content_type=content_type)
        raise TypeError(f"a file is (filename, bytes[, content_type]); got {type(value).__name__}")

    def resolve(
        self,
        payload: Mapping[str, Any],
        uploads: Sequence[Upload],
        previous: Sequence[Attachment],
        *,
        channel_id: int,
        ephemeral: bool,
    ) -> tuple[Attachment, ...]:
        """A message's attachments after a create/edit with ``payload`` and ``uploads``.

        discord.py sends new files as ``files[n]`` parts and describes them in ``attachments``
        with ``id: n``; existing attachments to keep are listed by their real id. Without an
        ``attachments`` key, existing files stay and new uploads are added.
        """
        by_index: dict[int, Upload] = {}
        for position, upload in enumerate(uploads):
            match = _FILE_FIELD.match(upload.field_name)
            if match:
                by_index[int(match.group(1) or match.group(2) or position)] = upload

        def stored(upload: Upload, entry: Mapping[str, Any]) -> Attachment:
            return self.store(
                entry.get("filename") or upload.filename,
                upload.data,
                channel_id=channel_id,
                content_type=upload.content_type,
                description=entry.get("description"),
                title=entry.get("title"),
                ephemeral=ephemeral,
            )

        entries = payload.get("attachments")
        if entries is None:
            return tuple(previous) + tuple(stored(u, {}) for u in by_index.values())
        kept = {a.id: a for a in previous}
        result: list[Attachment] = []
        used: set[int] = set()
        errors = FormErrors()
        for i, entry in enumerate(entries):
            ident = int(entry["id"])
            if ident in by_index:
                result.append(stored(by_index[ident], entry))
                used.add(ident)
            elif ident in kept:
                result.append(kept[ident])
            else:
                errors.add(["attachments", i, "id"], "ATTACHMENT_NOT_FOUND", "Unknown attachment")
        errors.raise_if_any()
        # Uploads not described in ``attachments`` are still attached, as Discord does.
        result += [stored(u, {}) for i, u in by_index.items() if i not in used]
        return tuple(result)

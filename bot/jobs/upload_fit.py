"""Making result files fit Discord's upload limit instead of losing them.

A PNG over the limit is re-encoded as WebP (lossy, quality stepping down, then smaller), with
the generation parameters kept in EXIF UserComment, where the usual Stable Diffusion tools look
for them in WebP and JPEG files. The full PNG stays on the bot's disk either way.
"""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from PIL import Image

DEFAULT_LIMIT = 10 * 1024 * 1024  # Discord's per-message limit for bots in unboosted servers
_USER_COMMENT = 0x9286  # EXIF tag
_QUALITIES = (90, 80, 65, 50)


@dataclass(frozen=True)
class UploadFile:
    """A file for a message. ``read``, when given, fetches ``data`` at upload time (a stored
    result image: ``data`` is empty until ``loaded``), so that messages waiting for an upload
    slot do not hold their pictures in memory."""

    name: str
    data: bytes
    spoiler: bool = False
    read: Callable[[], Awaitable[bytes]] | None = None

    async def loaded(self) -> UploadFile:
        """This file with its ``data`` (read now when it has a ``read``)."""
        if self.read is None:
            return self
        return UploadFile(self.name, await self.read(), self.spoiler)


def fit(files: list[UploadFile], limit: int = DEFAULT_LIMIT) -> tuple[list[UploadFile], bool]:
    """Files whose total size is within ``limit``; True when any had to be re-encoded."""
    if sum(len(f.data) for f in files) <= limit:
        return files, False
    share = limit // max(1, len(files))
    fitted = [f if len(f.data) <= share else _shrink(f, share) for f in files]
    return fitted, True


def _shrink(file: UploadFile, limit: int) -> UploadFile:
    image = Image.open(io.BytesIO(file.data))
    exif = Image.Exif()
    if parameters := image.info.get("parameters"):
        # EXIF UserComment: an 8-byte character-code header, then the text.
        exif[_USER_COMMENT] = b"UNICODE\0" + parameters.encode("utf-16-be")
    rgb = image.convert("RGB")
    stem = file.name.rsplit(".", 1)[0]
    while True:
        for quality in _QUALITIES:
            out = io.BytesIO()
            rgb.save(out, "WEBP", quality=quality, exif=exif.tobytes())
            if out.tell() <= limit:
                return UploadFile(f"{stem}.webp", out.getvalue(), file.spoiler)
        if min(rgb.size) <= 64:
            return UploadFile(f"{stem}.webp", out.getvalue(), file.spoiler)
        rgb = rgb.resize((rgb.width * 3 // 4, rgb.height * 3 // 4), Image.Resampling.LANCZOS)


def parameters_of(data: bytes) -> str:
    """The generation parameters of a PNG (text chunk) or WebP/JPEG (EXIF UserComment)."""
    image = Image.open(io.BytesIO(data))
    if text := image.info.get("parameters"):
        return str(text)  # a PNG text chunk: already a str
    comment = image.getexif().get(_USER_COMMENT)
    if isinstance(comment, bytes) and comment.startswith(b"UNICODE\0"):
        return comment[8:].decode("utf-16-be")
    return ""

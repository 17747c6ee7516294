"""Making result files fit Discord's upload limit instead of losing them.

A PNG over the limit is re-encoded as WebP (lossy, quality stepping down, then smaller), with
the generation parameters kept in EXIF UserComment, where the usual Stable Diffusion tools look
for them in WebP and JPEG files. The full PNG stays on the bot's disk either way.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

DEFAULT_LIMIT = 10 * 1024 * 1024  # Discord's per-message limit for bots in unboosted servers
_USER_COMMENT = 0x9286  # EXIF tag
_QUALITIES = (90, 80, 65, 50)


@dataclass(frozen=True)
class UploadFile:
    """A file for a message: ``data`` in memory, or the file at ``path`` (a stored result
    image; ``data`` is then empty). A stored one is streamed from disk when it is sent, so that
    messages waiting for an upload slot, and the upload itself, do not hold the picture in
    memory."""

    name: str
    data: bytes
    spoiler: bool = False
    path: Path | None = None

    def size(self) -> int:
        """Its bytes; ``OSError`` when its file is gone."""
        return self.path.stat().st_size if self.path is not None else len(self.data)

    def contents(self) -> bytes:
        """Its bytes, read from its file when it has one (blocking)."""
        return self.path.read_bytes() if self.path is not None else self.data


def fit(files: list[UploadFile], limit: int = DEFAULT_LIMIT) -> tuple[list[UploadFile], bool]:
    """Files whose total size is within ``limit``; True when any had to be re-encoded.
    ``OSError`` when a stored file is gone."""
    sizes = [f.size() for f in files]
    if sum(sizes) <= limit:
        return files, False
    share = limit // max(1, len(files))
    fitted = [
        file if size <= share else _shrink(file, share)
        for file, size in zip(files, sizes, strict=True)
    ]
    return fitted, True


def _shrink(file: UploadFile, limit: int) -> UploadFile:
    image = Image.open(io.BytesIO(file.contents()))
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

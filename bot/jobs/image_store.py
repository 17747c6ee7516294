"""Generated images on disk: one folder per day, names that say which job they belong to."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path


@dataclass(frozen=True)
class StorageFailure:
    """A write that failed, as admins need to read it: when, and the system's words with the
    path (``[Errno 28] No space left on device: /srv/bot/data/images/…``)."""

    at: datetime
    cause: str


@dataclass(frozen=True)
class StorageHealth:
    """What ``/status`` says of the image folder."""

    last_failure: StorageFailure | None  # since the bot started
    failing: bool  # the latest write failed (no write has worked since)


class SaveFailed(Exception):
    """An image could not be written (a full disk, a folder the bot may not write to).
    ``failure`` is for admins; users get a plain sentence instead."""

    def __init__(self, failure: StorageFailure) -> None:
        super().__init__(failure.cause)
        self.failure = failure


def describe(error: OSError, path: Path) -> str:
    """The error with the path it concerns: a failed ``write`` names no file by itself."""
    if error.errno is None or error.strerror is None:
        return f"{error}: {path}"
    return f"[Errno {error.errno}] {error.strerror}: {error.filename or path}"


class ImageStore:
    """Writes and reads result PNGs under one root; paths in the database are relative."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._last_failure: StorageFailure | None = None
        self._failing = False

    @property
    def health(self) -> StorageHealth:
        return StorageHealth(self._last_failure, self._failing)

    async def save(self, job_id: int, index: int, png: bytes) -> str:
        """Write one image; its path relative to the root. SaveFailed when the system refuses
        (recorded for ``health``), and nothing is left under the image's name."""
        relative = Path(datetime.now(UTC).strftime("%Y-%m-%d")) / f"job{job_id}_{index}.png"
        try:
            await asyncio.to_thread(self._write, relative, png)
        except OSError as error:
            failure = StorageFailure(datetime.now(UTC), describe(error, self.root / relative))
            self._last_failure, self._failing = failure, True
            raise SaveFailed(failure) from error
        self._failing = False
        return relative.as_posix()

    def _write(self, relative: Path, data: bytes) -> None:
        path = self.resolve(relative.as_posix())
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        try:
            tmp.write_bytes(data)
            tmp.replace(path)  # never a half-written PNG under the real name
        except OSError:
            # A partial file on a full disk only takes the room the next write needs.
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise

    async def replace(self, relative: str, png: bytes) -> None:
        """Write ``png`` over a stored image (a moderator released its original), atomically."""
        await asyncio.to_thread(self._write, Path(relative), png)

    async def read(self, relative: str) -> bytes:
        return await asyncio.to_thread(self.resolve(relative).read_bytes)

    async def delete(self, relative: str) -> None:
        await asyncio.to_thread(self.resolve(relative).unlink, missing_ok=True)

    def resolve(self, relative: str) -> Path:
        """The absolute path of a stored image; refuses anything outside the root."""
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"{relative!r} is outside the image folder")
        return path

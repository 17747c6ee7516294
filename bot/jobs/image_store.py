"""Generated images on disk: one folder per day, names that say which job they belong to.

A local engine writes its result pictures into ``spool`` (a folder inside the root, so on
the same file system) and names them in its results; ``save`` moves such a file into place
instead of writing bytes (``engine.spool``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from engine.protocol import SpooledFile

SPOOL_FOLDER = ".spool"  # not a day's folder: retention passes it by


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

    @property
    def spool(self) -> Path:
        """Where a local engine writes result pictures for ``save`` to move into place."""
        return self.root / SPOOL_FOLDER

    async def clear_spool(self) -> None:
        """An empty spool, before the engine starts: what a stopped run left there belongs to
        results that were never read."""
        await asyncio.to_thread(self._clear_spool)

    def _clear_spool(self) -> None:
        shutil.rmtree(self.spool, ignore_errors=True)
        self.spool.mkdir(parents=True, exist_ok=True)

    async def sweep_spool(self, before: datetime) -> int:
        """Remove spooled pictures last written before ``before``; how many went. One that
        old belongs to a result the bot never read (its engine died before sending it), which
        would otherwise wait for the next start."""
        return await asyncio.to_thread(self._sweep_spool, before.timestamp())

    def _sweep_spool(self, before: float) -> int:
        removed = 0
        with contextlib.suppress(FileNotFoundError):  # no spool (yet): nothing to sweep
            for entry in os.scandir(self.spool):
                with contextlib.suppress(OSError):  # moved into place meanwhile
                    if entry.is_file() and entry.stat().st_mtime < before:
                        os.unlink(entry.path)
                        removed += 1
        return removed

    async def save(self, job_id: int, index: int, png: bytes | SpooledFile) -> str:
        """Store one image (bytes, or a file the engine spooled); its path relative to the
        root. SaveFailed when the system refuses (recorded for ``health``), and nothing is
        left under the image's name."""
        relative = Path(datetime.now(UTC).strftime("%Y-%m-%d")) / f"job{job_id}_{index}.png"
        try:
            if isinstance(png, SpooledFile):
                await asyncio.to_thread(self._move_in, relative, png)
            else:
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

    def _in_spool(self, spooled: SpooledFile) -> Path:
        """The spooled file's path; OSError for a name that is not a plain file of the spool."""
        source = self.spool / spooled.name
        if source.parent != self.spool or spooled.name in ("", ".", ".."):
            raise OSError(f"{spooled.name!r} is not a file in the spool")
        return source

    def _move_in(self, relative: Path, spooled: SpooledFile) -> None:
        source = self._in_spool(spooled)
        path = self.resolve(relative.as_posix())
        path.parent.mkdir(parents=True, exist_ok=True)
        # A rename within one file system: complete at once, and no bytes copied.
        os.replace(source, path)

    async def discard(self, pictures: Sequence[bytes | SpooledFile]) -> None:
        """Remove the spooled files among ``pictures``: a result that will not be stored."""
        spooled = [p for p in pictures if isinstance(p, SpooledFile)]
        if spooled:
            await asyncio.to_thread(self._discard, spooled)

    def _discard(self, spooled: Sequence[SpooledFile]) -> None:
        for picture in spooled:
            with contextlib.suppress(OSError):  # not ours, or gone already
                self._in_spool(picture).unlink()

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

"""How much disk the result images and the uploads take, for /status."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

MAX_AGE_S = 60.0  # a figure this fresh is shown again rather than measured again


@dataclass(frozen=True)
class FolderUse:
    files: int
    bytes: int


@dataclass(frozen=True)
class DiskUse:
    images: FolderUse
    uploads: FolderUse


def folder_use(root: Path) -> FolderUse:
    """The files under ``root`` and their sizes; nothing when it does not exist yet."""
    files = size = 0
    for folder, _dirs, names in os.walk(root):
        for name in names:
            try:
                size += os.stat(os.path.join(folder, name)).st_size
            except FileNotFoundError:
                continue  # deleted while walking (retention, a Delete button)
            files += 1
    return FolderUse(files, size)


class DiskUsage:
    """Measures the two folders in a worker thread (a walk over many files would stall the
    event loop) and keeps the figure ``max_age_s``, so admins asking /status again and again
    cost one walk a minute, and concurrent asks share one walk."""

    def __init__(
        self,
        images_root: Path,
        inputs_root: Path,
        *,
        max_age_s: float = MAX_AGE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._roots = (Path(images_root), Path(inputs_root))
        self._max_age_s = max_age_s
        self._clock = clock
        self._last: tuple[float, DiskUse] | None = None
        self._measuring = asyncio.Lock()

    async def measure(self) -> DiskUse:
        """The folders' use, at most ``max_age_s`` old."""
        async with self._measuring:
            if self._last is not None and self._clock() - self._last[0] < self._max_age_s:
                return self._last[1]
            use = await asyncio.to_thread(self._walk)
            self._last = (self._clock(), use)
            return use

    def _walk(self) -> DiskUse:
        images, uploads = self._roots
        return DiskUse(folder_use(images), folder_use(uploads))

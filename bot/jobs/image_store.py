"""Generated images on disk: one folder per day, names that say which job they belong to."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path


class ImageStore:
    """Writes and reads result PNGs under one root; paths in the database are relative."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    async def save(self, job_id: int, index: int, png: bytes) -> str:
        relative = Path(datetime.now(UTC).strftime("%Y-%m-%d")) / f"job{job_id}_{index}.png"
        await asyncio.to_thread(self._write, relative, png)
        return relative.as_posix()

    def _write(self, relative: Path, data: bytes) -> None:
        path = self.resolve(relative.as_posix())
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)  # never a half-written PNG under the real name

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

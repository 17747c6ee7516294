"""Files for Discord made from bytes in memory, whose buffers are freed as soon as they are sent.

``discord.File`` stops aiohttp from closing the buffer it wraps by storing a replacement
``close`` on the buffer itself, and puts the buffer's own bound ``close`` back there when the
message has gone: a reference cycle (the buffer's ``__dict__`` holds a method bound to the
buffer). Such a buffer, and the private copy of its bytes that aiohttp makes when it sizes the
upload (``BytesIO.getbuffer``), then wait for the cyclic garbage collector rather than going
with the last reference. In a burst of finished jobs hundreds of 800 KB images waited so: a
1000-job burst peaked at 336 MiB (``bench/bench_bot_throughput.py``). Closing the buffer on
the way out frees its bytes at once, whatever still refers to it.

A stored file (``stored``) is not read into memory at all: ``discord.File`` opens it and aiohttp
streams it in chunks; it is closed on the way out too.
"""

from __future__ import annotations

import io
from pathlib import Path
from types import TracebackType

import discord


class InMemoryFiles:
    """``with InMemoryFiles() as uploads: files = [uploads.file(data, name), ...]; send``:
    the files' buffers (and the stored files it opened) are closed when the block ends, sent
    or not."""

    def __init__(self) -> None:
        self._buffers: list[io.BytesIO] = []
        self._opened: list[discord.File] = []

    def file(self, data: bytes, filename: str, *, spoiler: bool = False) -> discord.File:
        buffer = io.BytesIO(data)
        self._buffers.append(buffer)
        return discord.File(buffer, filename=filename, spoiler=spoiler)

    def stored(self, path: Path, filename: str, *, spoiler: bool = False) -> discord.File:
        """The file at ``path``, streamed from disk when it is sent (aiohttp reads it in
        chunks), so none of it waits in memory; closed when the block ends. ``OSError`` when
        it cannot be opened."""
        file = discord.File(path, filename=filename, spoiler=spoiler)
        self._opened.append(file)
        return file

    def __enter__(self) -> InMemoryFiles:
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _error: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        for buffer in self._buffers:
            # The class's close: discord.File may have left its no-op stand-in on the buffer.
            io.BytesIO.close(buffer)
        self._buffers.clear()
        for file in self._opened:
            file.close()  # discord.File opened it, so this closes it
        self._opened.clear()

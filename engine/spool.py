"""Result pictures written to a folder the bot gave, instead of sent through the pipe.

A local engine shares the bot's disk. Piping a picture costs both processes for nothing: the
engine frames its megabyte, the bot reads, decodes and holds it until it writes the same
bytes to its image store. With ``ENGINE_SPOOL_DIR`` set (the bot sets it to a folder beside
its images, on the same file system) each ``Result``'s pictures are written there and the
event carries only their names (``SpooledFile``); the bot moves the files into its store.

A picture that cannot be written (a full disk) travels in the frame as before, so the bot's
own write then meets the same fault and reports it the way it reports any other.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import secrets
from pathlib import Path

from engine.protocol import Event, GeneratedImage, Result, SpooledFile

log = logging.getLogger(__name__)


def spool_pictures(event: Event, folder: Path) -> Event:
    """``event`` with each result picture written to ``folder`` and named instead; other
    events, and pictures that could not be written, as they are."""
    if not isinstance(event, Result):
        return event
    images = tuple(
        _spooled(event.job_id, index, image, folder) for index, image in enumerate(event.images)
    )
    return dataclasses.replace(event, images=images)


def _spooled(job_id: int, index: int, image: GeneratedImage, folder: Path) -> GeneratedImage:
    if not isinstance(image.png, bytes):
        return image
    # A job run again after an engine restart must not meet its first run's file.
    name = f"job{job_id}_{index}_{secrets.token_hex(4)}.png"
    path = folder / name
    try:
        file = path.open("xb")  # never over another file
    except OSError as error:
        return _unspooled(job_id, image, error)
    try:
        with file:
            file.write(image.png)
    except OSError as error:
        # A partial file on a full disk only takes the room the bot's own write needs.
        with contextlib.suppress(OSError):
            path.unlink()
        return _unspooled(job_id, image, error)
    return dataclasses.replace(image, png=SpooledFile(name, len(image.png)))


def _unspooled(job_id: int, image: GeneratedImage, error: OSError) -> GeneratedImage:
    log.warning("could not spool a picture of job %s (%s); it goes in the frame", job_id, error)
    return image

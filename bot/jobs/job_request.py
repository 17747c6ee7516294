"""What a command or button asks the job service for: typed requests, checked values only.

A feature validates what the user typed and hands one of these to ``JobService.submit``; the
service resolves the model, reads uploads, writes the job under the user's limits and queues
it. Nothing here calls back into a feature.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import discord

from engine.protocol import JobKind


@dataclass(frozen=True)
class Uploads:
    """An inpainting job's attachments, read only once the job is allowed to exist."""

    image: discord.Attachment
    mask: discord.Attachment | None = None
    mask_prompt: str | None = None  # words CLIPSeg turns into the mask, instead of a picture


@dataclass(frozen=True)
class NewImages:
    """A new job from a command: its kind, the model typed (None: the default) and settings."""

    kind: JobKind
    model: str | None
    settings: dict[str, Any] = field(default_factory=dict)  # NewJob's generation fields
    uploads: Uploads | None = None


@dataclass(frozen=True)
class Reroll:
    """A job again: ``job_id`` (None: the caller's latest) with new seeds, or ``seed``."""

    job_id: int | None
    seed: int | None = None


@dataclass(frozen=True)
class Comparison:
    """A course lesson's comparison of job ``job_id``'s first image (``kind``: a lesson)."""

    job_id: int
    kind: str


JobRequest = NewImages | Reroll | Comparison

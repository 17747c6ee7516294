"""What a command or button asks the job service for: typed requests, checked values only.

A feature validates what the user typed and hands one of these to ``JobService.submit``; the
service resolves the model, reads uploads, writes the job under the user's limits and queues
it. Nothing here calls back into a feature.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import discord

from bot.jobs.xy_values import Axis
from engine.protocol import JobKind


@dataclass(frozen=True)
class Uploads:
    """A job's attachments, read only once the job is allowed to exist."""

    image: discord.Attachment
    mask: discord.Attachment | None = None
    mask_prompt: str | None = None  # words CLIPSeg turns into the mask, instead of a picture
    # Inpainting: the picture says (or the mask or words say) which area to repaint. False for
    # image-to-image, where the whole picture is the starting point.
    repaint_area: bool = True


@dataclass(frozen=True)
class NewImages:
    """A new job from a command: its kind, the model typed (None: the default, for the kind's
    ``model_kind``) and settings."""

    kind: JobKind
    model: str | None
    settings: dict[str, Any] = field(default_factory=dict)  # NewJob's generation fields
    uploads: Uploads | None = None
    # /compare: the grid's checked axes, x first (a model axis's names are looked up by the
    # job service); () for one picture per seed.
    axes: tuple[Axis, ...] = ()
    # The options the user typed; the others are the command's defaults, which the model's
    # family replaces with its own (``bot.jobs.families``).
    given: frozenset[str] = frozenset()


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


@dataclass(frozen=True)
class Variation:
    """A new image from job ``job_id``'s first image (image-to-image at ``strength``)."""

    job_id: int
    strength: float


@dataclass(frozen=True)
class Upscale:
    """Job ``job_id``'s image at ``index`` (0-based, as posted) made four times larger."""

    job_id: int
    index: int


JobRequest = NewImages | Reroll | Comparison | Variation | Upscale

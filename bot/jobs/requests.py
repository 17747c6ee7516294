"""New jobs for whoever is asking: from a command's settings, or from an existing job.

Kept apart from ``bot.jobs`` so the course package can use it without importing the
scheduler (which imports the course package).
"""

from __future__ import annotations

from typing import Any

import discord

from bot.store.models import Job, Model
from bot.store.repository import NewJob
from engine.protocol import JobKind


def _asked_by(interaction: discord.Interaction) -> dict[str, Any]:
    """Who asked, and where: the part of a job every command fills the same way."""
    return dict(
        user_id=interaction.user.id,
        user_name=interaction.user.display_name,
        user_locale=str(interaction.locale),
        channel_id=interaction.channel_id or 0,
        guild_id=interaction.guild_id,
    )


def new_job(
    interaction: discord.Interaction, model: Model, kind: JobKind | None = None, **settings: Any
) -> NewJob:
    """A job the asker described, on ``model`` as the models table offers it now; its kind is
    the model's unless ``kind`` says otherwise (image-to-image on a text-to-image model)."""
    return NewJob(
        **_asked_by(interaction),
        kind=kind or model.kind,
        model_name=model.name,
        model_source=model.source,
        model_revision=model.revision,
        **settings,
    )


def derived_job(parent: Job, interaction: discord.Interaction, **changes: Any) -> NewJob:
    """A new job for whoever is asking, with ``parent``'s settings except ``changes``.

    Rerolls and lesson comparisons start here. The model is pinned to the revision the parent
    actually ran, so the parent's own seed and settings give the parent's own pixels.
    """
    fields: dict[str, Any] = dict(
        _asked_by(interaction),
        **parent.generation_params(),
        channel_id=interaction.channel_id or parent.channel_id,
        kind=parent.kind,
        model_name=parent.model_name,
        model_source=parent.model_source,
        model_revision=parent.model_revision_used or parent.model_revision,
        image_ref=parent.image_ref,
        mask_ref=parent.mask_ref,
        parent_job_id=parent.id,
        adapters=parent.adapter_refs(),  # as they ran, like the model's revision
    )
    fields.update(changes)
    return NewJob(**fields)

"""/recipe's reply when the uploads it would attach are no longer stored (retention)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any
from unittest import mock

import discord

from bot.features.recipe import _cog
from bot.store.models import JobKind
from tests.bot.doubles import interaction_by, member
from tests.bot.jobs.test_retention import ref
from tests.bot.jobs.test_service import settings as service_settings
from tests.bot.store.test_repository import UNLIMITED, new_job


async def test_the_owner_gets_the_script_and_a_note_when_the_uploads_are_gone(
    repo, tmp_path, monkeypatch
):
    settings = service_settings(tmp_path)  # uploads kept 30 days, the default
    job = await repo.create_job(
        new_job(kind=JobKind.INPAINT, image_ref=ref("fox"), mask_ref=ref("sky")), UNLIMITED
    )

    async def get_visible(job_id, interaction, *, doing):
        return await repo.get_job(job_id)

    services = SimpleNamespace(
        settings=settings,
        repo=repo,
        jobs=SimpleNamespace(get_visible=get_visible),
        engine=SimpleNamespace(last_ready=None),
    )
    monkeypatch.setattr(_cog, "require_channel", lambda *_args: None)
    asked: Any = interaction_by(member(1, "ola"))
    asked.response = mock.create_autospec(discord.InteractionResponse, instance=True)
    cog = _cog.RecipeCog(services)  # type: ignore[arg-type]  # the services it reads
    await cog.recipe.callback(cog, asked, job.id)

    (call,) = asked.response.send_message.await_args_list
    text = call.args[0]
    assert "no longer stored on the bot (uploads are kept 30 days after their last use)" in text
    assert "`job1_image.png`, `job1_mask.png`" in text
    assert [file.filename for file in call.kwargs["files"]] == ["recipe_job1.py"]

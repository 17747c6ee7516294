"""The job service acknowledges first: what must be refused privately is decided in memory,
Discord is answered before any SQL, and the limits hold exactly, across restarts too.

The service runs on the real store; the interaction is a mock built from discord.py's classes
(``spec_set``), recording what was asked of it and how many SQL statements had run by then.
"""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from types import SimpleNamespace
from typing import Any
from unittest.mock import AsyncMock, MagicMock

import discord
import pytest
from pydantic import SecretStr
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from bot.jobs.image_store import ImageStore
from bot.jobs.inputs import InputStore
from bot.jobs.job_request import Comparison, NewImages
from bot.jobs.service import NOT_SAVED, JobService
from bot.settings import (
    DatabaseSettings,
    DiscordSettings,
    LimitSettings,
    ModelDefaults,
    SchedulerSettings,
    Settings,
    StorageSettings,
)
from bot.store.database import create_sessionmaker
from bot.store.models import utcnow
from bot.store.repository import Finished, Limits, Repository
from bot.ui.errors import UserFacingError, UserInputError
from engine.protocol import Family, JobKind
from tests.bot.jobs.test_retention import ref
from tests.bot.store.test_repository import new_job

NONE: dict[str, Any] = {"_env_file": None}


class Statements:
    """SQL statements sent on an engine, counted as they go."""

    def __init__(self, db_engine) -> None:
        self.count = 0
        event.listen(db_engine.sync_engine, "before_cursor_execute", self._seen)

    def _seen(self, *_args: Any) -> None:
        self.count += 1


class Queue:
    """The scheduler and delivery, as far as the service uses them."""

    def __init__(self) -> None:
        self.jobs: list[int] = []

    async def submit(self, job) -> None:
        self.jobs.append(job.id)

    def track(self, job, interaction, *, note: str = "", left_behind: int | None = None) -> None:
        pass

    async def shown_before(self, job) -> int | None:
        return None  # nothing in Discord here

    async def finished(self, job, result, stored=()) -> None:
        pass

    async def failed(self, job) -> None:
        pass

    async def cancelled(self, job) -> None:
        pass

    async def images_lost(self, job) -> None:
        pass


def settings(tmp_path, **limits: int) -> Settings:
    return Settings(
        discord=DiscordSettings(token=SecretStr("t"), **NONE),
        database=DatabaseSettings(**NONE),
        storage=StorageSettings(output_dir=tmp_path / "out", input_dir=tmp_path / "in", **NONE),
        models=ModelDefaults(**NONE),
        limits=LimitSettings(**{"images_per_hour": 100, "max_queued_jobs": 50, **limits}, **NONE),
        scheduler=SchedulerSettings(**NONE),
    )


async def started(db_engine, tmp_path, **limits: int) -> tuple[JobService, Repository, Queue]:
    """A service as the bot has it once started: the models read, the limits loaded."""
    repo = Repository(create_sessionmaker(db_engine))
    queue = Queue()
    images, inputs = ImageStore(tmp_path / "out"), InputStore(tmp_path / "in")
    service = JobService(settings(tmp_path, **limits), repo, queue, queue, images, inputs)  # type: ignore[arg-type]
    await repo.ensure_default_models({JobKind.TEXT_TO_IMAGE: "/models/tiny-sd"})
    await service.resume_after_restart()
    return service, repo, queue


class Asked:
    """A slash command's interaction, and the statements sent by the moment it was deferred."""

    def __init__(self, user_id: int, statements: Statements) -> None:
        self.deferred_after: list[int] = []
        self.interaction = interaction(user_id, statements, self.deferred_after)


def interaction(user_id: int, statements: Statements, answered: list[int]) -> MagicMock:
    mock = MagicMock(spec_set=discord.Interaction)
    mock.user = SimpleNamespace(
        id=user_id, display_name=f"student{user_id}", mention=f"<@{user_id}>"
    )
    mock.locale = discord.Locale.british_english
    mock.channel_id, mock.guild_id = 100, 10
    mock.response = MagicMock(spec_set=discord.InteractionResponse)
    mock.response.is_done.side_effect = lambda: bool(answered)

    async def defer(**_options: Any) -> None:
        answered.append(statements.count)
        await asyncio.sleep(0)  # Discord's answer takes a while; other commands go on meanwhile

    mock.response.defer.side_effect = defer
    mock.edit_original_response = AsyncMock()
    return mock


def imagine(count: int = 1) -> NewImages:
    seeds = tuple(range(count))
    fields = dict(prompt="a fox", seeds=seeds, steps=1, guidance=7.5, width=64, height=64)
    return NewImages(JobKind.TEXT_TO_IMAGE, None, {**fields, "scheduler": "euler"})


async def test_the_deferral_comes_before_any_sql(db_engine, tmp_path):
    service, repo, queue = await started(db_engine, tmp_path)
    statements = Statements(db_engine)
    asked = Asked(1, statements)
    job = await service.submit(asked.interaction, imagine())
    assert asked.deferred_after == [0]  # nothing sent to the database before Discord heard
    assert statements.count > 0 and queue.jobs == [job.id]
    assert (await repo.get_job(job.id)).prompt == "a fox"


async def test_a_refusal_is_private_and_needs_no_sql(db_engine, tmp_path):
    service, _repo, _queue = await started(db_engine, tmp_path, images_per_hour=2)
    statements = Statements(db_engine)
    await service.submit(Asked(1, statements).interaction, imagine(count=2))
    before = statements.count
    refused = Asked(1, statements)
    with pytest.raises(UserFacingError, match="2 images in the last hour"):
        await service.submit(refused.interaction, imagine())
    # Not deferred: the error handler's reply is the answer, and so it can be private.
    assert refused.deferred_after == [] and statements.count == before


async def test_forty_racers_for_ten_places_in_one_process(db_engine, tmp_path):
    """Concurrent commands for the last places: the check and the taking are one step."""
    service, repo, queue = await started(db_engine, tmp_path, images_per_hour=10)
    statements = Statements(db_engine)
    outcomes = await asyncio.gather(
        *(service.submit(Asked(7, statements).interaction, imagine()) for _ in range(40)),
        return_exceptions=True,
    )
    made = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(made) == 10 and len(queue.jobs) == 10
    assert all(isinstance(o, UserFacingError) for o in outcomes if o not in made)
    assert await repo.count_jobs(7) == 10
    assert await repo.images_in_window(7) == 10


async def test_a_row_that_cannot_be_written_gives_the_place_back(db_engine, tmp_path, monkeypatch):
    service, repo, _queue = await started(db_engine, tmp_path, images_per_hour=1, max_queued_jobs=1)
    statements = Statements(db_engine)
    broken = AsyncMock(side_effect=OperationalError("INSERT", {}, Exception("disk I/O error")))
    monkeypatch.setattr(repo, "create_job", broken)
    asked = Asked(1, statements)
    assert await service.submit(asked.interaction, imagine()) is None
    assert asked.deferred_after  # deferred first, so the user is told in that message
    asked.interaction.edit_original_response.assert_awaited_once_with(content=f"<@1> {NOT_SAVED}")
    assert (service.limits.active(1), service.limits.images_in_window(1)) == (0, 0)
    monkeypatch.undo()
    assert await service.submit(Asked(1, statements).interaction, imagine()) is not None


async def test_the_limits_are_the_same_after_a_restart(db_engine, tmp_path):
    service, repo, _queue = await started(db_engine, tmp_path, images_per_hour=5, max_queued_jobs=2)
    statements = Statements(db_engine)
    first = await service.submit(Asked(1, statements).interaction, imagine(count=2))
    await service.submit(Asked(1, statements).interaction, imagine(count=2))
    await repo.mark_running_many([first.id])
    await repo.mark_done_many([Finished(first.id, [], None)])  # one place free again

    restarted, _repo, _queue = await started(
        db_engine, tmp_path, images_per_hour=5, max_queued_jobs=2
    )
    assert restarted.limits.images_in_window(1) == 4
    assert restarted.limits.active(1) == 1
    with pytest.raises(UserFacingError, match=r"made 4 of the 5 images .* 1 more image would fit"):
        await restarted.submit(Asked(1, statements).interaction, imagine(count=2))
    await restarted.submit(Asked(1, statements).interaction, imagine())  # the fifth image fits
    with pytest.raises(UserFacingError, match="2 jobs waiting"):
        await restarted.submit(Asked(1, statements).interaction, imagine())


async def inpainted(repo, inputs, *, image: str, mask: str, user_id: int = 1) -> int:
    """A finished inpainting job of ``user_id`` on the default model, its uploads stored."""
    for name in (image, mask):
        await inputs.write(ref(name), name.encode())
    job = await repo.create_job(
        new_job(
            user_id=user_id,
            kind=JobKind.INPAINT,
            model_name="tiny-sd",
            model_source="/models/tiny-sd",
            image_ref=ref(image),
            mask_ref=ref(mask),
        ),
        Limits(None, None),
    )
    await repo.mark_running(job.id)
    await repo.mark_done(job.id, [], None)
    return job.id


async def test_deleting_a_job_deletes_the_uploads_no_other_job_uses(db_engine, tmp_path):
    service, repo, _queue = await started(db_engine, tmp_path)
    inputs = InputStore(tmp_path / "in")
    first = await inpainted(repo, inputs, image="fox", mask="sky")
    # The same picture again with another mask: one stored picture, shared by both jobs.
    second = await inpainted(repo, inputs, image="fox", mask="grass")
    owner = SimpleNamespace(id=1)

    await service.delete(first, owner)
    assert not inputs.resolve(ref("sky")).exists()
    assert inputs.resolve(ref("fox")).exists() and inputs.resolve(ref("grass")).exists()
    await service.delete(second, owner)
    assert not inputs.resolve(ref("fox")).exists() and not inputs.resolve(ref("grass")).exists()


async def test_a_reroll_whose_picture_is_gone_is_refused_and_one_that_is_there_keeps_it(
    db_engine, tmp_path
):
    service, repo, queue = await started(db_engine, tmp_path)
    inputs = InputStore(tmp_path / "in")
    job_id = await inpainted(repo, inputs, image="fox", mask="sky")
    picture = inputs.resolve(ref("fox"))
    long_ago = (utcnow() - timedelta(days=40)).timestamp()
    os.utime(picture, (long_ago, long_ago))

    statements = Statements(db_engine)
    rerolled = await service.reroll(job_id, None, Asked(1, statements).interaction)
    assert rerolled is not None and queue.jobs == [rerolled.id]
    # Reused now, so retention keeps it as long as it would a new upload.
    assert picture.stat().st_mtime > (utcnow() - timedelta(minutes=1)).timestamp()

    picture.unlink()
    with pytest.raises(UserFacingError, match=f"Job #{job_id}'s picture is no longer stored"):
        await service.reroll(job_id, None, Asked(1, statements).interaction)
    assert queue.jobs == [rerolled.id]


async def test_a_reroll_of_a_job_whose_old_prompt_does_not_read_is_refused_up_front(
    db_engine, tmp_path
):
    """A job stored before weights were read may hold brackets that do not read now: its
    reroll is refused naming the place, and nothing is queued (it used to fail at the engine)."""
    service, repo, queue = await started(db_engine, tmp_path)
    old = await repo.create_job(
        new_job(model_name="tiny-sd", model_source="/models/tiny-sd", prompt="a (fox:abc)"),
        Limits(None, None),
    )
    await repo.mark_running(old.id)
    await repo.mark_done(old.id, [], None)
    statements = Statements(db_engine)
    with pytest.raises(UserFacingError, match=rf"Job #{old.id} cannot be made again as it is"):
        await service.reroll(old.id, None, Asked(1, statements).interaction)
    assert queue.jobs == []
    assert await repo.count_jobs(1) == 1


async def test_a_lesson_its_family_has_nothing_to_vary_for_is_refused(db_engine, tmp_path):
    """FLUX.1 schnell's result shows no Compare CFG button; a click from an older message is
    refused, naming the family, and nothing is queued."""
    service, repo, queue = await started(db_engine, tmp_path)
    await repo.add_model("schnell", "/models/schnell", JobKind.TEXT_TO_IMAGE, family=Family.FLUX)
    flux = await repo.create_job(
        new_job(model_name="schnell", model_source="/models/schnell", guidance=0.0, steps=4),
        Limits(None, None),
    )
    await repo.mark_running(flux.id)
    await repo.mark_done(flux.id, [], None)
    asked = Asked(1, Statements(db_engine)).interaction
    with pytest.raises(UserInputError, match=r"FLUX\.1 schnell, which has no guidance scale"):
        await service.submit(asked, Comparison(flux.id, "guidance"))
    assert queue.jobs == []

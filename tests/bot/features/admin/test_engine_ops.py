"""ModelOps against a scripted engine (tests/bot/doubles.py) and the real store."""

import asyncio

import pytest

from bot.features.admin._engine_ops import ModelOps, engine_facts
from bot.jobs.engine_client import EngineUnavailable
from bot.store.models import Model
from bot.store.repository import Limits, NewJob
from engine.protocol import JobKind, Ready
from tests.bot.doubles import MB, ScriptedModels, engine_client


def stored(name="sd", source="/models/sd", kind=JobKind.TEXT_TO_IMAGE) -> Model:
    return Model(name=name, source=source, kind=kind, revision=None, enabled=True)


def job_for(model_name: str) -> NewJob:
    return NewJob(
        user_id=1,
        user_name="u",
        kind=JobKind.TEXT_TO_IMAGE,
        model_name=model_name,
        model_source="/models/sd",
        model_revision=None,
        prompt="p",
        negative_prompt="",
        seeds=(1,),
        steps=1,
        guidance=7.5,
        width=64,
        height=64,
        scheduler="euler",
        channel_id=1,
    )


async def test_load_reports_time_size_and_whether_it_was_there_already(repo):
    engine = ScriptedModels()
    ops = ModelOps(repo, engine)
    first = await ops.load(stored())
    assert (first.ok, first.model_bytes, first.already_loaded) == (True, 3 * MB, False)
    assert first.seconds >= 0 and [m.model.name for m in first.loaded] == ["sd"]
    again = await ops.load(stored())
    assert again.already_loaded and again.ok
    broken = await ops.load(stored("bad", source="broken"))
    assert (broken.ok, broken.message, broken.model_bytes) == (
        False,
        "could not load the model bad",
        0,
    )


async def test_load_on_some_replicas_asks_the_engine_for_that_many(repo):
    engine = ScriptedModels()
    ops = ModelOps(repo, engine)
    await ops.load(stored(), replicas=2)
    await ops.load(stored())
    assert engine.requests == [("load", "sd@2"), ("load", "sd")]  # None: on every replica


async def test_unload_frees_what_the_model_took_and_says_when_it_was_not_loaded(repo):
    engine = ScriptedModels()
    ops = ModelOps(repo, engine)
    await ops.load(stored())
    pinned = Model(name="sd", source="/models/sd", kind=JobKind.TEXT_TO_IMAGE, revision="abc")
    await ops.load(pinned)  # a reroll's pinned copy, under the same name
    outcome = await ops.unload("sd")
    assert (outcome.unloaded, outcome.freed_bytes, outcome.loaded) == (True, 6 * MB, ())
    again = await ops.unload("sd")
    assert (again.unloaded, again.freed_bytes) == (False, 0)


async def test_an_engine_that_is_not_ready_is_not_waited_for(repo):
    engine = ScriptedModels()
    engine.ready = False
    ops = ModelOps(repo, engine)
    assert await ops.loaded() is None
    with pytest.raises(EngineUnavailable, match="not running"):
        await ops.unload("sd")
    assert engine.requests == []


async def test_a_listing_that_hangs_reads_as_unknown(repo):
    engine = ScriptedModels()
    engine.hang_listing = True
    assert await ModelOps(repo, engine, list_timeout_s=0.05).loaded() is None


async def test_wait_until_unused_follows_the_store_until_the_jobs_end(repo):
    ops = ModelOps(repo, ScriptedModels(), poll_s=0.01)
    unlimited = Limits(None, None)
    a = await repo.create_job(job_for("sd"), unlimited)
    b = await repo.create_job(job_for("sd"), unlimited)
    await repo.create_job(job_for("other"), unlimited)
    seen: list[int] = []

    async def finish_jobs() -> None:
        await repo.mark_running(a.id)
        await asyncio.sleep(0.05)
        await repo.mark_cancelled(b.id)
        await asyncio.sleep(0.05)
        await repo.mark_failed(a.id, "boom")

    async def on_change(count: int) -> None:
        seen.append(count)

    finishing = asyncio.create_task(finish_jobs())
    assert await ops.wait_until_unused("sd", 5.0, on_change) == 0
    await finishing
    assert seen[0] == 2 and seen[-1] == 1  # each new count is shown once


async def test_wait_until_unused_gives_up_after_the_timeout(repo):
    ops = ModelOps(repo, ScriptedModels(), poll_s=0.01)
    await repo.create_job(job_for("sd"), Limits(None, None))
    seen: list[int] = []

    async def on_change(count: int) -> None:
        seen.append(count)

    assert await ops.wait_until_unused("sd", 0.05, on_change) == 1
    assert seen == [1]
    assert await ops.wait_until_unused("free", 0.05, on_change) == 0 and seen == [1]


def test_engine_facts_from_the_client_and_from_a_bare_double():
    client = engine_client(
        ready=True,
        pid=99,
        started_at=None,
        restarts=2,
        failed=None,
        last_ready=Ready(device="cuda", dtype="float16", pid=99),
    )
    facts = engine_facts(client)
    assert (facts.ready, facts.pid, facts.device, facts.restarts) == (True, 99, "cuda, float16", 2)
    bare = engine_facts(object())
    assert (bare.ready, bare.pid, bare.device, bare.restarts, bare.failure) == (
        False,
        None,
        None,
        0,
        None,
    )

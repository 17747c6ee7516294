"""Every query in the repository, against a migrated SQLite file."""

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import event, update

from bot.store.database import create_engine, create_sessionmaker, migrate
from bot.store.models import Job, JobKind, JobStatus, RateLimitUsage, utcnow
from bot.store.repository import (
    MAX_RUNS,
    RAN_TOO_OFTEN,
    Finished,
    InvalidTransition,
    Limits,
    NewImage,
    NewJob,
    NotFound,
    RateLimited,
    Repository,
    StoreError,
    TooManyQueued,
    check_window,
)

UNLIMITED = Limits(max_queued_jobs=None, images_per_hour=None)


def new_job(user_id: int = 1, seeds=(1,), **overrides) -> NewJob:
    fields = dict(
        user_id=user_id,
        user_name=f"user{user_id}",
        kind=JobKind.TEXT_TO_IMAGE,
        model_name="tiny",
        model_source="/models/tiny",
        model_revision=None,
        prompt="a watercolor fox",
        negative_prompt="blurry",
        seeds=tuple(seeds),
        steps=20,
        guidance=7.5,
        width=512,
        height=512,
        scheduler="euler",
        channel_id=100,
        guild_id=10,
    )
    fields.update(overrides)
    return NewJob(**fields)


async def test_create_job_keeps_everything_needed_to_reproduce(repo):
    job = await repo.create_job(
        new_job(seeds=(5, 6), strength=0.8, mask_prompt="the sky"), UNLIMITED
    )
    loaded = await repo.get_job(job.id)
    assert loaded.status is JobStatus.QUEUED
    assert loaded.seeds == [5, 6] and loaded.count == 2
    assert (loaded.prompt, loaded.negative_prompt, loaded.steps, loaded.guidance) == (
        "a watercolor fox",
        "blurry",
        20,
        7.5,
    )
    assert (loaded.width, loaded.height, loaded.scheduler, loaded.strength) == (
        512,
        512,
        "euler",
        0.8,
    )
    assert loaded.mask_prompt == "the sky"
    assert loaded.created_at.tzinfo is not None
    assert await repo.get_job(9999) is None


async def test_upsert_user_updates_name_and_keeps_locale(repo):
    await repo.upsert_user(7, "ada", "en-GB")
    user = await repo.upsert_user(7, "ada lovelace")
    assert (user.name, user.locale) == ("ada lovelace", "en-GB")


async def test_status_moves_queued_running_done_with_images(repo):
    job = await repo.create_job(new_job(seeds=(11, 12)), UNLIMITED)
    running = await repo.mark_running(job.id)
    assert running.status is JobStatus.RUNNING and running.attempts == 1
    assert running.started_at is not None
    done = await repo.mark_done(
        job.id,
        [NewImage(0, 11, False, "a.png"), NewImage(1, 12, True, "b.png")],
        model_revision_used="abc123",
    )
    assert done.status is JobStatus.DONE and done.finished_at is not None
    loaded = await repo.get_job(job.id)
    assert [(i.index, i.seed, i.nsfw, i.path) for i in loaded.images] == [
        (0, 11, False, "a.png"),
        (1, 12, True, "b.png"),
    ]
    assert loaded.model_revision_used == "abc123"
    with pytest.raises(InvalidTransition):
        await repo.mark_running(job.id)


async def test_failed_and_cancelled_keep_what_the_user_was_told(repo):
    a = await repo.create_job(new_job(), UNLIMITED)
    b = await repo.create_job(new_job(), UNLIMITED)
    await repo.mark_running(a.id)
    failed = await repo.mark_failed(a.id, "The engine ran out of memory.")
    assert (failed.status, failed.error) == (JobStatus.FAILED, "The engine ran out of memory.")
    cancelled = await repo.mark_cancelled(b.id)
    assert cancelled.status is JobStatus.CANCELLED
    with pytest.raises(InvalidTransition):
        await repo.mark_cancelled(b.id)
    with pytest.raises(NotFound):
        await repo.mark_failed(404, "x")


async def test_requeue_after_crash_and_after_restart(repo):
    a = await repo.create_job(new_job(), UNLIMITED)
    b = await repo.create_job(new_job(), UNLIMITED)
    c = await repo.create_job(new_job(), UNLIMITED)
    await repo.mark_running(a.id)
    requeued = await repo.mark_requeued(a.id)
    assert requeued.status is JobStatus.QUEUED and requeued.started_at is None
    await repo.mark_running(a.id)
    await repo.mark_running(b.id)
    await repo.mark_running(c.id)
    await repo.mark_done(c.id, [], None)
    assert [j.id for j in await repo.list_active()] == [a.id, b.id]
    queued = await repo.requeue_interrupted()
    assert [j.id for j in queued] == [a.id, b.id]
    assert all(j.status is JobStatus.QUEUED for j in queued)
    assert (await repo.get_job(a.id)).attempts == 2


async def test_a_job_started_too_often_is_failed_at_start_not_run_again(repo):
    """A job whose ending was never stored (or that stops the bot) would otherwise run at
    every start, forever."""
    worn = await repo.create_job(new_job(), UNLIMITED)
    fresh = await repo.create_job(new_job(), UNLIMITED)
    ended: list[int] = []
    repo.on_job_ended(lambda job: ended.append(job.id))
    for _ in range(MAX_RUNS - 1):
        await repo.mark_running(worn.id)
        assert [j.id for j in await repo.requeue_interrupted()] == [worn.id, fresh.id]
    await repo.mark_running(worn.id)  # started MAX_RUNS times now
    await repo.mark_running(fresh.id)
    assert [j.id for j in await repo.requeue_interrupted()] == [fresh.id]
    failed = await repo.get_job(worn.id)
    assert (failed.status, failed.error) == (JobStatus.FAILED, RAN_TOO_OFTEN)
    assert failed.finished_at is not None and ended == [worn.id]


async def test_history_latest_and_count(repo):
    ids = [(await repo.create_job(new_job(prompt=f"p{i}"), UNLIMITED)).id for i in range(5)]
    await repo.create_job(new_job(user_id=2), UNLIMITED)
    page1 = await repo.history(1, limit=2)
    page2 = await repo.history(1, limit=2, offset=2)
    assert [j.id for j in page1] == [ids[4], ids[3]]
    assert [j.id for j in page2] == [ids[2], ids[1]]
    assert (await repo.latest_job(1)).id == ids[4]
    assert await repo.latest_job(3) is None
    assert await repo.count_jobs(1) == 5


async def test_result_and_status_message_ids_are_kept(repo):
    job = await repo.create_job(new_job(), UNLIMITED)
    await repo.set_status_message(job.id, 555)
    await repo.set_result_message(job.id, 777)
    loaded = await repo.get_job(job.id)
    assert (loaded.status_message_id, loaded.result_message_id) == (555, 777)


async def test_delete_job_only_when_finished_and_unlinks_rerolls(repo):
    parent = await repo.create_job(new_job(), UNLIMITED)
    with pytest.raises(InvalidTransition):
        await repo.delete_job(parent.id)
    await repo.mark_running(parent.id)
    await repo.mark_done(parent.id, [NewImage(0, 1, False, "x.png")], None)
    child = await repo.create_job(new_job(parent_job_id=parent.id), UNLIMITED)
    deleted = await repo.delete_job(parent.id)
    assert [i.path for i in deleted.images] == ["x.png"]
    assert await repo.get_job(parent.id) is None
    assert (await repo.get_job(child.id)).parent_job_id is None
    with pytest.raises(NotFound):
        await repo.delete_job(parent.id)


async def test_queued_limit_refuses_and_writes_nothing(repo):
    limits = Limits(max_queued_jobs=2, images_per_hour=None)
    first = await repo.create_job(new_job(), limits)
    await repo.create_job(new_job(), limits)
    with pytest.raises(TooManyQueued) as refused:
        await repo.create_job(new_job(), limits)
    assert "2 jobs waiting" in str(refused.value)
    assert await repo.count_jobs(1) == 2
    # Another user is not affected, and a finished job frees a place.
    await repo.create_job(new_job(user_id=2), limits)
    await repo.mark_cancelled(first.id)
    await repo.create_job(new_job(), limits)


async def test_rate_limit_counts_images_and_says_when_to_retry(repo):
    limits = Limits(max_queued_jobs=None, images_per_hour=5)
    await repo.create_job(new_job(seeds=(1, 2, 3)), limits)
    await repo.create_job(new_job(seeds=(4, 5)), limits)
    before = utcnow()
    with pytest.raises(RateLimited) as refused:
        await repo.create_job(new_job(seeds=(6,)), limits)
    # The first job's three images leave the window an hour after they were counted.
    assert before + timedelta(minutes=59) < refused.value.retry_at <= before + timedelta(hours=1)
    assert await repo.count_jobs(1) == 2
    assert await repo.images_in_window(1) == 5
    assert await repo.images_in_window() == 5
    with pytest.raises(StoreError, match="at most 5 images an hour"):
        await repo.consume_images(2, 6, 5)


async def test_rate_limit_window_rolls_and_prune_drops_old_rows(repo, db_engine):
    sessions = repo._sessions
    async with sessions.begin() as session:
        await repo.upsert_user(1, "u")
        session.add(RateLimitUsage(user_id=1, amount=5, at=utcnow() - timedelta(minutes=61)))
    await repo.consume_images(1, 5, 5)  # the old five no longer count
    assert await repo.images_in_window(1) == 5
    assert await repo.prune_rate_limits() == 1


async def test_rate_limit_holds_under_concurrent_callers(tmp_path):
    """Many connections race to consume; the limit is never exceeded.

    Separate engines give separate SQLite connections (and writers), as separate processes
    would: ``create_job`` with ``Limits`` checks the rows under the write lock, which holds
    across processes. The bot itself checks in memory, exact within its one process
    (tests/bot/jobs/test_service.py races 40 commands for 10 places the same way).
    """
    url = f"sqlite+aiosqlite:///{tmp_path / 'race.db'}"
    engines = [create_engine(url) for _ in range(8)]
    try:
        await migrate(engines[0])
        repos = [Repository(create_sessionmaker(e)) for e in engines]
        await repos[0].upsert_user(1, "racer")
        limits = Limits(max_queued_jobs=None, images_per_hour=10)

        async def attempt(repo: Repository) -> bool:
            try:
                await repo.create_job(new_job(seeds=(1,)), limits)
            except RateLimited:
                return False
            return True

        outcomes = await asyncio.gather(*(attempt(repos[i % 8]) for i in range(40)))
        assert sum(outcomes) == 10
        assert await repos[0].images_in_window(1) == 10
        assert await repos[0].count_jobs(1) == 10
    finally:
        for engine in engines:
            await engine.dispose()


async def test_models_add_default_enable_remove(repo):
    first = await repo.add_model("sd15", "org/sd15", JobKind.TEXT_TO_IMAGE)
    assert first.is_default  # the first of its kind is usable at once
    second = await repo.add_model("tiny", "/m/tiny", JobKind.TEXT_TO_IMAGE, revision="main")
    assert not second.is_default
    inpaint = await repo.add_model("sd-inpaint", "org/inpaint", JobKind.INPAINT)
    assert inpaint.is_default
    with pytest.raises(StoreError, match="already exists"):
        await repo.add_model("tiny", "x", JobKind.TEXT_TO_IMAGE)

    await repo.set_default_model("tiny")
    assert (await repo.default_model(JobKind.TEXT_TO_IMAGE)).name == "tiny"
    assert (await repo.default_model(JobKind.INPAINT)).name == "sd-inpaint"

    with pytest.raises(StoreError, match="default"):
        await repo.set_model_enabled("tiny", False)
    await repo.set_model_enabled("sd15", False)
    assert [m.name for m in await repo.list_models(enabled_only=True)] == ["sd-inpaint", "tiny"]
    assert [m.name for m in await repo.list_models(kind=JobKind.TEXT_TO_IMAGE)] == ["sd15", "tiny"]
    with pytest.raises(StoreError, match="disabled"):
        await repo.set_default_model("sd15")
    await repo.set_model_enabled("sd15", True)

    with pytest.raises(StoreError):
        await repo.remove_model("tiny")
    await repo.remove_model("sd15")
    assert await repo.get_model("sd15") is None
    with pytest.raises(NotFound):
        await repo.remove_model("sd15")


async def test_ensure_default_models_runs_once(repo):
    defaults = {
        JobKind.TEXT_TO_IMAGE: "org/sd-a",
        JobKind.INPAINT: "/models/sd-b/",
        JobKind.UPSCALE: "org/x4",
    }
    revisions = {JobKind.UPSCALE: "abc123"}
    await repo.ensure_default_models(defaults, revisions)
    await repo.ensure_default_models(defaults, revisions)
    models = await repo.list_models()
    assert sorted((m.name, m.source, m.kind, m.is_default, m.revision) for m in models) == [
        ("sd-a", "org/sd-a", JobKind.TEXT_TO_IMAGE, True, None),
        ("sd-b", "/models/sd-b/", JobKind.INPAINT, True, None),
        ("x4", "org/x4", JobKind.UPSCALE, True, "abc123"),  # pinned
    ]


async def test_a_new_kinds_default_is_offered_pinned_and_an_empty_one_is_not(repo):
    await repo.ensure_default_models({JobKind.TEXT_TO_IMAGE: "org/sd-a"})
    # A later start that knows depth models: offered then, at the pinned commit.
    await repo.ensure_default_models(
        {JobKind.TEXT_TO_IMAGE: "org/sd-a", JobKind.DEPTH_TO_IMAGE: "org/sd-depth"},
        revisions={JobKind.DEPTH_TO_IMAGE: "abc123"},
    )
    depth = await repo.default_model(JobKind.DEPTH_TO_IMAGE)
    assert (depth.name, depth.source, depth.revision) == ("sd-depth", "org/sd-depth", "abc123")
    await repo.ensure_default_models({JobKind.INPAINT: " "})
    assert await repo.default_model(JobKind.INPAINT) is None


async def test_audit_log_newest_first(repo):
    await repo.audit(1, "ada", "models.add", "tiny", True, "added")
    await repo.audit(2, "bob", "models.load", "tiny", False, "no such folder")
    entries = await repo.latest_audit(limit=10)
    assert [(e.actor_name, e.action, e.ok) for e in entries] == [
        ("bob", "models.load", False),
        ("ada", "models.add", True),
    ]
    assert entries[0].at.tzinfo is not None


async def test_count_by_status(repo):
    a = await repo.create_job(new_job(), UNLIMITED)
    await repo.create_job(new_job(), UNLIMITED)
    await repo.mark_running(a.id)
    counts = await repo.count_by_status()
    assert counts[JobStatus.QUEUED] == 1 and counts[JobStatus.RUNNING] == 1
    assert counts[JobStatus.DONE] == 0


async def test_count_active_for_model_counts_only_queued_and_running_jobs_of_that_model(repo):
    queued = await repo.create_job(new_job(model_name="a"), UNLIMITED)
    running = await repo.create_job(new_job(model_name="a"), UNLIMITED)
    finished = await repo.create_job(new_job(model_name="a"), UNLIMITED)
    await repo.create_job(new_job(model_name="b"), UNLIMITED)
    await repo.mark_running(running.id)
    await repo.mark_cancelled(finished.id)
    assert await repo.count_active_for_model("a") == 2
    await repo.mark_cancelled(queued.id)
    assert await repo.count_active_for_model("a") == 1
    assert await repo.count_active_for_model("nope") == 0


async def test_count_images_since_counts_every_image_in_the_window(repo):
    from sqlalchemy import update

    from bot.store.models import Image

    for seeds in [(1, 2), (3,)]:
        job = await repo.create_job(new_job(seeds=seeds), UNLIMITED)
        await repo.mark_running(job.id)
        await repo.mark_done(
            job.id, [NewImage(i, s, False, f"{s}.png") for i, s in enumerate(seeds)], None
        )
    hour_ago = utcnow() - timedelta(hours=1)
    assert await repo.count_images_since(hour_ago) == 3
    async with repo._sessions.begin() as session:
        await session.execute(
            update(Image).where(Image.seed == 3).values(created_at=hour_ago - timedelta(minutes=1))
        )
    assert await repo.count_images_since(hour_ago) == 2
    assert await repo.count_images_since(utcnow() + timedelta(seconds=1)) == 0


async def test_models_are_read_from_memory_and_again_after_each_change(repo, db_engine):
    await repo.add_model("sd", "/models/sd", JobKind.TEXT_TO_IMAGE)
    statements: list[str] = []

    def count(_conn, _cursor, statement: str, *_args) -> None:
        statements.append(statement)

    event.listen(db_engine.sync_engine, "before_cursor_execute", count)
    try:
        for _ in range(3):
            assert (await repo.default_model(JobKind.TEXT_TO_IMAGE)).name == "sd"
            assert (await repo.get_model("sd")).enabled
            assert [m.name for m in await repo.list_models(enabled_only=True)] == ["sd"]
        assert statements == []  # the add read the table again already
        # Each admin change is seen by the next read, which needs no query either.
        await repo.add_model("sd2", "/models/sd2", JobKind.TEXT_TO_IMAGE)
        await repo.set_default_model("sd2")
        statements.clear()
        assert (await repo.default_model(JobKind.TEXT_TO_IMAGE)).name == "sd2"
        await repo.set_model_enabled("sd", False)
        statements.clear()
        assert [m.name for m in await repo.list_models(enabled_only=True)] == ["sd2"]
        await repo.remove_model("sd")
        statements.clear()
        assert await repo.get_model("sd") is None
        assert statements == []
    finally:
        event.remove(db_engine.sync_engine, "before_cursor_execute", count)


async def test_a_failed_model_change_leaves_the_table_as_it_was(repo):
    await repo.add_model("sd", "/models/sd", JobKind.TEXT_TO_IMAGE)
    with pytest.raises(StoreError):
        await repo.set_model_enabled("sd", False)  # the default cannot be disabled
    assert (await repo.get_model("sd")).enabled


async def test_a_batch_starts_and_finishes_in_one_transaction_each(repo):
    jobs = [await repo.create_job(new_job(seeds=(n,)), UNLIMITED) for n in range(4)]
    await repo.mark_cancelled(jobs[3].id)
    before = repo.writer.transactions
    running = await repo.mark_running_many([job.id for job in jobs])
    assert running == {job.id for job in jobs[:3]}  # the cancelled one stays out
    done = await repo.mark_done_many(
        [
            Finished(jobs[0].id, [NewImage(0, 0, False, "0.png")], "rev-a"),
            Finished(jobs[1].id, [NewImage(0, 1, True, "1.png")], "rev-b"),
            Finished(jobs[3].id, [], None),  # not running: left out
        ]
    )
    assert repo.writer.transactions == before + 2
    assert [(j.id, j.status, j.model_revision_used) for j in done] == [
        (jobs[0].id, JobStatus.DONE, "rev-a"),
        (jobs[1].id, JobStatus.DONE, "rev-b"),
    ]
    assert [(i.seed, i.nsfw, i.path) for i in done[1].images] == [(1, True, "1.png")]
    stored = await repo.get_job(jobs[0].id)
    assert stored.attempts == 1 and stored.finished_at is not None
    assert [i.path for i in stored.images] == ["0.png"]
    assert (await repo.get_job(jobs[2].id)).status is JobStatus.RUNNING


async def test_listeners_hear_of_every_job_that_ends(repo):
    ended: list[tuple[int, JobStatus]] = []
    repo.on_job_ended(lambda job: ended.append((job.id, job.status)))
    a, b, c, d = [await repo.create_job(new_job(), UNLIMITED) for _ in range(4)]
    await repo.mark_running_many([a.id, b.id, d.id])
    await repo.mark_done(a.id, [], None)
    await repo.mark_failed(b.id, "no")
    await repo.mark_cancelled(c.id)
    await repo.mark_done_many([Finished(d.id, [], None)])
    assert ended == [
        (a.id, JobStatus.DONE),
        (b.id, JobStatus.FAILED),
        (c.id, JobStatus.CANCELLED),
        (d.id, JobStatus.DONE),
    ]


async def test_what_in_memory_limits_start_from(repo):
    counted = utcnow() - timedelta(minutes=5)
    a = await repo.create_job(new_job(seeds=(1, 2)), counted_at=counted)
    b = await repo.create_job(new_job(user_id=2), UNLIMITED)  # exempt: nothing counted
    await repo.mark_cancelled(b.id)
    assert await repo.usage_in_window() == [(1, counted, 2)]
    assert await repo.active_job_owners() == [(a.id, 1)]


def test_the_hourly_refusal_says_what_was_made_and_what_still_fits():
    """Issue 16 item 3: after 3 of 4 images, count=2 was told "You have made 4 images"."""
    now = utcnow()
    used = [(now - timedelta(minutes=10), 3)]
    with pytest.raises(RateLimited) as refused:
        check_window(used, 2, 4, now)
    assert str(refused.value) == (
        "You have made 3 of the 4 images allowed in an hour, and this asks for 2: "
        "1 more image would fit now (a smaller count)."
    )
    with pytest.raises(RateLimited) as full:
        check_window([(now - timedelta(minutes=10), 4)], 1, 4, now)
    assert str(full.value) == "You have made 4 images in the last hour, the most allowed."


async def aged(repo, job_id: int, *, created=None, finished=None) -> None:
    """Set when a job was made or ended, as if it had been then."""
    values = {"created_at": created, "finished_at": finished}
    values = {name: value for name, value in values.items() if value is not None}
    await repo.writer.run(lambda s: s.execute(update(Job).where(Job.id == job_id).values(**values)))


async def finished_job(repo, *, days_ago: float, posted: bool, **fields) -> int:
    """A done job that ended ``days_ago``, posted to Discord or not."""
    job = await repo.create_job(new_job(**fields), UNLIMITED)
    await repo.mark_running(job.id)
    await repo.mark_done(job.id, [NewImage(0, 1, False, f"job{job.id}_0.png")], None)
    if posted:
        await repo.set_result_message(job.id, 9000 + job.id)
    when = utcnow() - timedelta(days=days_ago)
    await aged(repo, job.id, created=when, finished=when)
    return job.id


async def test_jobs_keeping_files_are_the_unended_the_recent_and_the_unposted(repo):
    now = utcnow()
    queued = (await repo.create_job(new_job(), UNLIMITED)).id
    running = (await repo.create_job(new_job(), UNLIMITED)).id
    await repo.mark_running(running)
    old = await finished_job(repo, days_ago=40, posted=True)
    old_unposted = await finished_job(repo, days_ago=40, posted=False)
    recent = await finished_job(repo, days_ago=10, posted=True)
    unposted = await finished_job(repo, days_ago=0.5, posted=False)  # the next start posts it
    failed = (await repo.create_job(new_job(), UNLIMITED)).id
    await repo.mark_failed(failed, "x")
    await aged(repo, failed, finished=now - timedelta(days=40))
    every = {queued, running, old, old_unposted, recent, unposted, failed, 999}

    kept = await repo.jobs_keeping_files(
        every, ended_before=now - timedelta(days=30), redeliver_since=now - timedelta(days=1)
    )
    assert kept == {queued, running, recent, unposted}
    # Even with every ended job past the retention, an unposted result in the window stays.
    kept = await repo.jobs_keeping_files(
        every, ended_before=now, redeliver_since=now - timedelta(days=1)
    )
    assert kept == {queued, running, unposted}


async def test_referenced_inputs_are_those_of_live_or_young_jobs(repo):
    now = utcnow()
    old = await finished_job(repo, days_ago=40, posted=True, image_ref="aa/x.png", mask_ref="m")
    await finished_job(repo, days_ago=5, posted=True, image_ref="aa/x.png", mask_ref="n")
    waiting = await repo.create_job(new_job(image_ref="w", mask_ref=None), UNLIMITED)
    await aged(repo, waiting.id, created=now - timedelta(days=40))  # queued all this time
    await finished_job(repo, days_ago=40, posted=True, image_ref="gone")

    assert await repo.referenced_inputs(since=now - timedelta(days=30)) == {"aa/x.png", "n", "w"}
    assert await repo.referenced_inputs(among=["m", "gone", "other"]) == {"m", "gone"}
    await repo.delete_job(old)
    assert await repo.referenced_inputs(among=["aa/x.png", "m"]) == {"aa/x.png"}

"""Nothing lost: restarts, Discord faults and an engine that dies, through the stub."""

import asyncio
import logging

import pytest

from bot.jobs.service import SHUTTING_DOWN
from bot.jobs.upload_fit import parameters_of
from bot.store.models import JobStatus
from tests.bot.e2e.harness import CHANNEL, eventually
from tests.bot.e2e.test_imagine import ephemeral_text, has_png, imagine

RESULT_TIMEOUT = 60
ORIGINAL = "/webhooks/*/*/messages/@original"


def in_channel_with_png_for(user):
    return lambda m: has_png(m) and f"<@{user.id}>" in m.content


async def queued(handle):
    return await handle.wait_for_message(lambda m: "Queued" in m.content)


async def test_expired_token_moves_the_result_to_the_channel_with_a_mention(harness):
    async with harness.bot() as bot:
        stub = harness.stub
        student = stub.add_user("lee")
        await bot.scheduler.pause()
        handle = await imagine(stub, student)
        await queued(handle)
        stub.expire_token(handle)
        await bot.scheduler.resume()
        posted = await stub.wait_for_channel_message(
            CHANNEL, in_channel_with_png_for(student), timeout=RESULT_TIMEOUT
        )
        assert "job #1" in posted.content

        async def recorded() -> bool:
            return (await bot.repo.get_job(1)).result_message_id == posted.id

        await eventually(recorded)


@pytest.fixture
def previews_every_step(monkeypatch):
    """The engine that the test's bot starts sends a preview at every step."""
    monkeypatch.setenv("ENGINE_PREVIEW_INTERVAL_S", "0")
    monkeypatch.setenv("ENGINE_PROGRESS_INTERVAL_S", "0")


async def imagine_held_at_a_preview(stub, bot, student):
    """An /imagine whose message shows a preview, and an event: what the scheduler tells the
    delivery after that preview (the later steps, the result) waits until it is set."""
    release = asyncio.Event()
    delivery = bot.delivery
    progress, finished = delivery.progress, delivery.finished
    previewed = False

    async def held_progress(job_id, event):
        nonlocal previewed
        if previewed:
            await release.wait()
        previewed = previewed or event.preview_png is not None
        await progress(job_id, event)

    async def held_finished(job, result, stored=()):
        await release.wait()
        await finished(job, result, stored)

    delivery.progress, delivery.finished = held_progress, held_finished
    handle = await imagine(stub, student, steps=3)

    async def previewing() -> bool:
        original = handle.original
        return original is not None and any(
            a.filename == "preview.png" for a in original.attachments
        )

    await eventually(previewing, RESULT_TIMEOUT)
    return handle, release


@pytest.mark.usefixtures("previews_every_step")
@pytest.mark.parametrize(
    ("fault", "line"), [("refused", "Result posted below"), ("expired", "Continued below")]
)
async def test_a_job_that_moves_to_a_new_message_leaves_no_preview_behind(harness, fault, line):
    """The result would not go into the job's message, or the token ran out mid-job: the job
    goes on in a new message, and the old one ends up as one line pointing there, its preview
    and buttons gone."""
    async with harness.bot() as bot:
        stub = harness.stub
        student = stub.add_user("uma")
        handle, release = await imagine_held_at_a_preview(stub, bot, student)
        if fault == "refused":  # the old message takes no more edits, the result's included
            stub.fail_next("PATCH", ORIGINAL, status=400, times=100)
        else:
            stub.expire_token(handle)
        release.set()
        posted = await stub.wait_for_channel_message(
            CHANNEL, in_channel_with_png_for(student), timeout=RESULT_TIMEOUT
        )

        async def pointing() -> bool:
            return line in handle.original.content

        await eventually(pointing)
        old = handle.original
        url = f"https://discord.com/channels/{posted.guild_id}/{posted.channel_id}/{posted.id}"
        assert old.content == f"{line}: {url}"
        assert old.attachments == () and old.components == ()


async def test_server_errors_and_rate_limits_on_the_result_are_retried(harness):
    async with harness.bot() as bot:
        stub = harness.stub
        server_error = stub.fail_next("PATCH", ORIGINAL, status=500, times=1)
        handle = await imagine(stub, stub.add_user("max"))
        await handle.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
        assert server_error.hits == 1

        rate_limited = stub.fail_next("PATCH", ORIGINAL, status=429, times=2)
        handle = await imagine(stub, stub.add_user("ned"))
        await handle.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
        assert rate_limited.hits == 2
        assert [job.status for job in await bot.repo.history(stub.user("ned").id)] == [
            JobStatus.DONE
        ]


async def test_a_result_over_the_upload_limit_is_reencoded_not_lost(harness):
    async with harness.bot() as bot:
        bot.delivery._upload_limit = lambda ticket: 150_000  # a small server's limit
        handle = await imagine(harness.stub, harness.stub.add_user("oli"), seed=5, count=2)
        result = await handle.wait_for_message(has_png_or_webp, timeout=RESULT_TIMEOUT)
        assert [a.filename.rsplit(".", 1)[1] for a in result.attachments] == ["webp", "webp"]
        assert sum(a.size for a in result.attachments) <= 150_000
        assert "Re-encoded as WebP" in result.content
        assert "Seed: 5" in parameters_of(result.attachments[0].data)


def has_png_or_webp(message) -> bool:
    return bool(message.attachments) and any(
        c.startswith("job:reroll:") for c in message.custom_ids
    )


async def test_gateway_drop_does_not_disturb_a_running_job(harness):
    async with harness.bot() as bot:
        stub = harness.stub
        await bot.scheduler.pause()
        handle = await imagine(stub, stub.add_user("pat"))
        await queued(handle)
        dropped = await stub.drop_gateway(abrupt=True)
        await bot.scheduler.resume()
        await handle.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
        await stub.wait_connected(after=dropped.index)


async def test_jobs_left_queued_resume_after_a_restart_and_owners_are_told(harness):
    stub = harness.stub
    student = stub.add_user("quinn")
    async with harness.bot() as bot:
        await bot.scheduler.pause()
        await queued(await imagine(stub, student, prompt="left behind"))
    async with harness.bot() as bot:
        posted = await stub.wait_for_channel_message(
            CHANNEL, in_channel_with_png_for(student), timeout=RESULT_TIMEOUT
        )
        assert "your job #1 resumed after a restart" in posted.content
        assert "left behind" in posted.content
        assert (await bot.repo.get_job(1)).status is JobStatus.DONE


async def test_a_result_that_could_not_be_posted_is_posted_at_the_next_start(harness):
    stub = harness.stub
    student = stub.add_user("rae")
    async with harness.bot() as bot:
        bot.delivery._retry_delays = ()
        # Every edit is refused outright and so is the channel fallback: Discord is down.
        edits = stub.fail_next("PATCH", ORIGINAL, status=400, times=100)
        post = stub.fail_next("POST", "/channels/{channel_id}/messages", status=400, times=1)
        await imagine(stub, student)

        async def both_refused() -> bool:
            return edits.hits >= 1 and post.hits == 1

        await eventually(both_refused, RESULT_TIMEOUT)
    async with harness.repository() as repo:
        job = await repo.get_job(1)
        assert job.status is JobStatus.DONE and job.result_message_id is None
    async with harness.bot() as bot:
        posted = await stub.wait_for_channel_message(
            CHANNEL, in_channel_with_png_for(student), timeout=RESULT_TIMEOUT
        )
        assert "your job #1 resumed after a restart" in posted.content

        async def recorded() -> bool:
            return (await bot.repo.get_job(1)).result_message_id == posted.id

        await eventually(recorded)


async def test_shutdown_finishes_the_running_batch_and_keeps_the_rest_queued(harness):
    stub = harness.stub
    async with harness.bot() as bot:
        await bot.scheduler.pause()
        first = await imagine(stub, stub.add_user("sam"), steps=3)
        await queued(first)
        await imagine(stub, stub.add_user("tia"), steps=2)  # a different batch

        async def both_queued() -> bool:
            return (await bot.repo.count_by_status())[JobStatus.QUEUED] == 2

        await eventually(both_queued)
        await bot.scheduler.resume()
        await first.wait_for_message(lambda m: "Painting" in m.content, timeout=RESULT_TIMEOUT)
        # Leaving the block closes the bot while job 1 runs.
    async with harness.repository() as repo:
        assert (await repo.get_job(1)).status is JobStatus.DONE
        assert (await repo.get_job(2)).status is JobStatus.QUEUED
    async with harness.bot() as bot:
        bot.jobs.accepting = False  # as during the next shutdown
        refused = await imagine(stub, stub.user("sam"))
        assert SHUTTING_DOWN in await ephemeral_text(refused)


async def test_the_token_never_reaches_the_logs(harness, caplog):
    with caplog.at_level(logging.DEBUG):
        async with harness.bot():
            handle = await imagine(harness.stub, harness.stub.add_user("uma"))
            await handle.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
    assert caplog.records
    token = harness.stub.token
    assert not [r for r in caplog.records if token in r.getMessage() or token in (r.exc_text or "")]


async def test_cancel_while_the_engine_restarts_is_answered_at_once_and_cancels(harness):
    """The scheduler never holds its lock while waiting for an engine to come back, so the
    Cancel button is answered during the restart's pause, and the job never runs."""
    import os
    import signal

    async with harness.bot(engine_backoff_s=60) as bot:
        stub = harness.stub
        student = stub.add_user("cato")

        async def engine_ready() -> bool:
            return bot.engine.ready

        await eventually(engine_ready, RESULT_TIMEOUT)
        await bot.scheduler.pause()
        handle = await imagine(stub, student)
        message = await queued(handle)
        os.kill(bot.engine.pid, signal.SIGKILL)  # restarted only after a minute's pause

        async def in_the_pause() -> bool:
            return bot.engine.retry_at is not None

        await eventually(in_the_pause)
        await bot.scheduler.resume()  # job 1 goes to the engine client, which waits
        assert bot.scheduler.position(1) == 0
        cancel = await stub.click(message, "job:cancel:1", user=student)
        assert "Cancelling job #1" in await ephemeral_text(cancel)
        await handle.wait_for_message(lambda m: "Cancelled" in m.content)
        assert not bot.engine.ready  # all of it during the pause
        assert (await bot.repo.get_job(1)).status is JobStatus.CANCELLED


async def test_a_hung_engine_is_restarted_and_its_job_retried(harness):
    import os
    import signal

    from bot.settings import SchedulerSettings

    # Long enough that the restarted engine's first load of the model (several seconds on a
    # loaded 2-core machine, before its first event) is not taken for a second stall.
    harness.settings = harness.settings.model_copy(
        update={"scheduler": SchedulerSettings(stall_timeout_s=8, _env_file=None)}
    )
    # Its own engine process: a stopped fork server's shim would leave the engine running.
    async with harness.bot(forked=False) as bot:
        stub = harness.stub
        await bot.scheduler.pause()
        handle = await imagine(stub, stub.add_user("wes"))
        await queued(handle)

        async def engine_ready() -> bool:
            return bot.engine.ready

        await eventually(engine_ready, RESULT_TIMEOUT)
        frozen = bot.engine.pid
        os.kill(frozen, signal.SIGSTOP)  # alive but silent, as a wedged driver would leave it
        await bot.scheduler.resume()
        await handle.wait_for_message(has_png, timeout=2 * RESULT_TIMEOUT)
        assert bot.engine.pid != frozen and bot.engine.restarts == 1
        job = await bot.repo.get_job(1)
        assert job.status is JobStatus.DONE and job.attempts == 2
        assert any("queued again" in (e.message.content if e.message else "") for e in handle.edits)

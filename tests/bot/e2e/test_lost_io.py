"""Nothing lost or posted twice when Discord's connection drops, an answer is lost, or the
bot restarts between posting a job's end and recording it (issue 15, items 5, 7, 9, 11)."""

from bot.jobs.image_store import ImageStore
from bot.store.database import create_engine, migrate
from bot.store.models import JobStatus
from bot.store.repository import NewJob
from engine.protocol import JobKind
from tests.bot.e2e.harness import CHANNEL, eventually
from tests.bot.e2e.test_faults import ORIGINAL, RESULT_TIMEOUT, in_channel_with_png_for, queued
from tests.bot.e2e.test_imagine import has_png, imagine

CHANNEL_MESSAGES = "/channels/{channel_id}/messages"


def pngs_for(stub, job_id: int) -> list:
    """Every message in the channel that carries job ``job_id``'s images."""
    return [
        m
        for m in stub.channel_messages(CHANNEL)
        if any(a.filename.startswith(f"job{job_id}_") for a in m.attachments)
    ]


async def test_a_dropped_connection_under_the_result_is_retried(harness):
    async with harness.bot() as bot:
        bot.delivery._retry_delays = (0.1, 0.1, 0.1)
        stub = harness.stub
        # Every edit of the job's message loses its connection three times in a row: the
        # progress edits shrug it off, the result is tried again.
        dropped = stub.drop_next("PATCH", ORIGINAL, times=3)
        handle = await imagine(stub, stub.add_user("ida"))
        await handle.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
        assert dropped.hits == 3

        async def recorded() -> bool:
            return (await bot.repo.get_job(1)).result_message_id == handle.original.id

        await eventually(recorded)


async def test_a_result_whose_answer_was_lost_is_not_posted_twice(harness):
    """The channel took the result but the connection dropped before its answer: the retry
    carries the same nonce, so Discord hands back the message it made."""
    async with harness.bot() as bot:
        bot.delivery._retry_delays = (0.1,)
        stub = harness.stub
        student = stub.add_user("jon")
        await bot.scheduler.pause()
        handle = await imagine(stub, student)
        await queued(handle)
        stub.expire_token(handle)  # the result goes to the channel as a new message
        stub.drop_next("POST", CHANNEL_MESSAGES, after=True)
        await bot.scheduler.resume()
        posted = await stub.wait_for_channel_message(
            CHANNEL, in_channel_with_png_for(student), timeout=RESULT_TIMEOUT
        )

        async def recorded() -> bool:
            return (await bot.repo.get_job(1)).result_message_id == posted.id

        await eventually(recorded)
        assert pngs_for(stub, 1) == [posted]


async def test_a_restart_leaves_no_message_on_queued_with_a_cancel_button(harness):
    stub = harness.stub
    student = stub.add_user("kim")
    async with harness.bot() as bot:
        await bot.scheduler.pause()
        handle = await imagine(stub, student, prompt="left behind")
        first = await queued(handle)
        assert "job:cancel:1" in first.custom_ids

        async def status_recorded() -> bool:
            return (await bot.repo.get_job(1)).status_message_id == first.id

        await eventually(status_recorded)
    async with harness.bot():
        posted = await stub.wait_for_channel_message(
            CHANNEL, in_channel_with_png_for(student), timeout=RESULT_TIMEOUT
        )

        async def pointing() -> bool:
            return "Continued below" in handle.original.content

        await eventually(pointing)
        old = handle.original
        assert old.content.startswith("Continued below: ") and old.content.endswith(f"/{posted.id}")
        assert old.components == () and old.attachments == ()


async def test_a_cancelled_job_keeps_no_buttons(harness):
    async with harness.bot() as bot:
        stub = harness.stub
        student = stub.add_user("lou")
        await bot.scheduler.pause()
        handle = await imagine(stub, student)
        message = await queued(handle)
        await stub.click(message, "job:cancel:1", user=student)
        ended = await handle.wait_for_message(lambda m: "Cancelled" in m.content)
        assert ended.components == ()


async def migrated(harness) -> None:
    """The store as a first start leaves it, before any bot has run."""
    database = create_engine(harness.settings.database.url)
    try:
        await migrate(database)
    finally:
        await database.dispose()


async def ended_job(
    repo, status: JobStatus, channel_id: int, *, status_message_id: int | None
) -> int:
    """A job the last run ended (failed, cancelled) but whose end it never posted."""
    new = NewJob(
        user_id=4242,
        user_name="max",
        kind=JobKind.TEXT_TO_IMAGE,
        model_name="tiny-sd",
        model_source="/nowhere",
        model_revision=None,
        prompt="an ended job",
        seeds=(1,),
        guild_id=None,
        channel_id=channel_id,
    )
    job = await repo.create_job(new)
    await repo.mark_running_many([job.id])
    if status is JobStatus.FAILED:
        await repo.mark_failed(job.id, "The engine ran out of memory.")
    else:
        await repo.mark_cancelled(job.id)
    if status_message_id is not None:
        await repo.set_status_message(job.id, status_message_id)
    return job.id


async def test_failures_and_cancellations_the_last_run_did_not_post_are_posted(harness):
    stub = harness.stub
    channel = stub.channel(CHANNEL)
    old = stub.seed_bot_message(
        CHANNEL, {"content": "⏳ **Queued** · position 1", "components": []}
    )
    await migrated(harness)
    async with harness.repository() as repo:
        failed = await ended_job(repo, JobStatus.FAILED, channel.id, status_message_id=old.id)
        # Refused as it was made: its owner was told in the command's answer; no message.
        await ended_job(repo, JobStatus.CANCELLED, channel.id, status_message_id=None)
    async with harness.bot() as bot:
        posted = await stub.wait_for_channel_message(
            CHANNEL, lambda m: "**Failed**" in m.content, timeout=RESULT_TIMEOUT
        )
        assert f"your job #{failed} resumed after a restart" in posted.content
        assert "ran out of memory" in posted.content and posted.components == ()

        async def recorded() -> bool:
            return (await bot.repo.get_job(failed)).result_message_id == posted.id

        await eventually(recorded)
        pointer = next(m for m in stub.channel_messages(CHANNEL) if m.id == old.id)
        assert pointer.content.startswith("Result posted below: ")
    assert not [m for m in stub.channel_messages(CHANNEL) if "Cancelled" in m.content]


async def test_an_end_posted_but_not_recorded_is_not_posted_again(harness):
    """The last run showed the failure in the job's own message, then stopped before
    writing that down: the next start sees it there and records it, posting nothing."""
    stub = harness.stub
    channel = stub.channel(CHANNEL)
    await migrated(harness)
    async with harness.repository() as repo:
        job_id = await ended_job(repo, JobStatus.FAILED, channel.id, status_message_id=None)
        shown = stub.seed_bot_message(
            CHANNEL, {"content": f"❌ **Failed** · `an ended job` · job #{job_id}\nout of memory"}
        )
        await repo.set_status_message(job_id, shown.id)
    before = len(stub.channel_messages(CHANNEL))
    async with harness.bot() as bot:

        async def recorded() -> bool:
            return (await bot.repo.get_job(job_id)).result_message_id == shown.id

        await eventually(recorded)
    assert len(stub.channel_messages(CHANNEL)) == before


async def test_a_result_whose_images_are_gone_is_reported_and_the_rest_goes_on(
    harness, monkeypatch
):
    stub = harness.stub
    student = stub.add_user("ned")
    async with harness.bot() as bot:
        bot.delivery._retry_delays = ()
        stub.fail_next("PATCH", ORIGINAL, status=400, times=100)
        stub.fail_next("POST", CHANNEL_MESSAGES, status=400, times=2)
        await bot.scheduler.pause()
        await imagine(stub, student, prompt="first")
        await imagine(stub, student, prompt="second", steps=2)  # another batch

        async def both_done() -> bool:
            jobs = [await bot.repo.get_job(i) for i in (1, 2)]
            return all(j and j.status is JobStatus.DONE for j in jobs)

        await bot.scheduler.resume()
        await eventually(both_done, RESULT_TIMEOUT)

        async def both_refused() -> bool:
            return len(stub.requests_to("POST", CHANNEL_MESSAGES)) >= 2

        await eventually(both_refused, RESULT_TIMEOUT)
        stub.faults.clear()
    async with harness.repository() as repo:
        lost = await repo.get_job(1)
        assert lost.result_message_id is None
    for image in lost.images:
        (harness.settings.storage.output_dir / image.path).unlink()

    async def read_into_memory(*_: object) -> bytes:
        # A restart after a burst can have hundreds of results to post: they are sent from
        # their files, never read whole into the bot's memory.
        raise AssertionError("a stored result was read into memory to be posted again")

    monkeypatch.setattr(ImageStore, "read", read_into_memory)
    async with harness.bot() as bot:
        told = await stub.wait_for_channel_message(
            CHANNEL, lambda m: "no longer on the bot's disk" in m.content, timeout=RESULT_TIMEOUT
        )
        assert "job #1" in told.content and f"<@{student.id}>" in told.content
        await stub.wait_for_channel_message(
            CHANNEL, in_channel_with_png_for(student), timeout=RESULT_TIMEOUT
        )
        assert pngs_for(stub, 2)


async def test_an_answer_discord_did_not_take_still_makes_the_job(harness):
    """The deferral failed (10062: the interaction expired before the bot answered): the job
    is made all the same and posted in the channel, counted once against the hour."""
    async with harness.bot() as bot:
        stub = harness.stub
        student = stub.add_user("ola")
        stub.fail_next("POST", "/interactions/*/*/callback", status=404, code=10062, times=2)
        await imagine(stub, student, prompt="asked in time")
        posted = await stub.wait_for_channel_message(
            CHANNEL, in_channel_with_png_for(student), timeout=RESULT_TIMEOUT
        )
        assert "asked in time" in posted.content
        assert (await bot.repo.get_job(1)).status is JobStatus.DONE
        assert await bot.repo.images_in_window(student.id) == 1

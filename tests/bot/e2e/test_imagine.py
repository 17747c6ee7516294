"""/imagine through the Discord stub, with the real engine on tiny models."""

import asyncio
import logging
import re

from bot.store.models import JobStatus
from tests.bot.e2e.harness import CHANNEL, make_settings, png_parameters, png_size
from tests.discord_stub import CallbackType

FAST = {"steps": 1}
RESULT_TIMEOUT = 60


def has_png(message) -> bool:
    """The finished result: images with the Reroll button (progress previews have neither)."""
    return bool(message.png_attachments) and any(
        custom_id.startswith("job:reroll:") for custom_id in message.custom_ids
    )


async def imagine(stub, user, prompt="a watercolor fox", channel=CHANNEL, **options):
    return await stub.invoke_slash(
        "imagine", {"prompt": prompt, **FAST, **options}, user=user, channel=channel
    )


async def ephemeral_text(handle) -> str:
    """The private answer to an interaction, whether sent as response or followup."""
    message = await handle.wait_for_message(lambda m: m.flags & 64 and bool(m.content))
    return message.content


async def test_imagine_defers_shows_progress_and_posts_png_with_buttons(harness):
    async with harness.bot():
        stub = harness.stub
        student = stub.add_user("ada")
        handle = await imagine(stub, student, seed=42, steps=2, count=2)
        response = await handle.wait_for_response()
        assert response.response_type is CallbackType.DEFERRED_CHANNEL_MESSAGE

        result = await handle.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
        progress = [
            e.message.content for e in handle.edits if e.message and "Painting" in e.message.content
        ]
        assert progress and all("/2 ·" in line for line in progress)
        assert not result.flags & 64  # results are for everyone to see

        assert len(result.png_attachments) == 2
        assert [png_size(a.data) for a in result.png_attachments] == [(512, 512)] * 2
        assert "seeds 42, 43" in result.content and "2 steps" in result.content
        assert "model tiny-sd" in result.content
        params = png_parameters(result.png_attachments[1].data)
        assert params.splitlines()[0] == "a watercolor fox"
        assert "Steps: 2, Sampler: Euler, CFG scale: 7.5, Seed: 43, Size: 512x512" in params
        assert set(result.custom_ids) == {
            *("job:reroll:1", "job:details:1", "job:delete:1", "job:vary:1", "job:varymore:1"),
            *("job:cfg:1", "job:steps:1", "job:sched:1", "job:denoise:1"),  # course mode
            *("job:up1:1", "job:up2:1"),  # one Upscale per image
        }


async def test_wrong_channel_is_refused_privately_and_names_the_channel(harness):
    async with harness.bot() as bot:
        handle = await imagine(harness.stub, harness.stub.add_user("bo"), channel="general")
        text = await ephemeral_text(handle)
        channel_id = harness.stub.channel(CHANNEL).id
        assert f"<#{channel_id}>" in text and "only in" in text
        assert await bot.repo.count_jobs(harness.stub.user("bo").id) == 0


async def test_threads_inside_the_allowed_channel_work(harness):
    async with harness.bot():
        handle = await imagine(harness.stub, harness.stub.add_user("cy"), channel="imagine-results")
        await handle.wait_for_message(has_png, timeout=RESULT_TIMEOUT)


async def test_rate_limit_refusal_says_when_to_come_back(harness):
    harness.settings = make_settings(
        harness.tmp_path, harness.stub, harness.tiny, images_per_hour=3
    )
    async with harness.bot() as bot:
        stub = harness.stub
        student = stub.add_user("dee")
        first = await imagine(stub, student, count=3)
        await first.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
        refused = await imagine(stub, student)
        text = await ephemeral_text(refused)
        assert "3 images in the last hour" in text
        assert re.search(r"<t:\d+:R>", text)
        assert await bot.repo.count_jobs(student.id) == 1
        # Refused before anything public was posted.
        assert refused.response_type is CallbackType.CHANNEL_MESSAGE
        # Admins are exempt.
        admin = stub.add_user("prof", roles=["Course Admin"])
        allowed = await imagine(stub, admin, count=4)
        await allowed.wait_for_message(has_png, timeout=RESULT_TIMEOUT)


async def test_nsfw_flagged_images_are_blurred_spoilers_with_a_note(harness):
    harness.flag_everything = True
    async with harness.bot() as bot:
        handle = await imagine(harness.stub, harness.stub.add_user("eve"))
        result = await handle.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
        assert all(a.filename.startswith("SPOILER_") for a in result.png_attachments)
        assert "safety checker flagged 1 image" in result.content
        job = await bot.repo.get_job(1)
        assert [image.nsfw for image in job.images] == [True]


async def test_buttons_work_after_the_bot_restarts(harness):
    stub = harness.stub
    owner, other = stub.add_user("fay"), stub.add_user("gus")
    async with harness.bot():
        handle = await imagine(stub, owner, seed=7)
        result = await handle.wait_for_message(has_png, timeout=RESULT_TIMEOUT)

    async with harness.bot() as bot:  # a new process would see exactly this state
        details = await stub.click(result, "job:details:1", user=other)
        text = await ephemeral_text(details)
        assert "**Seeds:** 7" in text and "**Steps:** 1" in text

        refused = await stub.click(result, "job:delete:1", user=other)
        assert "only they or an admin" in await ephemeral_text(refused)
        assert await bot.repo.get_job(1) is not None

        reroll = await stub.click(result, "job:reroll:1", user=other)
        rerolled = await reroll.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
        assert "seed 7" not in rerolled.content  # a new random seed
        child = await bot.repo.get_job(2)
        assert child.parent_job_id == 1 and child.user_id == other.id

        deleted = await stub.click(result, "job:delete:1", user=owner)
        assert "Deleted job #1" in await ephemeral_text(deleted)
        assert await bot.repo.get_job(1) is None
        assert list((harness.tmp_path / "images").rglob("job1_*.png")) == []
        assert stub.requests_to("DELETE", f"/channels/{result.channel_id}/messages/{result.id}")

        # A button whose job is gone says so.
        await bot.repo.delete_job(2)
        stale = await stub.click(rerolled, "job:details:2", user=owner)
        assert "no longer exists" in await ephemeral_text(stale)


async def test_cancel_button_on_a_queued_job(harness):
    async with harness.bot() as bot:
        stub = harness.stub
        student = stub.add_user("hal")
        await bot.scheduler.pause()
        handle = await imagine(stub, student)
        queued = await handle.wait_for_message(lambda m: "Queued" in m.content)
        assert "job:cancel:1" in queued.custom_ids
        someone_else = await stub.click(queued, "job:cancel:1", user=stub.add_user("not-hal"))
        assert "only they or an admin" in await ephemeral_text(someone_else)
        assert (await bot.repo.get_job(1)).status is JobStatus.QUEUED
        cancel = await stub.click(queued, "job:cancel:1", user=student)
        assert "Cancelling job #1" in await ephemeral_text(cancel)
        await handle.wait_for_message(lambda m: "Cancelled" in m.content)
        assert (await bot.repo.get_job(1)).status is JobStatus.CANCELLED


async def test_twenty_users_at_once_are_served_round_robin(harness):
    async with harness.bot() as bot:
        stub = harness.stub
        users = [stub.add_user(f"student{i}") for i in range(20)]
        dispatched: list[list[int]] = []
        run_batch = bot.engine.run_batch

        async def spy(jobs):
            jobs = list(jobs)
            dispatched.append([job.job_id for job in jobs])
            await run_batch(jobs)

        bot.engine.run_batch = spy
        await bot.scheduler.pause()  # everything queues first, so the order is all the queue's
        handles = [await imagine(stub, users[0], prompt=f"eager {n}") for n in range(4)]
        handles += [await imagine(stub, user, prompt=user.name) for user in users[1:]]
        async with asyncio.timeout(30):
            while (await bot.repo.count_by_status())[JobStatus.QUEUED] < 23:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        await bot.scheduler.resume()
        for handle in handles:  # 23 jobs in 6 batches: allow for a loaded machine
            await handle.wait_for_message(has_png, timeout=4 * RESULT_TIMEOUT)

        jobs = {job.id: job for user in users for job in await bot.repo.history(user.id, 10)}
        owners = [jobs[job_id].user_id for batch in dispatched for job_id in batch]
        assert len(owners) == 23 and all(job.status is JobStatus.DONE for job in jobs.values())
        # Every student's first job runs before the eager student's second one, whatever
        # order the concurrent commands reached the queue in; the eager student's jobs run in
        # the order the bot recorded them.
        assert sorted(owners[:20]) == sorted(user.id for user in users)
        assert owners[20:] == [users[0].id] * 3
        eager = [
            job_id
            for batch in dispatched
            for job_id in batch
            if jobs[job_id].user_id == users[0].id
        ]
        assert eager == sorted(eager)
        assert max(len(batch) for batch in dispatched) == 4  # compatible jobs were batched


async def test_history_lists_jobs_with_seeds_and_pages(harness):
    async with harness.bot():
        stub = harness.stub
        student = stub.add_user("ivy")
        for n in range(6):
            handle = await imagine(stub, student, prompt=f"study {n}", seed=100 + n)
            await handle.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
        history = await stub.invoke_slash("history", {}, user=student, channel=CHANNEL)
        page = await history.wait_for_message(lambda m: "Your jobs" in m.content)
        assert page.flags & 64
        assert "page 1 of 2" in page.content and "study 5" in page.content
        assert "seed 105" in page.content and "/channels/" in page.content
        older = await stub.click(page, f"history:{student.id}:1", user=student)
        updated = await older.wait_for_message(lambda m: "page 2 of 2" in m.content)
        assert "study 0" in updated.content


async def test_out_of_range_values_get_a_clear_message_and_change_nothing(harness):
    async with harness.bot() as bot:
        stub = harness.stub
        student = stub.add_user("jo")
        for options, expected in [
            ({"steps": 0}, "steps must be between 1 and 100"),
            ({"guidance": 99.0}, "guidance must be"),
            ({"count": 9}, "count must be between 1 and 4"),
            ({"seed": -1}, "seed must be between 0 and 4294967295"),
            ({"prompt": "   \x07  "}, "The prompt is empty"),
            (
                {"prompt": "a (cat:abc)"},
                "The prompt has a weight that is not a number at character 8 (“a (cat:abc)”)",
            ),
            ({"negative_prompt": "blurry)"}, "The negative prompt has a “)” at character 7"),
            ({"model": "nope"}, "no text-to-image model called “nope”. You can use: tiny-sd"),
        ]:
            handle = await stub.invoke_slash(
                "imagine", {"prompt": "x", **options}, user=student, channel=CHANNEL, validate=False
            )
            assert expected in await ephemeral_text(handle), options
        assert await bot.repo.count_jobs(student.id) == 0


async def test_unexpected_errors_show_an_id_that_is_in_the_log(harness, caplog):
    async with harness.bot() as bot:

        async def broken(*args, **kwargs):
            raise RuntimeError("database on fire")

        bot.repo.count_jobs = broken
        with caplog.at_level(logging.ERROR):
            handle = await harness.stub.invoke_slash("history", {}, channel=CHANNEL)
            text = await ephemeral_text(handle)
        error_id = re.search(r"error id `([0-9a-f]{8})`", text).group(1)
        assert "database on fire" not in text and "Traceback" not in text
        assert any(error_id in record.getMessage() for record in caplog.records)


async def test_long_prompt_is_read_in_windows_and_the_split_is_shown(harness):
    async with harness.bot():
        words = " ".join(f"word{n}" for n in range(120))  # ~700 tokens of the tiny vocabulary
        handle = await imagine(harness.stub, harness.stub.add_user("kim"), prompt=words)
        result = await handle.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
        note = next(line for line in result.content.splitlines() if line.startswith("🧩"))
        windows = int(re.search(r"read in (\d+) windows of up to 75 tokens", note).group(1))
        assert windows > 4  # only the first three are listed, then how many more
        # Each listed window by its first and last words (as CLIP's tokenizer spells them back).
        assert re.search(r": 1\. `word ?0 .* … .*` · 2\. `.*` · 3\. `.*` · … (\d+) more$", note)
        assert note.endswith(f"… {windows - 3} more")


async def test_weighted_prompt_runs_and_its_png_keeps_it_as_typed(harness):
    async with harness.bot():
        typed = r"a (watercolor:1.3) fox, [blurry], \(signed\)"
        handle = await imagine(harness.stub, harness.stub.add_user("lee"), prompt=typed)
        result = await handle.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
        assert png_parameters(result.attachments[0].data).splitlines()[0] == typed
        assert "🧩" not in result.content  # short: one window, nothing to say


async def test_model_autocomplete_offers_enabled_models(harness):
    async with harness.bot():
        choices = await harness.stub.autocomplete(
            "imagine", {"prompt": "x", "model": "tin"}, focused="model"
        )
        assert choices == [{"name": "tiny-sd (default)", "value": "tiny-sd"}]


def button_labels(message) -> dict[str, str]:
    return {c["custom_id"]: c["label"] for row in message.components for c in row["components"]}


async def test_a_chinese_students_buttons_are_labelled_in_chinese(harness):
    """The buttons follow the asker's language, as the lesson captions do; their custom ids,
    which the bot reads back, do not change."""
    async with harness.bot() as bot:
        stub = harness.stub
        await bot.scheduler.pause()
        lin = stub.add_user("lin", locale="zh-CN")
        handle = await imagine(stub, lin, seed=1)
        queued = await handle.wait_for_message(lambda m: "job:cancel:1" in m.custom_ids)
        assert button_labels(queued) == {"job:cancel:1": "取消"}
        await bot.scheduler.resume()
        result = await handle.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
        assert button_labels(result) == {
            "job:reroll:1": "重新生成",
            "job:details:1": "详情",
            "job:delete:1": "删除",
            "job:vary:1": "轻微变化",
            "job:varymore:1": "大幅变化",
            "job:cfg:1": "对比引导系数",
            "job:steps:1": "对比步数",
            "job:sched:1": "对比调度器",
            "job:denoise:1": "逐步去噪",
            "job:up1:1": "放大 ×4",
        }
        # An English-speaking classmate's result, beside it, keeps the English labels.
        english = await imagine(stub, stub.add_user("ada"), seed=1, count=2)
        other = await english.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
        labels = button_labels(other)
        assert labels["job:reroll:2"] == "Reroll" and labels["job:up2:2"] == "Upscale 2"
        # A press on a Chinese button does what the English one does.
        details = await stub.click(result, "job:details:1", user=lin)
        assert "a watercolor fox" in await ephemeral_text(details)

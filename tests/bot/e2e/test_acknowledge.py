"""Acknowledge first, through the stub: the limits are answered from memory, privately, and
they are the same after the bot restarts (the counts are written through to the store)."""

from tests.bot.e2e.harness import make_settings
from tests.bot.e2e.test_imagine import RESULT_TIMEOUT, ephemeral_text, has_png, imagine
from tests.discord_stub import CallbackType


async def test_the_hourly_limit_holds_across_a_restart(harness):
    harness.settings = make_settings(
        harness.tmp_path, harness.stub, harness.tiny, images_per_hour=3
    )
    stub = harness.stub
    student = stub.add_user("kim")
    async with harness.bot():
        first = await imagine(stub, student, count=2)
        await first.wait_for_message(has_png, timeout=RESULT_TIMEOUT)

    async with harness.bot() as bot:  # a new process would see exactly this state
        refused = await imagine(stub, student, count=2)
        assert "made 2 of the 3 images allowed in an hour, and this asks for 2: 1 more image " in (
            await ephemeral_text(refused)
        )
        assert refused.response_type is CallbackType.CHANNEL_MESSAGE  # private, not deferred
        allowed = await imagine(stub, student)
        assert (await allowed.wait_for_response()).response_type is (
            CallbackType.DEFERRED_CHANNEL_MESSAGE
        )
        await allowed.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
        assert await bot.repo.images_in_window(student.id) == 3
        assert await bot.repo.count_jobs(student.id) == 2

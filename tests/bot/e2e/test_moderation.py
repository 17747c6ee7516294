"""Moderation through the Discord stub, with the real engine (an always-flagging first checker
and the real open_nsfw second opinion): the moderators' cards, Release (refused for a
student), Confirm, three strikes leading to a pause, and a pardon."""

from __future__ import annotations

import io
from datetime import timedelta

import discord
import numpy as np
from PIL import Image

from bot.settings import ModerationSettings
from bot.store.models import ReviewState, utcnow
from tests.bot.e2e.harness import ADMIN_ROLE, CHANNEL
from tests.bot.e2e.test_imagine import RESULT_TIMEOUT, has_png, imagine

MODERATORS = "general"  # the stub's second channel stands in for the moderators' one


async def ephemeral_text(handle) -> str:
    """The private answer to an interaction; generous, since a decision edits several
    messages and CI machines are busy."""
    message = await handle.wait_for_message(lambda m: m.flags & 64 and bool(m.content), timeout=30)
    return message.content


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def cards(stub, job_id: int) -> list:
    return [m for m in stub.channel_messages(MODERATORS) if f"job #{job_id}," in m.content]


async def wait_cards(stub, job_id: int, count: int) -> list:
    await stub.wait_for_channel_message(
        MODERATORS, lambda m: f"job #{job_id}, image {count} of" in m.content, timeout=30
    )
    return sorted(cards(stub, job_id), key=lambda m: m.id)


async def click(stub, card, action: str, user) -> str:
    review_id = card.custom_ids[0].rsplit(":", 1)[1]
    handle = await stub.click(card, f"review:{action}:{review_id}", user=user)
    return await ephemeral_text(handle)


def moderated(harness, tmp_path, **settings) -> ModerationSettings:
    """A course with a moderators' channel, whose first checker flags every picture."""
    harness.flag_everything = True
    moderation = ModerationSettings(
        _env_file=None,
        channel_id=harness.stub.channel(MODERATORS).id,
        originals_dir=tmp_path / "originals",
        **settings,
    )
    harness.settings = harness.settings.model_copy(update={"moderation": moderation})
    return moderation


async def test_flagged_images_are_reviewed_released_confirmed_and_struck(harness, tmp_path):
    stub = harness.stub
    moderation = moderated(harness, tmp_path, blocked_words=["gore"])
    async with harness.bot() as bot:
        eve = stub.add_user("eve")
        moderator = stub.add_user("mia", permissions=discord.Permissions(manage_messages=True))
        prof = stub.add_user("prof", roles=[ADMIN_ROLE])

        # Prompt screening: refused up front, privately, nothing queued.
        screened = await imagine(stub, eve, prompt="a GORE scene")
        assert "“GORE”, which this course does not allow" in await ephemeral_text(screened)
        assert await bot.repo.get_job(1) is None

        handle = await imagine(stub, eve, prompt="a red apple", count=4, seed=11)
        result = await handle.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
        assert all(a.filename.startswith("SPOILER_") for a in result.png_attachments)
        job = await bot.repo.get_job(1)
        assert [(i.first_flag, i.second_flag) for i in job.images] == [(True, False)] * 4
        assert all(i.first_score > 0 for i in job.images)  # the first checker's margin
        assert all(0 <= i.second_score < 0.5 for i in job.images)  # open_nsfw: a harmless apple

        first, second, third, fourth = await wait_cards(stub, 1, 4)
        assert "a red apple" in first.content and f"<@{eve.id}>" in first.content
        assert "First checker (CompVis): flagged, margin +" in first.content
        assert "second opinion (open_nsfw): clear, NSFW score 0." in first.content
        blurred, original = first.attachments
        assert not blurred.filename.startswith("SPOILER_")
        assert original.filename == "SPOILER_job1_11.png"
        assert blurred.data == result.png_attachments[0].data
        assert not np.array_equal(pixels(original.data), pixels(blurred.data))
        # The original is nowhere but on the card, and not in the posted images' folder.
        public = [
            a.data for m in stub.channel_messages(CHANNEL, source=None) for a in m.attachments
        ]
        assert original.data not in public
        stored = list((tmp_path / "originals").rglob("*.png"))
        assert len(stored) == 4 and not list(harness.settings.storage.output_dir.rglob("*orig*"))

        # The student cannot delete the job away from the review.
        delete = await stub.click(result, "job:delete:1", user=eve)
        assert "waiting for a moderator's review" in await ephemeral_text(delete)

        queue = await stub.invoke_slash("moderation queue", user=moderator, channel=CHANNEL)
        assert (await ephemeral_text(queue)).count("pending") == 4

        # A student cannot decide; nothing changes.
        refused = await click(stub, first, "release", eve)
        assert refused.startswith("Only moderators can do that")
        assert (await bot.repo.moderation.get_review(1)).state is ReviewState.PENDING

        # Release: the job's message carries the unblurred image, with a note.
        assert (await click(stub, first, "release", moderator)).startswith("Released job #1")
        posted = next(m for m in stub.channel_messages(CHANNEL, source=None) if m.id == result.id)
        assert "A moderator released image 1" in posted.content
        assert posted.attachments[0].filename == "job1_11.png"  # no longer a spoiler
        assert posted.attachments[0].data == original.data
        assert all(a.filename.startswith("SPOILER_") for a in posted.attachments[1:])
        card = next(m for m in stub.channel_messages(MODERATORS) if m.id == first.id)
        assert f"**Released** by <@{moderator.id}>" in card.content
        assert all(button.get("disabled") for button in card.buttons)
        assert len(list((tmp_path / "originals").rglob("*.png"))) == 3

        # Confirm: stays blurred; the original goes after the configured time.
        assert (await click(stub, second, "confirm", moderator)).startswith("Confirmed job #1")
        assert (await bot.retention.sweep()).originals == 0
        later = utcnow() + timedelta(hours=moderation.delete_original_after_hours + 1)
        assert (await bot.retention.sweep(later)).originals == 1
        assert (await bot.repo.moderation.get_review(2)).original_path is None

        # Three strikes pause eve; a pardon lifts it.
        assert "1 strike." in await click(stub, third, "strike", moderator)
        assert "2 strikes." in await click(stub, fourth, "strike", moderator)
        again = await imagine(stub, eve, prompt="a green pear")
        await again.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
        (fifth,) = await wait_cards(stub, 2, 1)
        assert "3 strikes; paused until" in await click(stub, fifth, "strike", moderator)

        paused = await imagine(stub, eve, prompt="a blue plum")
        refusal = await ephemeral_text(paused)
        assert refusal.startswith("You are paused from making images until <t:")
        assert "after 3 strikes" in refusal and await bot.repo.get_job(3) is None
        record = await stub.invoke_slash(
            "moderation user", {"user": eve}, user=moderator, channel=CHANNEL
        )
        assert "3 strikes" in await ephemeral_text(record)

        denied = await stub.invoke_slash(
            "moderation pardon", {"user": eve}, user=moderator, channel=CHANNEL
        )
        assert (await ephemeral_text(denied)).startswith("Only admins can do that")
        pardon = await stub.invoke_slash(
            "moderation pardon", {"user": eve}, user=prof, channel=CHANNEL
        )
        assert "lifted 3 strikes" in await ephemeral_text(pardon)
        allowed = await imagine(stub, eve, prompt="a blue plum")
        await allowed.wait_for_message(has_png, timeout=RESULT_TIMEOUT)

        actions = [(e.action, e.ok) for e in await bot.repo.latest_audit(20)]
        assert ("moderation.released", False) in actions  # the student's refused click
        for done in ("released", "confirmed", "struck", "pardon"):
            assert (f"moderation.{done}", True) in actions

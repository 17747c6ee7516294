"""A flagged inpainting through the Discord stub: its blurred mask outline gets a card of its
own (it shows the part of the picture the result repainted), a release of the image keeps the
outline beside it, blurred, and a release of the outline unblurs it in the job's message."""

from __future__ import annotations

import discord
import numpy as np

from tests.bot.e2e.harness import CHANNEL
from tests.bot.e2e.test_imagine import RESULT_TIMEOUT, has_png
from tests.bot.e2e.test_inpaint import attached, inpaint
from tests.bot.e2e.test_moderation import MODERATORS, click, moderated, pixels
from tests.bot.pictures import box_mask, encode, scene


def job_message(stub, message_id: int):
    return next(m for m in stub.channel_messages(CHANNEL, source=None) if m.id == message_id)


async def test_a_blurred_outline_has_its_own_card_and_is_released_in_its_message(harness, tmp_path):
    stub = harness.stub
    moderated(harness, tmp_path)
    files = {
        "image": attached("photo.png", encode(scene())),
        "mask": attached("m.png", encode(box_mask((96, 64), (48, 0, 95, 31)))),
    }
    async with harness.bot():
        student = stub.add_user("ada")
        moderator = stub.add_user("mia", permissions=discord.Permissions(manage_messages=True))
        handle = await inpaint(stub, student, files=files, seed=7)
        result = await handle.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
        assert [a.filename for a in result.png_attachments] == [
            "SPOILER_job1_7.png",
            "SPOILER_mask_outline.png",
        ]
        assert "it is blurred and hidden" in result.content
        outline_card = await stub.wait_for_channel_message(
            MODERATORS, lambda m: "**Blurred mask outline** · job #1" in m.content, timeout=30
        )
        image_card = await stub.wait_for_channel_message(
            MODERATORS, lambda m: "job #1, image 1 of 1" in m.content, timeout=30
        )
        assert "Blurred with the job's flagged images" in outline_card.content
        (original,) = outline_card.attachments
        assert original.filename == "SPOILER_mask_outline.png"
        blurred = result.png_attachments[1].data
        assert not np.array_equal(pixels(original.data), pixels(blurred))
        public = [
            a.data for m in stub.channel_messages(CHANNEL, source=None) for a in m.attachments
        ]
        assert original.data not in public

        # Releasing the image keeps the outline beside it, still blurred.
        assert (await click(stub, image_card, "release", moderator)).startswith("Released job #1")
        message = job_message(stub, result.id)
        names = [a.filename for a in message.png_attachments]
        assert names == ["job1_7.png", "SPOILER_mask_outline.png"]
        assert message.png_attachments[1].data == blurred

        answer = await click(stub, outline_card, "release", moderator)
        assert answer.startswith("Released job #1, the mask outline")
        message = job_message(stub, result.id)
        assert [a.filename for a in message.png_attachments] == ["job1_7.png", "mask_outline.png"]
        assert message.png_attachments[1].data == original.data
        assert "A moderator released the mask outline" in message.content
        assert "it is blurred and hidden" not in message.content
        assert not list((tmp_path / "originals").rglob("*.png"))

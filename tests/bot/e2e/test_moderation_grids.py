"""A flagged /compare grid through the Discord stub, across a bot restart: a card per flagged
panel naming it by its axis value, a card the stopped bot never posted posted at the next
start, and a Release pressed after the restart drawing the grid again with that panel
unblurred (Confirm keeps the other blurred, and retention deletes its original)."""

from __future__ import annotations

from datetime import timedelta

import discord
import numpy as np

from bot.jobs.grid import panel_box
from bot.store.models import utcnow
from tests.bot.e2e.harness import CHANNEL
from tests.bot.e2e.test_compare import SIDE, compare, is_xy_grid
from tests.bot.e2e.test_course import GRID_TIMEOUT
from tests.bot.e2e.test_moderation import (
    MODERATORS,
    cards,
    click,
    ephemeral_text,
    moderated,
    pixels,
)

FLAGGED_TWO = "The safety checker flagged 2 panel(s)"
FLAGGED_ONE = "The safety checker flagged 1 panel(s)"


def panel(grid: bytes, index: int) -> np.ndarray:
    left, top, right, bottom = panel_box(index, 2, (SIDE, SIDE))
    return pixels(grid)[top:bottom, left:right]


async def test_flagged_panels_are_reviewed_and_released_into_the_grid_after_a_restart(
    harness, tmp_path
):
    stub = harness.stub
    moderators = stub.channel(MODERATORS)
    moderation = moderated(harness, tmp_path)
    student = stub.add_user("ada")
    moderator = stub.add_user("mia", permissions=discord.Permissions(manage_messages=True))

    async with harness.bot():
        # The first card is lost (Discord refuses it), as if the bot stopped before posting it.
        stub.fail_next("POST", f"/channels/{moderators.id}/messages", status=403)
        handle = await compare(stub, student, x="guidance", x_values="3, 7.5", seed=42, steps=1)
        posted = await handle.wait_for_message(is_xy_grid, timeout=GRID_TIMEOUT)
        (grid,) = posted.png_attachments
        assert grid.filename.startswith("SPOILER_") and FLAGGED_TWO in posted.content
        second = await stub.wait_for_channel_message(
            MODERATORS, lambda m: "job #1, panel 2 of 2 (“CFG: 7.5”)" in m.content, timeout=30
        )
    assert "of its X/Y grid" in second.content and len(cards(stub, 1)) == 1
    blurred, original = second.attachments
    np.testing.assert_array_equal(panel(grid.data, 1), pixels(blurred.data))
    assert not np.array_equal(pixels(original.data), pixels(blurred.data))

    async with harness.bot() as bot:
        # The card the last run could not post comes at the start.
        first = await stub.wait_for_channel_message(
            MODERATORS, lambda m: "job #1, panel 1 of 2 (“CFG: 3”)" in m.content, timeout=30
        )
        kept = first.attachments[1].data
        # The moderators' list names the panels as the cards do.
        queue = await stub.invoke_slash("moderation queue", user=moderator, channel=CHANNEL)
        listing = await ephemeral_text(queue)
        assert "job #1, panel 1 (“CFG: 3”)" in listing and "panel 2 (“CFG: 7.5”)" in listing
        public = [
            a.data for m in stub.channel_messages(CHANNEL, source=None) for a in m.attachments
        ]
        assert kept not in public and original.data not in public

        released = await click(stub, first, "release", moderator)
        assert released.startswith("Released job #1, panel 1 (“CFG: 3”)")
        message = next(m for m in stub.channel_messages(CHANNEL, source=None) if m.id == posted.id)
        (redrawn,) = message.png_attachments
        assert "A moderator released the “CFG: 3” panel" in message.content
        assert FLAGGED_ONE in message.content and FLAGGED_TWO not in message.content
        assert redrawn.filename.startswith("SPOILER_")  # the other panel is still blurred
        np.testing.assert_array_equal(panel(redrawn.data, 0), pixels(kept))
        np.testing.assert_array_equal(panel(redrawn.data, 1), pixels(blurred.data))
        assert redrawn.image_size == grid.image_size

        assert (await click(stub, second, "confirm", moderator)).startswith("Confirmed job #1")
        later = utcnow() + timedelta(hours=moderation.delete_original_after_hours + 1)
        assert (await bot.retention.sweep(later)).originals == 1
        assert not list((tmp_path / "originals").rglob("*.png"))

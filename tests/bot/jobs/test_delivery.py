"""A job's message through its life, with the interaction replaced by a recorder."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any
from unittest.mock import AsyncMock, MagicMock

import discord

from bot.jobs.delivery import PLACE_EDIT_INTERVALS, Delivery
from engine.protocol import Accepted, Progress

INTERVAL = 0.05


class Edits:
    """Stands in for ``Interaction.edit_original_response``: records when and what."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, str, Any]] = []
        self.attachments: list[list[Any]] = []
        self.arrived = asyncio.Event()

    async def __call__(self, *, content: str, attachments: list[Any], view: Any) -> MagicMock:
        self.seen.append((time.monotonic(), content, view))
        self.attachments.append(attachments)
        for file in attachments:
            file.close()  # as discord.py does once the request is made
        self.arrived.set()
        return MagicMock(spec_set=discord.InteractionMessage, id=1)

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(5):
            while len(self.seen) < count:
                self.arrived.clear()
                await self.arrived.wait()


def delivery_for_tests(min_edit_interval: float) -> Delivery:
    client = MagicMock(spec_set=discord.Client)
    client.get_channel.return_value = None  # a DM, say: Discord's default upload limit
    return Delivery(client, AsyncMock(), min_edit_interval=min_edit_interval)


def tracked(delivery: Delivery, job_id: int = 7) -> Edits:
    edits = Edits()
    interaction = MagicMock(spec_set=discord.Interaction)
    interaction.edit_original_response = AsyncMock(side_effect=edits.__call__)
    job = SimpleNamespace(
        id=job_id, user_id=1, channel_id=2, prompt="a fox", steps=4, kind="text_to_image"
    )
    delivery.track(job, interaction)  # type: ignore[arg-type]  # only these fields are read
    return edits


async def test_one_view_serves_every_screen_of_a_running_job():
    delivery = delivery_for_tests(0)
    edits = tracked(delivery)
    await delivery.queued(7, 3)
    await edits.wait_for(1)
    await delivery.started(7, Accepted(7))
    await edits.wait_for(2)
    await delivery.progress(7, Progress(7, 2, 4))
    await edits.wait_for(3)
    views = {id(view) for _, _, view in edits.seen}
    assert len(views) == 1 and edits.seen[0][2] is not None
    await delivery.close()


async def test_places_are_edited_less_often_than_progress():
    delivery = delivery_for_tests(INTERVAL)
    edits = tracked(delivery)
    await delivery.queued(7, 50)
    await edits.wait_for(1)
    await delivery.queued(7, 20)
    await edits.wait_for(2)
    # A new place waits several intervals after the last one...
    assert edits.seen[1][0] - edits.seen[0][0] >= PLACE_EDIT_INTERVALS * INTERVAL * 0.9
    assert "position 20" in edits.seen[1][1]
    # ...but the start does not.
    await delivery.started(7, Accepted(7))
    await edits.wait_for(3)
    assert edits.seen[2][0] - edits.seen[1][0] < 3 * INTERVAL
    assert "Painting" in edits.seen[2][1]
    await delivery.close()


async def test_an_upload_frees_its_bytes_once_sent():
    """discord.File leaves a reference cycle on its buffer (bot.ui.attachments): unless the
    buffer is closed, its bytes wait for the cyclic garbage collector, and in a burst hundreds
    of images did."""
    delivery = delivery_for_tests(0)
    edits = tracked(delivery)
    await delivery.progress(7, Progress(7, 2, 4, preview_png=b"\x89PNG preview"))
    await edits.wait_for(1)
    await asyncio.sleep(0)  # the pump leaves the upload slot after the edit returns
    [preview] = edits.attachments[0]
    assert preview.filename == "preview.png"
    assert preview.fp.closed
    await delivery.close()

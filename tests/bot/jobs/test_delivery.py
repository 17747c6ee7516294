"""A job's message through its life, with the interaction replaced by a recorder."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any
from unittest.mock import AsyncMock, MagicMock

import discord

from bot.jobs.delivery import PLACE_EDIT_INTERVALS, Delivery
from bot.jobs.image_store import ImageStore
from bot.store.models import Job
from engine.protocol import Accepted, GeneratedImage, Progress, Result

INTERVAL = 0.05


class Edits:
    """Stands in for ``Interaction.edit_original_response``: records when and what."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, str, Any]] = []
        self.attachments: list[list[Any]] = []
        self.contents: list[list[bytes]] = []  # each edit's files' bytes, as sent
        self.arrived = asyncio.Event()

    async def __call__(self, *, content: str, attachments: list[Any], view: Any) -> MagicMock:
        self.seen.append((time.monotonic(), content, view))
        self.attachments.append(attachments)
        self.contents.append([file.fp.read() for file in attachments])  # at their start
        for file in attachments:
            file.close()  # as discord.py does once the request is made
        self.arrived.set()
        return MagicMock(spec_set=discord.InteractionMessage, id=1)

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(5):
            while len(self.seen) < count:
                self.arrived.clear()
                await self.arrived.wait()


def delivery_for_tests(min_edit_interval: float, images: ImageStore | None = None) -> Delivery:
    client = MagicMock(spec_set=discord.Client)
    client.get_channel.return_value = None  # a DM, say: Discord's default upload limit
    repo = AsyncMock()
    repo.get_model.return_value = None  # a model since removed: Stable Diffusion's buttons
    return Delivery(client, repo, min_edit_interval=min_edit_interval, images=images)


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


def finished_job(job_id: int = 7) -> Job:
    return Job(
        id=job_id,
        user_id=1,
        channel_id=2,
        kind="text_to_image",
        model_name="tiny-sd",
        prompt="a fox",
        negative_prompt="",
        seeds=[1],
        steps=4,
        guidance=7.5,
        width=64,
        height=64,
        scheduler="euler",
        strength=1.0,
        comparison=None,
    )


def result_of(png: bytes, job_id: int = 7) -> Result:
    return Result(job_id, (GeneratedImage(1, png, nsfw=False),), None, 1.0)


async def test_a_stored_result_is_read_from_the_store_in_its_upload_slot(tmp_path):
    """A burst's results can wait minutes for one of the upload slots; each holding its
    pictures meanwhile took the bot's memory from 139 to over 300 MiB in a 1000-job burst. Given
    where the images were stored, a result is sent from there, streamed from the file."""
    store = ImageStore(tmp_path)
    stored = await store.save(7, 0, b"\x89PNG as stored")
    delivery = delivery_for_tests(0, images=store)
    edits = tracked(delivery)
    await delivery.finished(finished_job(), result_of(b"\x89PNG as the engine sent it"), [stored])
    await edits.wait_for(1)
    assert edits.contents[-1] == [b"\x89PNG as stored"]
    [upload] = edits.attachments[-1]
    assert upload.filename == "job7_1.png"
    await asyncio.sleep(0)  # the pump leaves the upload slot after the edit returns
    assert upload.fp.closed  # streamed from the file, which is closed once sent
    await delivery.close()


async def test_a_result_whose_stored_images_vanished_says_so(tmp_path):
    # Read in the slot, an image can be gone by then (a disk emptied by hand): the student
    # reads why, as after a restart, instead of the result never arriving.
    store = ImageStore(tmp_path)
    stored = await store.save(7, 0, b"\x89PNG as stored")
    await store.delete(stored)
    delivery = delivery_for_tests(0, images=store)
    edits = tracked(delivery)
    await delivery.finished(finished_job(), result_of(b"\x89PNG in memory"), [stored])
    await edits.wait_for(1)
    _, content, view = edits.seen[-1]
    assert "Job #7 finished, but its images are no longer on the bot's disk" in content
    assert edits.contents[-1] == [] and view is None
    await delivery.close()


async def test_without_a_store_the_result_is_uploaded_from_memory():
    delivery = delivery_for_tests(0)
    edits = tracked(delivery)
    await delivery.finished(finished_job(), result_of(b"\x89PNG in memory"), ["not/read.png"])
    await edits.wait_for(1)
    assert edits.contents[-1] == [b"\x89PNG in memory"]
    await delivery.close()

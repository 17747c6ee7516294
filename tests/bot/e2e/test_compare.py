"""/compare through the Discord stub, with the real engine on tiny models: one labelled grid."""

from __future__ import annotations

import io
import json

import numpy as np
from PIL import Image

from bot.jobs.grid import GAP, PANELS_KEY, ROWS_KEY, label_height, panel_box, row_band_width
from bot.store.models import JobStatus
from tests.bot.e2e.harness import CHANNEL, eventually
from tests.bot.e2e.test_course import GRID_TIMEOUT, rgb
from tests.bot.e2e.test_imagine import RESULT_TIMEOUT, ephemeral_text, has_png

SIDE = 512


def is_xy_grid(message) -> bool:
    return any(a.filename.endswith("_xy.png") for a in message.png_attachments)


async def compare(stub, user, **options):
    return await stub.invoke_slash(
        "compare",
        {"prompt": "a watercolor fox", **options},
        user=user,
        channel=CHANNEL,
        validate=False,
    )


REFUSALS = [
    ({"x": "guidance", "x_values": "5, abc"}, "x_values: “abc” is not a number"),
    (
        {"x": "steps", "x_values": "1,2,3", "y": "seed", "y_values": "1,2,3,4,5,6"},
        "3 × 6 = 18 panels; the most is 16",
    ),
    (
        {"x": "model", "x_values": "nope, other"},
        "There is no text-to-image model called “nope”",
    ),
    ({"x": "strength", "x_values": "0.3, 0.6"}, "attach one as `image`"),
    ({"x": "seed", "x_values": "1, 2", "seed": 5}, "seed is an axis of the grid"),
]


async def test_a_two_axis_grid_is_labelled_and_its_default_panel_is_the_plain_picture(harness):
    async with harness.bot() as bot:
        stub = harness.stub
        student = stub.add_user("ada")
        # Bad axes: a clear private refusal naming the value, and nothing queued.
        for options, expected in REFUSALS:
            refused = await compare(stub, student, **options)
            assert expected in await ephemeral_text(refused), options
        assert await bot.repo.count_jobs(student.id) == 0

        handle = await compare(
            stub,
            student,
            x="guidance",
            x_values="3, 7.5",
            y="scheduler",
            y_values="Euler, ddim",
            seed=42,
            steps=1,
        )
        posted = await handle.wait_for_message(is_xy_grid, timeout=GRID_TIMEOUT)
        (grid,) = posted.png_attachments
        band = label_height(SIDE)
        assert grid.image_size == (
            row_band_width(SIDE) + GAP + 2 * (SIDE + GAP),
            GAP + 2 * (band + SIDE + GAP),
        )
        with Image.open(io.BytesIO(grid.data)) as picture:
            texts = picture.text  # type: ignore[attr-defined]
        assert json.loads(texts[PANELS_KEY]) == ["CFG: 3", "CFG: 7.5"]
        assert json.loads(texts[ROWS_KEY]) == ["Sampler: Euler", "Sampler: DDIM"]
        assert "Across: CFG · Down: Sampler" in posted.content
        assert (
            "seed 42" in posted.content and "The “CFG: 7.5, Sampler: Euler” panel" in posted.content
        )
        assert {"job:reroll:1", "job:details:1", "job:delete:1"} <= set(posted.custom_ids)
        job = await bot.repo.get_job(1)
        assert job.comparison == "xy" and job.seeds == [42] and len(job.images) == 4

        # The panel with /imagine's own settings is /imagine's picture, pixel for pixel.
        plain = await stub.invoke_slash(
            "imagine",
            {"prompt": "a watercolor fox", "seed": 42, "steps": 1},
            user=student,
            channel=CHANNEL,
        )
        alone = await plain.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
        left, top, right, bottom = panel_box(1, 2, (SIDE, SIDE), row_labels=True)
        np.testing.assert_array_equal(
            rgb(grid.data)[top:bottom, left:right], rgb(alone.png_attachments[0].data)
        )

        details = await stub.click(posted, "job:details:1", user=student)
        assert "**X/Y grid:** guidance 3, 7.5 × scheduler Euler, DDIM" in await ephemeral_text(
            details
        )
        # Reroll: the same axes from a new seed (cancelled once queued: its pixels are the
        # engine's business, tested there), and the grid's Cancel button stops it.
        again = await stub.click(posted, "job:reroll:1", user=student)
        queued = await again.wait_for_message(
            lambda m: "job:cancel:3" in m.custom_ids, timeout=RESULT_TIMEOUT
        )
        child = await bot.repo.get_job(3)
        assert child.comparison == "xy" and child.comparison_values == job.comparison_values
        assert child.parent_job_id == 1 and child.seeds != [42]
        await stub.click(queued, "job:cancel:3", user=student)
        await eventually(lambda: _status(bot, 3, JobStatus.CANCELLED))


async def _status(bot, job_id: int, status: JobStatus) -> bool:
    return (await bot.repo.get_job(job_id)).status is status

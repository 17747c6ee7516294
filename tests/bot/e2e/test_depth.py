"""/depth through the Discord stub, with the real engine on a tiny depth model."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bot.store.models import JobKind, JobStatus
from tests.bot.e2e.harness import CHANNEL, Harness, make_settings, png_parameters
from tests.bot.e2e.test_admin import ADMIN_ROLE, models, private
from tests.bot.e2e.test_imagine import RESULT_TIMEOUT, ephemeral_text, has_png
from tests.bot.e2e.test_inpaint import attached, pixels_of, stored_files
from tests.bot.pictures import encode, scene
from tests.discord_stub import CallbackType


@pytest.fixture
def depth_harness(harness: Harness, tiny_depth: Path) -> Harness:
    """The course server, with the tiny depth model as its default depth model."""
    harness.settings = make_settings(harness.tmp_path, harness.stub, harness.tiny, tiny_depth)
    return harness


async def depth(stub, user, files, *, validate=True, **options):
    return await stub.invoke_slash(
        "depth",
        {"prompt": "a marble statue", **options},
        user=user,
        channel=CHANNEL,
        attachments=files,
        validate=validate,
    )


BAD_REQUESTS = [
    # (attachments, options, what the refusal says)
    ({}, {}, "A required option is missing (for /depth and /inpaint: the `image`)"),
    (
        {"image": attached("a.gif", encode(scene(), "GIF"), "image/gif")},
        {},
        "The image must be a PNG, JPEG or WebP picture",
    ),
    ({"image": attached("a.png", encode(scene()))}, {"strength": 0.01}, "between 0.05 and 1"),
    ({"image": attached("a.png", encode(scene()))}, {"strength": 1.5}, "between 0.05 and 1"),
    (
        {"image": attached("a.png", encode(scene()))},
        {"steps": 1, "strength": 0.5},
        "no denoising step is left",
    ),
    (
        {"image": attached("a.png", encode(scene()))},
        {"model": "tiny-sd"},
        "no depth-to-image model called “tiny-sd”",
    ),
]


async def test_depth_refuses_bad_input_then_posts_the_image_with_its_depth_map(
    depth_harness: Harness,
) -> None:
    harness = depth_harness
    files = {"image": attached("room.png", encode(scene()))}
    async with harness.bot() as bot:
        stub = harness.stub
        student = stub.add_user("ada")
        for bad_files, options, expected in BAD_REQUESTS:
            # As a client that skips Discord's own checks would send them.
            refused = await depth(stub, student, bad_files, validate=False, **options)
            # Privately; or, when reading the picture outlasts the head start before the bot
            # defers (a busy machine), in place of the "thinking…" (JobService.submit).
            await refused.wait_for_message(lambda m, e=expected: e in m.content, timeout=30)
        assert await bot.repo.count_jobs(student.id) == 0
        assert stored_files(harness.settings.storage.input_dir) == []

        handle = await depth(stub, student, files, seed=7, steps=4, strength=0.5)
        response = await handle.wait_for_response()
        assert response.response_type is CallbackType.DEFERRED_CHANNEL_MESSAGE
        result = await handle.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
        progress = [
            e.message.content for e in handle.edits if e.message and "Painting" in e.message.content
        ]
        assert progress and all("/2 ·" in line for line in progress)  # int(4 × 0.5) steps

        job = await bot.repo.get_job(1)
        assert job.status is JobStatus.DONE and job.kind is JobKind.DEPTH_TO_IMAGE
        assert job.model_name == "tiny-sd-depth" and job.strength == 0.5
        assert (job.width, job.height) == (768, 512)  # 96×64 fitted, as /inpaint fits it
        made, depth_map = result.png_attachments
        assert made.filename == "job1_7.png" and made.image_size == (768, 512)
        params = png_parameters(made.data)
        assert "Seed: 7, Size: 768x512" in params and "Denoising strength: 0.5" in params
        # The depth map beside it: one grey channel at the picture's size, from near to far.
        assert depth_map.filename == "depth_map.png" and depth_map.image_size == (768, 512)
        with Image.open(io.BytesIO(depth_map.data)) as picture:
            assert picture.mode == "L"
            grey = np.asarray(picture)
        assert grey.min() == 0 and grey.max() == 255 and grey.std() > 10
        assert "`depth_map.png`: the depth the model estimated" in result.content
        # No Vary (it would lose the depth) and no lessons; Upscale, as under any result.
        assert set(result.custom_ids) == {
            "job:reroll:1",
            "job:details:1",
            "job:delete:1",
            "job:up1:1",
        }

        details = await stub.click(result, "job:details:1", user=student)
        assert "**Strength:** 0.5" in await ephemeral_text(details)
        history = await stub.invoke_slash("history", user=student, channel=CHANNEL)
        assert "· depth" in await ephemeral_text(history)
        # The recipe, with the picture the engine started from (the owner's, so privately).
        asked = await stub.invoke_slash("recipe", {"job": 1}, user=student, channel=CHANNEL)
        recipe = await asked.wait_for_message(lambda m: bool(m.attachments))
        script, start = recipe.attachments
        assert (script.filename, start.filename) == ("recipe_job1.py", "job1_image.png")
        assert b"StableDiffusionDepth2ImgPipeline.from_pretrained(" in script.data

        # /reroll with the job's own seed: the same picture and depth, the same pixels.
        again = await stub.invoke_slash("reroll", {"seed": 7}, user=student, channel=CHANNEL)
        rerolled = await again.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
        child = await bot.repo.get_job(2)
        assert child.kind is JobKind.DEPTH_TO_IMAGE and child.image_ref == job.image_ref
        made_again, depth_again = rerolled.png_attachments
        np.testing.assert_array_equal(pixels_of(made_again.data), pixels_of(made.data))
        assert depth_again.data == depth_map.data

        # Admins offer depth models as their own kind; a folder of another kind is refused.
        prof = stub.add_user("prof", roles=[ADMIN_ROLE])
        folder = str(harness.settings.models.default_depth)
        refused = await models(stub, "add", prof, name="d2", source=folder, kind="text_to_image")
        await private(refused, "Add it with kind depth-to-image")
        added = await models(stub, "add", prof, name="d2", source=folder, kind="depth_to_image")
        await private(added, "Added **d2**")
        depth_models = await bot.repo.list_models(kind=JobKind.DEPTH_TO_IMAGE)
        assert sorted(m.name for m in depth_models) == ["d2", "tiny-sd-depth"]

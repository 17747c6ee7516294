"""/imagine with a picture, and the Vary buttons, through the Discord stub with the real engine."""

from __future__ import annotations

import numpy as np
from PIL import Image

from bot.jobs.inputs import prepare_start_picture
from bot.store.models import JobKind, JobStatus
from tests.bot.e2e.harness import CHANNEL, png_parameters
from tests.bot.e2e.test_imagine import RESULT_TIMEOUT, ephemeral_text, has_png, imagine
from tests.bot.e2e.test_inpaint import attached, pixels_of, stored_files
from tests.bot.pictures import box_mask, encode, scene


def stored_pixels(harness, ref: str) -> np.ndarray:
    with Image.open(harness.settings.storage.input_dir / ref) as picture:
        return np.asarray(picture.convert("RGB"))


async def test_a_picture_is_the_starting_point_and_rerolls_keep_it(harness):
    jpeg = encode(scene(), "JPEG", quality=95)
    files = {"image": attached("photo.jpg", jpeg, "image/jpeg")}
    async with harness.bot() as bot:
        stub = harness.stub
        student = stub.add_user("ada")
        options = {"seed": 9, "steps": 4, "strength": 0.5}
        handle = await stub.invoke_slash(
            "imagine",
            {"prompt": "a watercolor fox", **options},
            user=student,
            channel=CHANNEL,
            attachments=files,
        )
        first = await handle.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
        progress = [
            e.message.content for e in handle.edits if e.message and "Painting" in e.message.content
        ]
        assert progress and all("/2 ·" in line for line in progress)  # int(4 × 0.5) steps

        job = await bot.repo.get_job(1)
        assert job.status is JobStatus.DONE and job.kind is JobKind.IMAGE_TO_IMAGE
        assert job.model_name == (await bot.repo.default_model(JobKind.TEXT_TO_IMAGE)).name
        assert (job.width, job.height, job.strength) == (768, 512, 0.5)  # 96×64 fitted
        # Stored exactly as fitted, and nothing else: no mask, no outline.
        fitted = prepare_start_picture(jpeg).image
        assert np.array_equal(stored_pixels(harness, job.image_ref), np.asarray(fitted))
        assert job.mask_ref is None
        (made,) = first.png_attachments
        assert made.filename == "job1_9.png" and made.image_size == (768, 512)
        params = png_parameters(made.data)
        assert "Seed: 9, Size: 768x512" in params and "Denoising strength: 0.5" in params
        assert "strength 0.5" in first.content
        assert {"job:vary:1", "job:varymore:1", "job:reroll:1"} <= set(first.custom_ids)

        # The same seed and picture give the same pixels again; a reroll reads the same file.
        again = await stub.invoke_slash("reroll", {"seed": 9}, user=student, channel=CHANNEL)
        rerolled = await again.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
        child = await bot.repo.get_job(2)
        assert child.kind is JobKind.IMAGE_TO_IMAGE and child.image_ref == job.image_ref
        assert child.strength == 0.5
        np.testing.assert_array_equal(
            pixels_of(rerolled.png_attachments[0].data), pixels_of(made.data)
        )


async def test_vary_makes_a_new_image_from_a_result(harness):
    async with harness.bot() as bot:
        stub = harness.stub
        owner, classmate = stub.add_user("bo"), stub.add_user("cy")
        handle = await imagine(stub, owner, seed=5, steps=3, negative_prompt="blurry")
        result = await handle.wait_for_message(has_png, timeout=RESULT_TIMEOUT)

        click = await stub.click(result, "job:varymore:1", user=classmate)
        varied = await click.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
        parent, child = await bot.repo.get_job(1), await bot.repo.get_job(2)
        assert child.kind is JobKind.IMAGE_TO_IMAGE and child.parent_job_id == 1
        assert child.user_id == classmate.id and child.strength == 0.7
        assert (child.prompt, child.negative_prompt, child.steps) == (
            parent.prompt,
            parent.negative_prompt,
            parent.steps,
        )
        assert len(child.seeds) == 1
        # Its starting point is the posted picture itself, copied into the input store.
        np.testing.assert_array_equal(
            stored_pixels(harness, child.image_ref), pixels_of(result.png_attachments[0].data)
        )
        (made,) = varied.png_attachments
        assert made.image_size == (512, 512)
        assert "Denoising strength: 0.7" in png_parameters(made.data)
        assert not np.array_equal(pixels_of(made.data), pixels_of(result.png_attachments[0].data))

        details = await stub.click(varied, "job:details:2", user=classmate)
        text = await ephemeral_text(details)
        assert "**Strength:** 0.7" in text and "**Made from:** #1" in text

        # Subtle, from an inpainting result: its checkpoint cannot start from a whole picture,
        # so the default text-to-image model does.
        files = {
            "image": attached("scene.png", encode(scene())),
            "mask": attached("m.png", encode(box_mask((96, 64), (0, 0, 47, 63)))),
        }
        inpainted = await stub.invoke_slash(
            "inpaint",
            {"prompt": "a kite", "steps": 1},
            user=owner,
            channel=CHANNEL,
            attachments=files,
        )
        painted = await inpainted.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
        subtle = await stub.click(painted, "job:vary:3", user=owner)
        await subtle.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
        from_inpaint = await bot.repo.get_job(4)
        default = await bot.repo.default_model(JobKind.TEXT_TO_IMAGE)
        assert from_inpaint.kind is JobKind.IMAGE_TO_IMAGE and from_inpaint.strength == 0.35
        assert from_inpaint.model_name == default.name and from_inpaint.mask_ref is None
        assert (from_inpaint.width, from_inpaint.height) == (768, 512)


async def test_bad_pictures_and_strengths_are_refused_and_nothing_is_queued(harness):
    picture = attached("scene.png", encode(scene()))
    cases = [
        ({"strength": 0.5}, {}, "strength says how far to go from a picture"),
        (
            {"strength": 0.01},
            {"image": picture},
            "strength must be a number between 0.05 and 1 (you gave 0.01)",
        ),
        ({"strength": 0.5, "steps": 1}, {"image": picture}, "no denoising step is left"),
        (
            {},
            {"image": attached("notes.txt", b"just some words", "text/plain")},
            "The image must be a PNG, JPEG or WebP picture; this file is not one.",
        ),
    ]
    async with harness.bot() as bot:
        stub = harness.stub
        student = stub.add_user("dee")
        for options, files, expected in cases:
            handle = await stub.invoke_slash(
                "imagine",
                {"prompt": "a fox", **options},
                user=student,
                channel=CHANNEL,
                attachments=files or None,
                validate=False,
            )
            assert expected in await ephemeral_text(handle), options
        assert await bot.repo.count_jobs(student.id) == 0
        assert stored_files(harness.settings.storage.input_dir) == []

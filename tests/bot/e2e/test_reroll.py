"""/reroll (and the Reroll button) through the Discord stub, with the real engine."""

from __future__ import annotations

import io
import re

import numpy as np
from PIL import Image

from bot.store.models import JobKind
from tests.bot.e2e.harness import CHANNEL, make_settings, png_parameters
from tests.bot.e2e.test_imagine import RESULT_TIMEOUT, ephemeral_text, has_png, imagine
from tests.bot.pictures import box_mask, encode, scene

THREAD = "imagine-results"  # a thread inside the allowed channel


def pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def seed_of(result) -> int:
    return int(re.search(r"Seed: (\d+)", png_parameters(result.png_attachments[0].data))[1])


async def reroll(stub, user, channel=CHANNEL, **options):
    if isinstance(options.get("job"), int):  # the option is text: the id, as the list gives it
        options["job"] = str(options["job"])
    return await stub.invoke_slash("reroll", options, user=user, channel=channel)


async def test_reroll_makes_a_new_seed_or_exactly_the_image_a_seed_gives(harness):
    # Rerolls count against the caller's limits like any job.
    harness.settings = make_settings(
        harness.tmp_path, harness.stub, harness.tiny, images_per_hour=3
    )
    async with harness.bot() as bot:
        stub = harness.stub
        student = stub.add_user("ada")
        first = await (await imagine(stub, student, seed=42)).wait_for_message(
            has_png, timeout=RESULT_TIMEOUT
        )

        fresh = await reroll(stub, student)  # the latest job, a new random seed
        rerolled = await fresh.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
        child = await bot.repo.get_job(2)
        assert child.parent_job_id == 1 and child.seeds != [42]
        assert seed_of(rerolled) == child.seeds[0]
        new_pixels = pixels(rerolled.png_attachments[0].data)
        assert not np.array_equal(new_pixels, pixels(first.png_attachments[0].data))

        same = await reroll(stub, student, job=1, seed=42)
        again = await same.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
        assert (await bot.repo.get_job(3)).parent_job_id == 1
        assert seed_of(again) == 42
        # The same pixels (the PNGs differ only in their job's metadata, if at all).
        np.testing.assert_array_equal(
            pixels(again.png_attachments[0].data), pixels(first.png_attachments[0].data)
        )

        refused = await reroll(stub, student, job=1)
        assert "3 images in the last hour" in await ephemeral_text(refused)
        assert await bot.repo.count_jobs(student.id) == 3


async def test_which_jobs_a_user_may_reroll_and_the_job_autocomplete(harness):
    async with harness.bot() as bot:
        stub = harness.stub
        owner, other = stub.add_user("fay"), stub.add_user("gus")
        empty = await reroll(stub, other)
        assert "You have no jobs to reroll yet" in await ephemeral_text(empty)

        here = await imagine(stub, owner, prompt="a watercolor fox", seed=5, count=2)
        await here.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
        there = await imagine(stub, owner, prompt="a lighthouse", seed=9, channel=THREAD)
        await there.wait_for_message(has_png, timeout=RESULT_TIMEOUT)

        # Anyone may reroll a job made in this channel; it becomes their job, with their seeds.
        theirs = await reroll(stub, other, job=1, seed=100)
        result = await theirs.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
        child = await bot.repo.get_job(3)
        assert (child.user_id, child.parent_job_id, child.seeds) == (other.id, 1, [100, 101])
        assert len(result.png_attachments) == 2
        # A reroll of a reroll is fine.
        grandchild = await reroll(stub, other, job=3)
        await grandchild.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
        assert (await bot.repo.get_job(4)).parent_job_id == 3

        # A job made elsewhere: only its owner (or an admin) may reroll it from here.
        refused = await reroll(stub, other, job=2)
        assert await ephemeral_text(refused) == (
            "Job #2 was not made in this channel. You can reroll your own jobs and the jobs "
            "made here."
        )
        own = await reroll(stub, owner, job=2)
        await own.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
        missing = await reroll(stub, owner, job=999)
        assert "Job #999 no longer exists" in await ephemeral_text(missing)
        assert await bot.repo.count_jobs(other.id) == 2

        # The owner's recent jobs, newest first, searchable by prompt or id.
        async def choices(typed: str) -> list[dict]:
            return await stub.autocomplete("reroll", {"job": typed}, focused="job", user=owner)

        (latest_seed,) = (await bot.repo.get_job(5)).seeds
        assert await choices("") == [
            {"name": f"#5 a lighthouse (seed {latest_seed})", "value": "5"},
            {"name": "#2 a lighthouse (seed 9)", "value": "2"},
            {"name": "#1 a watercolor fox (seeds 5–6)", "value": "1"},
        ]
        fox = [{"name": "#1 a watercolor fox (seeds 5–6)", "value": "1"}]
        assert await choices("FOX") == fox
        assert await choices("fox watercolor") == fox  # prompt words, in any order
        assert [choice["value"] for choice in await choices("#2")] == ["2"]

        # Typed rather than picked: a number is a job id; anything else is refused.
        typed = await reroll(stub, owner, job="#1", seed=5)
        await typed.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
        assert (await bot.repo.get_job(6)).parent_job_id == 1
        words = await reroll(stub, owner, job="a fox")
        assert await ephemeral_text(words) == (
            "Job “a fox” not found: pick one from the list or give its number."
        )
        assert await bot.repo.count_jobs(owner.id) == 4  # 1, 2, 5 and 6: nothing for "a fox"


async def test_an_inpaint_job_rerolls_after_a_restart_from_its_stored_inputs(harness):
    stub = harness.stub
    student = stub.add_user("ivy")
    files = {
        "image": ("scene.png", encode(scene()), "image/png"),
        "mask": ("mask.png", encode(box_mask((96, 64), (48, 0, 95, 31))), "image/png"),
    }
    async with harness.bot():
        handle = await stub.invoke_slash(
            "inpaint",
            {"prompt": "a red kite", "steps": 1, "seed": 11},
            user=student,
            channel=CHANNEL,
            attachments=files,
        )
        first = await handle.wait_for_message(has_png, timeout=RESULT_TIMEOUT)

    async with harness.bot() as bot:  # a new bot process and a new engine
        same = await reroll(stub, student, seed=11)  # the latest job: the inpaint one
        again = await same.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
        parent, child = await bot.repo.get_job(1), await bot.repo.get_job(2)
        assert child.kind is JobKind.INPAINT and child.parent_job_id == 1
        assert (child.image_ref, child.mask_ref) == (parent.image_ref, parent.mask_ref)
        assert [a.filename for a in again.png_attachments] == ["job2_11.png", "mask_outline.png"]
        for before, after in zip(first.png_attachments, again.png_attachments, strict=True):
            np.testing.assert_array_equal(pixels(after.data), pixels(before.data))

        # The Reroll button takes the same path: a new seed, same inputs.
        click = await stub.click(first, "job:reroll:1", user=student)
        clicked = await click.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
        button_child = await bot.repo.get_job(3)
        assert button_child.parent_job_id == 1 and button_child.kind is JobKind.INPAINT
        assert button_child.image_ref == parent.image_ref
        assert clicked.png_attachments[-1].filename == "mask_outline.png"

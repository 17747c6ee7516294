"""Course mode through the Discord stub, with the real engine on tiny models.

The comparisons run at the course's sizes (512 px) but with a short steps list: the course's
10/15/25/50 would take minutes on a CPU. The lists are settings (``COURSE_*``), so the test
changes nothing but numbers.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from bot.jobs.grid import GAP, label_height, panel_box
from bot.settings import CourseSettings
from tests.bot.e2e.harness import ADMIN_ROLE, CHANNEL, make_settings
from tests.bot.e2e.test_imagine import RESULT_TIMEOUT, ephemeral_text, has_png
from tests.bot.pictures import box_mask, encode, scene

# The four comparisons queue behind each other; a loaded CI machine needs the room.
GRID_TIMEOUT = 300

STEPS = 2  # the original job's steps: every comparison repeats them


def course(**values: object) -> CourseSettings:
    return CourseSettings(_env_file=None, steps_values=[1, STEPS], **values)  # type: ignore[call-arg]


def is_grid(kind: str):
    def check(message) -> bool:
        return any(a.filename.endswith(f"_{kind}.png") for a in message.png_attachments)

    return check


def rgb(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def panels_of(grid: bytes, count: int) -> list[np.ndarray]:
    pixels = rgb(grid)
    return [
        pixels[top:bottom, left:right]
        for left, top, right, bottom in (panel_box(i, count, (512, 512)) for i in range(count))
    ]


EXPECTED = {
    # kind: (button, labels, the panel that repeats the original)
    "guidance": ("cfg", ["CFG 0", "CFG 1", "CFG 2", "CFG 7.5", "CFG 10"], 3),
    "steps": ("steps", ["1 steps", "2 steps"], 1),
    "schedulers": ("sched", ["PNDM", "DDIM", "LMS", "Euler", "DPM++ 2M Karras"], 3),
    "denoising": ("denoise", ["第 1/2 步", "第 2/2 步"], 1),  # asked for in zh-CN (below)
}


async def test_each_lesson_button_posts_a_labelled_grid_from_the_same_seed(harness):
    harness.settings = harness.settings.model_copy(update={"course": course()})
    async with harness.bot() as bot:
        stub = harness.stub
        student, classmate = stub.add_user("ada"), stub.add_user("bo")
        chinese = stub.add_user("lin", locale="zh-CN")  # asks for the denoising strip
        handle = await stub.invoke_slash(
            "imagine",
            {"prompt": "a watercolor fox", "seed": 42, "steps": STEPS},
            user=student,
            channel=CHANNEL,
        )
        original = await handle.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
        # The lessons sit in a second row under the usual buttons, Upscale in a third.
        rows = [[c["custom_id"] for c in row["components"]] for row in original.components]
        assert rows == [
            ["job:reroll:1", "job:details:1", "job:delete:1", "job:vary:1", "job:varymore:1"],
            ["job:cfg:1", "job:steps:1", "job:sched:1", "job:denoise:1"],
            ["job:up1:1"],
        ]
        original_pixels = rgb(original.png_attachments[0].data)

        clickers = {kind: classmate for kind in EXPECTED} | {"denoising": chinese}
        clicks = {
            kind: await stub.click(original, f"job:{button}:1", user=clickers[kind])
            for kind, (button, _, _) in EXPECTED.items()
        }
        for kind, (_, labels, own) in EXPECTED.items():
            message = await clicks[kind].wait_for_message(is_grid(kind), timeout=GRID_TIMEOUT)
            (grid,) = message.png_attachments
            image = Image.open(io.BytesIO(grid.data))
            assert json.loads(image.text["panels"]) == labels, kind
            assert image.text["comparison"] == kind
            band = label_height(512)
            assert image.size == (GAP + len(labels) * (512 + GAP), GAP + band + 512 + GAP)
            panels = panels_of(grid.data, len(labels))
            # Same seed, same settings: the panel with the original's own setting is its image.
            np.testing.assert_array_equal(panels[own], original_pixels, err_msg=kind)
            # And the setting really varies: no two panels are the same picture.
            assert len({p.tobytes() for p in panels}) == len(labels), kind
            # The labels are drawn: each band has dark text pixels over its white.
            for left, top, right, _ in (
                panel_box(i, len(labels), (512, 512)) for i in range(len(labels))
            ):
                assert (rgb(grid.data)[top - band : top, left:right] < 128).any(), kind
            assert " · ".join(labels) in message.content
            # What to notice, in the asker's language, and the buttons under it too.
            assert ("👀 看点" if kind == "denoising" else "👀 What to notice") in message.content
            labels_under = [c["label"] for row in message.components for c in row["components"]]
            chinese_labels = kind == "denoising"
            assert labels_under == (["详情", "删除"] if chinese_labels else ["Details", "Delete"])
            assert set(message.custom_ids) == {
                f"job:details:{message_job(message)}",
                f"job:delete:{message_job(message)}",
            }

        jobs = {
            job.comparison: job
            for user in (classmate, chinese)
            for job in await bot.repo.history(user.id, 10)
        }
        assert set(jobs) == set(EXPECTED)
        for kind, job in jobs.items():
            assert job.parent_job_id == 1 and job.seeds == [42]
            assert len(job.images) == len(EXPECTED[kind][1])


def message_job(message) -> int:
    """The job id in a result message's buttons."""
    return int(message.custom_ids[0].rsplit(":", 1)[1])


async def test_a_comparison_counts_its_panels_against_the_hourly_limit(harness):
    harness.settings = make_settings(
        harness.tmp_path, harness.stub, harness.tiny, images_per_hour=5
    ).model_copy(update={"course": course()})
    async with harness.bot() as bot:
        stub = harness.stub
        student = stub.add_user("cy")
        handle = await stub.invoke_slash(
            "imagine", {"prompt": "a fox", "steps": 1}, user=student, channel=CHANNEL
        )
        result = await handle.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
        # 1 image made + 5 panels > 5 an hour; the 2-panel steps comparison fits.
        refused = await stub.click(result, "job:cfg:1", user=student)
        assert "made 1 of the 5 images allowed in an hour, and this asks for 5: 4 more" in (
            await ephemeral_text(refused)
        )
        assert await bot.repo.count_jobs(student.id) == 1
        allowed = await stub.click(result, "job:steps:1", user=student)
        await allowed.wait_for_message(is_grid("steps"), timeout=RESULT_TIMEOUT)
        assert await bot.repo.images_in_window(student.id) == 1 + 2


async def run_script(folder: Path, script: str) -> subprocess.CompletedProcess[str]:
    """Run a recipe as a student would, offline (the tiny models are local folders)."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, script],
        cwd=folder,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )


async def test_recipe_scripts_run_and_make_the_posted_images(harness):
    async with harness.bot():
        stub = harness.stub
        student = stub.add_user("di")
        options = {"prompt": "a fox in the snow", "negative_prompt": "blurry", "seed": 7}
        handle = await stub.invoke_slash(
            "imagine", {**options, "steps": 2, "scheduler": "ddim"}, user=student, channel=CHANNEL
        )
        made = await handle.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
        files = {"image": ("scene.png", encode(scene((64, 64))), "image/png")}
        files["mask"] = ("mask.png", encode(box_mask((64, 64), (16, 16, 47, 47))), "image/png")
        handle = await stub.invoke_slash(
            "inpaint",
            {"prompt": "a red kite", "seed": 3, "steps": 2, "strength": 0.75},
            user=student,
            channel=CHANNEL,
            attachments=files,
        )
        repainted = await handle.wait_for_message(has_png, timeout=RESULT_TIMEOUT)

        async def recipes(user) -> list:
            replies = []
            for job_id in (1, 2):
                asked = await stub.invoke_slash(
                    "recipe", {"job": job_id}, user=user, channel=CHANNEL
                )
                replies.append(await asked.wait_for_message(lambda m: bool(m.attachments)))
            return replies

        replies = await recipes(student)
        assert not replies[0].flags & 64  # shared with the channel, like results
        assert "Recipe for job #1" in replies[0].content
        assert [a.filename for a in replies[0].attachments] == ["recipe_job1.py"]
        # Inpainting: the owner gets the picture and mask the engine used, privately, as the
        # script names them.
        assert replies[1].flags & 64
        names = [a.filename for a in replies[1].attachments]
        assert names == ["recipe_job2.py", "job2_image.png", "job2_mask.png"]
        assert "job2_image.png" in replies[1].content
        # The tiny models are folders on the bot's server: a student's script names the model
        # and asks for a copy; it never shows the server's path.
        for reply in replies:
            script = reply.attachments[0].data.decode()
            assert str(harness.tiny.text_to_image.parent) not in script
            assert "Put the path of your copy of it here" in script
        # An admin's scripts carry the folders, so they run as they are.
        replies = await recipes(stub.add_user("prof", roles=[ADMIN_ROLE]))
        assert str(harness.tiny.text_to_image) in replies[0].attachments[0].data.decode()

    # The bot and its engine are stopped: the scripts have the machine to themselves.
    folder = harness.tmp_path / "student"
    folder.mkdir()
    for reply in replies:
        for attachment in reply.attachments:
            (folder / attachment.filename).write_bytes(attachment.data)
    for script, output, posted in (
        ("recipe_job1.py", "job1_7.png", made),
        ("recipe_job2.py", "job2_3.png", repainted),
    ):
        ran = await run_script(folder, script)
        assert ran.returncode == 0, ran.stderr[-3000:]
        assert f"wrote {output}" in ran.stdout
        pixels = np.asarray(Image.open(folder / output).convert("RGB"))
        np.testing.assert_array_equal(pixels, rgb(posted.png_attachments[0].data), script)


def localized(item: dict, where: str) -> list[str]:
    """Every name, description or choice under ``item`` lacking a zh-CN text."""
    missing = []
    if "zh-CN" not in (item.get("name_localizations") or {}):
        missing.append(f"{where} name")
    if "description" in item and "zh-CN" not in (item.get("description_localizations") or {}):
        missing.append(f"{where} description")
    for option in item.get("options") or []:
        missing += localized(option, f"{where} {option['name']}")
    for choice in item.get("choices") or []:
        if "zh-CN" not in (choice.get("name_localizations") or {}):
            missing.append(f"{where} choice {choice['value']}")
    return missing


async def test_commands_and_replies_speak_simplified_chinese(harness):
    async with harness.bot():
        stub = harness.stub
        commands = {c["name"]: c for c in stub.synced_commands(guild=stub.guild)}
        assert {"imagine", "history", "recipe"} <= set(commands)
        missing = [m for name, c in commands.items() for m in localized(c, name)]
        assert missing == []
        imagine = commands["imagine"]
        assert imagine["name_localizations"]["zh-CN"] == "生成图像"
        options = {o["name"]: o for o in imagine["options"]}
        assert options["prompt"]["name_localizations"]["zh-CN"] == "提示词"
        square = next(c for c in options["size"]["choices"] if c["value"] == "square")
        assert square["name_localizations"] == {"zh-CN": "正方形 512×512"}
        # Only zh-CN is translated; other locales see English.
        assert set(imagine["description_localizations"]) == {"zh-CN"}

        chinese = stub.add_user("lin", locale="zh-CN")
        asked = await stub.invoke_slash("recipe", {"job": 99}, user=chinese, channel=CHANNEL)
        assert "任务 #99 不存在" in await ephemeral_text(asked)
        asked = await stub.invoke_slash("recipe", {"job": 99}, channel=CHANNEL)
        assert "Job #99 does not exist" in await ephemeral_text(asked)

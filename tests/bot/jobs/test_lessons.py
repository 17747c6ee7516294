"""The lessons' rules: panel values from settings, labels, the engine's view, the rate limit."""

from __future__ import annotations

import io
import json

from PIL import Image

from bot.jobs.lessons import (
    decode_steps,
    original_panel,
    panel_labels,
    strip_steps,
    values_for,
    variants,
)
from bot.jobs.scheduler import spec_for
from bot.jobs.service import comparison_job
from bot.settings import CourseSettings
from bot.store.models import Job
from bot.store.repository import Limits, NewJob, RateLimited
from engine.protocol import Variant
from tests.bot.doubles import interaction_by, member


def parent(**fields: object) -> Job:
    values: dict[str, object] = {
        "id": 1,
        "user_id": 10,
        "kind": "text_to_image",
        "model_name": "tiny-sd",
        "model_source": "/models/tiny-sd",
        "model_revision": None,
        "model_revision_used": "abc",
        "prompt": "a fox",
        "negative_prompt": "",
        "seeds": [42, 43],
        "steps": 30,
        "guidance": 7.5,
        "width": 512,
        "height": 512,
        "scheduler": "euler",
        "strength": 1.0,
        "image_ref": None,
        "mask_ref": None,
        "mask_prompt": None,
        "comparison": None,
        "comparison_values": None,
        "channel_id": 5,
        "parent_job_id": None,
    }
    values.update(fields)
    return Job(**values)


COURSE = CourseSettings(_env_file=None)  # type: ignore[call-arg]


def test_the_course_defaults_are_the_course_figures():
    job = parent()
    assert values_for("guidance", job, COURSE) == (0.0, 1.0, 2.0, 7.5, 10.0)
    assert values_for("steps", job, COURSE) == (10, 15, 25, 50)
    assert values_for("schedulers", job, COURSE) == (
        "pndm",
        "ddim",
        "lms",
        "euler",
        "dpmpp_2m_karras",
    )
    assert values_for("denoising", job, COURSE) == (1, 8, 15, 22, 30)


def test_strip_steps_cover_the_run_without_repeats():
    assert strip_steps(30, 5) == (1, 8, 15, 22, 30)
    assert strip_steps(2, 5) == (1, 2)
    assert strip_steps(1, 5) == (1,)


def test_a_comparison_job_becomes_the_engines_variants():
    job = parent(comparison="steps", comparison_values=[10, 15, 25, 50], seeds=[42])
    assert panel_labels(job) == ["10 steps", "15 steps", "25 steps", "50 steps"]
    assert variants(job)[1] == Variant("15 steps", 7.5, 15, "euler")
    spec = spec_for(job)
    assert spec.variants == variants(job) and spec.decode_steps == ()
    assert spec.image_count == 4
    assert original_panel(job) is None  # the parent's 30 steps is not in the list
    sweep = parent(comparison="guidance", comparison_values=[0.0, 7.5], seeds=[42])
    assert original_panel(sweep) == "CFG 7.5"
    assert variants(sweep)[0].guidance == 0.0


def test_the_denoising_strip_of_an_inpainting_job_counts_its_real_steps():
    job = parent(kind="inpaint", strength=0.5, comparison="denoising", comparison_values=[1, 15])
    assert decode_steps(job) == (1, 15)
    assert panel_labels(job) == ["step 1/15", "step 15/15"]
    assert values_for("denoising", parent(kind="inpaint", strength=0.5), COURSE)[-1] == 15
    assert spec_for(job).variants == ()


def test_zh_cn_readers_get_the_label_words_in_chinese():
    steps = parent(comparison="steps", comparison_values=[10, 50], steps=50, seeds=[42])
    assert panel_labels(steps, "zh-CN") == ["10 步", "50 步"]
    assert original_panel(steps, "zh-CN") == "50 步"
    strip = parent(comparison="denoising", comparison_values=[1, 30], seeds=[42])
    assert panel_labels(strip, "zh-CN") == ["第 1/30 步", "第 30/30 步"]
    # Names are the same in every language; the engine's labels stay English.
    sweep = parent(comparison="guidance", comparison_values=[7.5], seeds=[42])
    assert panel_labels(sweep, "zh-CN") == ["CFG 7.5"]
    assert panel_labels(strip, "fr") == panel_labels(strip) == ["step 1/30", "step 30/30"]
    assert variants(steps)[0].label == "10 steps"


async def test_a_zh_cn_grid_draws_chinese_labels_and_its_caption_names_them():
    from bot.jobs.comparison_results import comparison_message
    from engine.protocol import GeneratedImage, Result

    job = parent(id=3, parent_job_id=1, comparison="steps", comparison_values=[10, 30], seeds=[42])
    pixel = io.BytesIO()
    Image.new("RGB", (8, 8)).save(pixel, format="PNG")
    images = (GeneratedImage(42, pixel.getvalue(), False),) * 2
    message = await comparison_message(job, Result(3, images, None, 1.5), "zh-CN")
    assert message is not None
    content, (upload,), _ = message
    assert json.loads(Image.open(io.BytesIO(upload.data)).text["panels"]) == ["10 步", "30 步"]
    assert "10 步 · 30 步 — " in content and "“30 步”那一格就是原图。" in content


def test_plain_jobs_have_no_panels():
    job = parent()
    assert variants(job) == () and decode_steps(job) == () and panel_labels(job) == []
    assert spec_for(job).image_count == 2


def test_a_comparison_uses_the_parents_first_seed_and_revision():
    clicker = interaction_by(member(77, "bo"), channel_id=5, guild_id=9)
    new = comparison_job(parent(), "schedulers", COURSE, clicker)
    assert new.seeds == (42,) and new.model_revision == "abc" and new.parent_job_id == 1
    assert new.user_id == 77 and new.comparison == "schedulers"
    assert new.image_count == 5


async def test_the_rate_limit_counts_every_panel(repo):
    def ask(**fields: object) -> NewJob:
        values: dict[str, object] = {
            "user_id": 1,
            "user_name": "ada",
            "kind": "text_to_image",
            "model_name": "m",
            "model_source": "m",
            "model_revision": None,
            "prompt": "p",
            "negative_prompt": "",
            "seeds": (1,),
            "steps": 2,
            "guidance": 7.5,
            "width": 512,
            "height": 512,
            "scheduler": "euler",
            "channel_id": 5,
        }
        values.update(fields)
        return NewJob(**values)  # type: ignore[arg-type]

    limits = Limits(max_queued_jobs=None, images_per_hour=6)
    job = await repo.create_job(
        ask(comparison="guidance", comparison_values=(0.0, 1.0, 2.0, 7.5, 10.0)), limits
    )
    assert job.comparison == "guidance" and job.comparison_values == [0.0, 1.0, 2.0, 7.5, 10.0]
    assert await repo.images_in_window(1) == 5
    try:
        await repo.create_job(ask(comparison="steps", comparison_values=(1, 2)), limits)
    except RateLimited:
        pass
    else:
        raise AssertionError("5 + 2 panels must be over 6 an hour")
    await repo.create_job(ask(), limits)  # one plain image still fits


def test_the_caption_says_what_to_notice_in_the_askers_language():
    from bot.jobs.comparison_results import caption
    from engine.protocol import GeneratedImage, Result

    job = parent(
        id=3, parent_job_id=1, comparison="guidance", comparison_values=[0.0, 7.5], seeds=[42]
    )
    result = Result(
        job_id=3,
        images=(GeneratedImage(42, b"", False), GeneratedImage(42, b"", True)),
        model_revision=None,
        seconds=1.5,
    )
    english = caption(job, result, "en-US")
    assert "**Guidance sweep (classifier-free guidance)** of job #1" in english
    assert "CFG 0 · CFG 7.5 — seed 42 · 30 steps · Euler · 512×512" in english
    shared = english.split(" — ")[1].splitlines()[0]
    assert "CFG" not in shared  # the settings the panels share leave out the varied one
    assert "The CFG 7.5 panel is the original picture." in english
    assert "flagged 1 panel" in english
    chinese = caption(job, result, "zh-CN")
    assert "任务 #1 的**引导系数对比（无分类器引导）**" in chinese
    assert "👀 看点：" in chinese and "“CFG 7.5”那一格就是原图。" in chinese


def test_a_moderators_card_names_a_lesson_panel_by_its_label_and_row_seed():
    from bot.jobs.comparison_results import panel_name

    strip = parent(comparison="denoising", comparison_values=[1, 30], seeds=[42, 43])
    # Panels come seed by seed (a row each), each seed's steps across.
    assert [panel_name(strip, i) for i in range(4)] == [
        "step 1/30, seed 42",
        "step 30/30, seed 42",
        "step 1/30, seed 43",
        "step 30/30, seed 43",
    ]
    sweep = parent(comparison="guidance", comparison_values=[3.0, 7.5], seeds=[42])
    assert panel_name(sweep, 1) == "CFG 7.5"

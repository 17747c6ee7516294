"""What users read is safe to show, whatever a stored row holds."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from bot.store.models import Job, JobStatus
from bot.ui import render
from engine.protocol import JobKind

BIDI_CONTROLS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")

# Stored before prompts were cleaned: an override that would show "a cat" reversed, and an
# isolate that would swallow the rest of the caption's line.
REVERSED = "a \u202etac a\u202c \u2067 fox"


def stored_job(**fields: object) -> Job:
    """A finished job row as an older version of the bot could have stored it."""
    values: dict[str, object] = {
        "id": 7,
        "user_id": 11,
        "kind": JobKind.TEXT_TO_IMAGE,
        "status": JobStatus.DONE,
        "prompt": REVERSED,
        "negative_prompt": "blurry \u202e",
        "mask_prompt": None,
        "seeds": [42],
        "steps": 20,
        "guidance": 7.5,
        "scheduler": "euler",
        "width": 512,
        "height": 512,
        "strength": 1.0,
        "model_name": "sd15",
        "model_source": "org/sd15",
        "model_revision": None,
        "model_revision_used": None,
        "comparison": None,
        "comparison_values": None,
        "parent_job_id": None,
        "error": None,
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
    }
    values.update(fields)
    return Job(**values)


def test_bidi_controls_of_stored_rows_never_reach_a_message():
    job = stored_job()
    shown = [
        render.quote_prompt(job.prompt),
        render.queued_line(job.id, job.prompt, 1),
        render.running_line(job.id, job.prompt, 3, 20),
        render.result_caption(job, 1.5, render.prompt_chunks_note(["a", "\u2066more"])),
        render.failed_line(job),
        render.cancelled_line(job),
        render.details(job),
        render.short(job.prompt, 5),
    ]
    for text in shown:
        assert not BIDI_CONTROLS.search(text), text
    assert render.quote_prompt(job.prompt) == "`a tac a  fox`"


def test_details_of_the_longest_prompts_fit_one_message():
    job = stored_job(
        prompt="p" * 1000,
        negative_prompt="n" * 1000,
        status=JobStatus.FAILED,
        error="e" * 600,
        comparison="guidance",
        comparison_values=[0.0, 1.0, 2.0, 7.5, 10.0],
        parent_job_id=6,
    )
    text = render.details(job, admin=True)
    assert len(text) <= render.MESSAGE_LIMIT
    lines = dict(line.split(":** ", 1) for line in text.splitlines()[:-1])
    assert lines["**Prompt"].startswith("p" * 400) and lines["**Prompt"].endswith("…")
    assert lines["**Negative prompt"].startswith("n" * 400)
    assert text.splitlines()[-1] == "✂️ Cut to fit one message; `/recipe 7` has every word."
    # What fits is shown whole, with no note.
    whole = render.details(stored_job(prompt="p" * 1000, negative_prompt="short"))
    assert "p" * 1000 in whole and "✂️" not in whole


def test_name_lists_stay_short():
    assert render.name_list(["a"]) == "a"
    assert render.name_list(["a", "b", "c"]) == "a, b and c"
    many = render.name_list([f"model-{n}" for n in range(40)])
    assert many.startswith("model-0, model-1,") and many.endswith("model-9 and 30 more")
    assert render.name_list(["x" * 2000]) == "x" * 59 + "…"


def test_details_say_when_the_bot_no_longer_keeps_the_images():
    job = stored_job(prompt="a fox")
    assert "Stored images" not in render.details(job)
    removed = render.details(job, files_removed_after=30)
    assert (
        "**Stored images:** removed from the bot after 30 days; the posted result still shows them"
    ) in removed.splitlines()


def test_the_windows_of_a_long_prompt_are_shown_by_their_ends():
    assert render.prompt_chunks_note([], []) == ""
    words = " ".join(f"w{n}" for n in range(20))
    note = render.prompt_chunks_note([words, "the end"], ["a", "b", "c", "d", "e", "f"])
    prompt_line, negative_line = note.splitlines()
    assert prompt_line.startswith("🧩 Your prompt is longer than CLIP's 77-token window")
    assert "read in 2 windows" in prompt_line
    assert prompt_line.endswith("1. `w0 w1 w2 w3 … w16 w17 w18 w19` · 2. `the end`")
    assert "Your negative prompt" in negative_line and "read in 6 windows" in negative_line
    assert negative_line.endswith("1. `a` · 2. `b` · 3. `c` · … 3 more")

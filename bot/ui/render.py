"""The words users read: status lines, result captions, job details.

Plain functions of stored values, so they are the same whether a job is live or reloaded
after a restart.
"""

from __future__ import annotations

from datetime import datetime

from bot.store.models import Job, JobStatus
from bot.ui.validation import without_bidi_controls
from engine.protocol import SCHEDULERS, is_folder_source

BAR_WIDTH = 12
PROMPT_PREVIEW_CHARS = 120


def short(text: str, limit: int = PROMPT_PREVIEW_CHARS) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis, and safe to show: prompts are
    cleaned when they arrive, but rows stored before that may still hold bidi controls."""
    text = without_bidi_controls(text)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def quote_prompt(prompt: str, limit: int = PROMPT_PREVIEW_CHARS) -> str:
    # Backticks inside a prompt would end the code span early.
    return "`" + short(prompt, limit).replace("`", "'") + "`"


def progress_bar(step: int, total: int) -> str:
    filled = round(BAR_WIDTH * step / total) if total else 0
    return "▰" * filled + "▱" * (BAR_WIDTH - filled)


def relative_time(when: datetime) -> str:
    """A Discord timestamp that each reader sees as “in 12 minutes” in their own time."""
    return f"<t:{int(when.timestamp())}:R>"


def queued_line(job_id: int, prompt: str, position: int) -> str:
    ahead = position - 1
    waiting = "next up" if ahead == 0 else f"{ahead} job{'s' if ahead != 1 else ''} ahead"
    return (
        f"⏳ **Queued** · position {position} ({waiting}) · {quote_prompt(prompt)} · job #{job_id}"
    )


def running_line(job_id: int, prompt: str, step: int, total: int) -> str:
    return (
        f"🎨 **Painting** {progress_bar(step, total)} {step}/{total} · "
        f"{quote_prompt(prompt)} · job #{job_id}"
    )


def prompt_cut_note(cut: str) -> str:
    return (
        "✂️ Your prompt is longer than the text encoder's 77 tokens; the model never saw: "
        f"{quote_prompt(cut, 300)}"
    )


def settings_line(job: Job) -> str:
    seeds = ", ".join(str(s) for s in job.seeds)
    parts = [
        f"seed{'s' if len(job.seeds) > 1 else ''} {seeds}",
        f"{job.steps} steps",
        f"CFG {job.guidance:g}",
        SCHEDULERS.get(job.scheduler, job.scheduler),
        f"{job.width}×{job.height}",
        f"model {job.model_name}",
    ]
    if job.kind == "inpaint":
        parts.append(f"strength {job.strength:g}")
    return " · ".join(parts)


def result_caption(job: Job, seconds: float, prompt_cut: str = "") -> str:
    lines = [
        f"{quote_prompt(job.prompt, 300)} by <@{job.user_id}>",
        f"{settings_line(job)} · {seconds:.1f} s · job #{job.id}",
    ]
    if job.negative_prompt:
        lines.insert(1, f"Negative: {quote_prompt(job.negative_prompt, 200)}")
    if prompt_cut:
        lines.append(prompt_cut_note(prompt_cut))
    flagged = sum(1 for image in job.images if image.nsfw)
    if flagged:
        lines.append(
            f"⚠️ The safety checker flagged {flagged} image{'s' if flagged > 1 else ''}: "
            "blurred and hidden behind a spoiler."
        )
    return "\n".join(lines)


def failed_line(job: Job) -> str:
    return f"❌ **Failed** · {quote_prompt(job.prompt)} · job #{job.id}\n{job.error}"


def cancelled_line(job: Job) -> str:
    return f"🚫 **Cancelled** · {quote_prompt(job.prompt)} · job #{job.id}"


def model_text(job: Job, *, admin: bool) -> str:
    """The job's model as its reader may see it: a Hub model's id for everyone, a local
    folder's path only for admins (it is a path on the bot's server)."""
    if is_folder_source(job.model_source) and not admin:
        return f"{job.model_name} (kept on the bot's server)"
    return f"{job.model_name} ({job.model_source})"


def details(job: Job, *, admin: bool = False) -> str:
    """Every parameter of a job, enough to reproduce it anywhere; local paths for admins only."""
    rows = [
        ("Job", f"#{job.id} ({job.status.value})"),
        ("Kind", job.kind.replace("_", " ")),
        ("Prompt", job.prompt),
        ("Negative prompt", job.negative_prompt or "(none)"),
        ("Seeds", ", ".join(str(s) for s in job.seeds)),
        ("Steps", str(job.steps)),
        ("Guidance (CFG)", f"{job.guidance:g}"),
        ("Scheduler", SCHEDULERS.get(job.scheduler, job.scheduler)),
        ("Size", f"{job.width}×{job.height}"),
        ("Model", model_text(job, admin=admin)),
        ("Revision", job.model_revision_used or job.model_revision or "latest"),
    ]
    if job.kind == "inpaint":
        rows.append(("Strength", f"{job.strength:g}"))
        if job.mask_prompt:
            rows.append(("Mask from words", job.mask_prompt))
    if job.comparison:
        values = ", ".join(
            f"{v:g}" if isinstance(v, float) else str(v) for v in job.comparison_values or []
        )
        rows.append(("Comparison", f"{job.comparison} of #{job.parent_job_id}: {values}"))
    elif job.parent_job_id:
        rows.append(("Reroll of", f"#{job.parent_job_id}"))
    if job.status is JobStatus.FAILED and job.error:
        rows.append(("Error", job.error))
    rows.append(("Asked", relative_time(job.created_at)))
    return "\n".join(f"**{name}:** {short(value, 900)}" for name, value in rows)

"""The words users read: status lines, result captions, job details.

Plain functions of stored values, so they are the same whether a job is live or reloaded
after a restart.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from bot.store.models import Job, JobStatus
from bot.ui.validation import without_bidi_controls
from engine.protocol import SCHEDULERS, AdapterKind, AdapterRef, JobKind, is_folder_source

BAR_WIDTH = 12
PROMPT_PREVIEW_CHARS = 120
MESSAGE_LIMIT = 2000  # Discord's limit for a message's content
NAMES_SHOWN = 10  # a list of names longer than this ends with "and N more"


def short(text: str, limit: int = PROMPT_PREVIEW_CHARS) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis, and safe to show: prompts are
    cleaned when they arrive, but rows stored before that may still hold bidi controls."""
    text = without_bidi_controls(text)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def fit(lines: Sequence[str], limit: int = MESSAGE_LIMIT) -> str:
    """Join lines, leaving out the last ones (and saying so) when Discord would refuse it."""
    text = "\n".join(lines)
    if len(text) <= limit:
        return text
    kept: list[str] = []
    for index, line in enumerate(lines):
        tail = f"… and {plural(len(lines) - index, 'more line')}"
        if len("\n".join([*kept, line, tail])) > limit:
            return "\n".join([*kept, tail])
        kept.append(line)
    return "\n".join(kept)


def name_list(names: Sequence[str], most: int = NAMES_SHOWN, each: int = 60) -> str:
    """“a, b and c”, each name cut to ``each`` characters, and past ``most`` names
    “a, b, … and 37 more”: a list that stays short whatever is stored."""
    shown = [short(name, each) for name in names[:most]]
    left = len(names) - len(shown)
    if left:
        return f"{', '.join(shown)} and {left} more"
    if len(shown) > 1:
        return f"{', '.join(shown[:-1])} and {shown[-1]}"
    return "".join(shown)


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


CHUNK_ENDS_WORDS = 4  # words shown at each end of a window of a long prompt
CHUNKS_SHOWN = 4  # windows listed; a prompt of odd characters can take 14 (1000 tokens)


def _chunk_ends(chunk: str) -> str:
    """A window's words as “first words … last words”: enough to see where it was split."""
    words = chunk.split()
    if len(words) > 2 * CHUNK_ENDS_WORDS + 1:
        words = [*words[:CHUNK_ENDS_WORDS], "…", *words[-CHUNK_ENDS_WORDS:]]
    return quote_prompt(" ".join(words), 80)


def prompt_chunks_note(prompt_chunks: Sequence[str], negative_chunks: Sequence[str] = ()) -> str:
    """How prompts longer than CLIP's window were read (``Accepted``); "" when none was."""
    lines = []
    for what, chunks in (("prompt", prompt_chunks), ("negative prompt", negative_chunks)):
        if chunks:
            shown = chunks if len(chunks) <= CHUNKS_SHOWN else chunks[: CHUNKS_SHOWN - 1]
            windows = " · ".join(
                f"{number}. {_chunk_ends(chunk)}" for number, chunk in enumerate(shown, 1)
            )
            if len(shown) < len(chunks):
                windows += f" · … {len(chunks) - len(shown)} more"
            lines.append(
                f"🧩 Your {what} is longer than CLIP's 77-token window, so it was read in "
                f"{len(chunks)} windows of up to 75 tokens, each encoded alone and then joined: "
                f"{windows}"
            )
    return "\n".join(lines)


def upscaled_size(job: Job) -> str:
    """An upscale's size: what it made, from what it was given."""
    scale = JobKind.UPSCALE.scale
    return f"{job.width * scale}×{job.height * scale} from {job.width}×{job.height}"


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
    if JobKind(job.kind).uses_strength:
        parts.append(f"strength {job.strength:g}")
    if job.kind == JobKind.UPSCALE:
        parts[4] = upscaled_size(job)
        parts.append(f"noise level {job.noise_level}")
    return " · ".join(parts)


def result_caption(job: Job, seconds: float, chunks_note: str = "") -> str:
    lines = [
        f"{quote_prompt(job.prompt, 300)} by <@{job.user_id}>",
        f"{settings_line(job)} · {seconds:.1f} s · job #{job.id}",
    ]
    if job.negative_prompt:
        lines.insert(1, f"Negative: {quote_prompt(job.negative_prompt, 200)}")
    if chunks_note:
        lines.append(chunks_note)
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


def is_end_line(content: str, job_id: int) -> bool:
    """Whether a message's text shows job ``job_id`` failed or cancelled (``failed_line``,
    ``cancelled_line``), with or without the mention put before it in a channel."""
    first = content.split("\n", 1)[0]
    ended = "❌ **Failed** · " in first or "🚫 **Cancelled** · " in first
    return ended and first.endswith(f" · job #{job_id}")


def model_text(job: Job, *, admin: bool) -> str:
    """The job's model as its reader may see it: a Hub model's id for everyone, a local
    folder's path only for admins (it is a path on the bot's server)."""
    if is_folder_source(job.model_source) and not admin:
        return f"{job.model_name} (kept on the bot's server)"
    return f"{job.model_name} ({job.model_source})"


def grid_axes(job: Job) -> str:
    """A /compare grid's axes in a line (``bot.jobs.xy_plot`` stores them): “guidance 5, 7.5
    × scheduler Euler, DDIM”."""

    def shown(value: object) -> str:
        if isinstance(value, float):
            return f"{value:g}"
        return SCHEDULERS.get(str(value), str(value))

    return " × ".join(
        f"{axis['axis']} " + ", ".join(shown(v) for v in axis["values"])
        for axis in job.comparison_values or []
    )


def adapters_text(adapters: Sequence[AdapterRef]) -> str:
    """“ink (LoRA, 0.8), <film> (embedding)”: what a job applied, by name, never by source."""
    return ", ".join(
        f"{a.name} (LoRA, {a.weight:g})"
        if a.kind is AdapterKind.LORA
        else f"{a.token} (embedding {a.name})"
        for a in adapters
    )


def details(job: Job, *, admin: bool = False, files_removed_after: int | None = None) -> str:
    """Every parameter of a job, enough to reproduce it anywhere; local paths for admins only.
    ``files_removed_after``: the retention's days, when the bot no longer keeps its files."""
    rows = [
        ("Job", f"#{job.id} ({job.status.value})"),
        ("Kind", job.kind.replace("_", " ")),
        ("Prompt", job.prompt),
        ("Negative prompt", job.negative_prompt or "(none)"),
        ("Seeds", ", ".join(str(s) for s in job.seeds)),
        ("Steps", str(job.steps)),
        ("Guidance (CFG)", f"{job.guidance:g}"),
        ("Scheduler", SCHEDULERS.get(job.scheduler, job.scheduler)),
        (
            "Size",
            upscaled_size(job) if job.kind == JobKind.UPSCALE else f"{job.width}×{job.height}",
        ),
        ("Model", model_text(job, admin=admin)),
        ("Revision", job.model_revision_used or job.model_revision or "latest"),
    ]
    if adapters := job.adapter_refs():
        rows.append(("LoRAs and embeddings", adapters_text(adapters)))
    if JobKind(job.kind).uses_strength:
        rows.append(("Strength", f"{job.strength:g}"))
        if job.mask_prompt:
            rows.append(("Mask from words", job.mask_prompt))
    if job.comparison == "xy":
        rows.append(("X/Y grid", grid_axes(job)))
    elif job.comparison:
        values = ", ".join(
            f"{v:g}" if isinstance(v, float) else str(v) for v in job.comparison_values or []
        )
        rows.append(("Comparison", f"{job.comparison} of #{job.parent_job_id}: {values}"))
    elif job.parent_job_id and job.kind == JobKind.UPSCALE:
        rows.append(("Upscaled from", f"#{job.parent_job_id}, seed {job.seeds[0]}"))
        rows.append(("Noise level", str(job.noise_level)))
    elif job.parent_job_id and job.kind == JobKind.IMAGE_TO_IMAGE:
        # A reroll of an image-to-image job, or a Vary of any result: both start from a picture.
        rows.append(("Made from", f"#{job.parent_job_id} (a reroll, or Vary of its image)"))
    elif job.parent_job_id:
        rows.append(("Reroll of", f"#{job.parent_job_id}"))
    if job.status is JobStatus.FAILED and job.error:
        rows.append(("Error", job.error))
    if files_removed_after is not None:
        kept = f"removed from the bot after {plural(files_removed_after, 'day')}"
        rows.append(("Stored images", f"{kept}; the posted result still shows them"))
    rows.append(("Asked", relative_time(job.created_at)))
    return _fit_rows(rows, job.id)


# What users typed may be long (two 1000-character prompts); the rest is short.
_TYPED_ROWS = ("Prompt", "Negative prompt", "Mask from words")
_OTHER_ROW_CHARS = 300


def _fit_rows(rows: list[tuple[str, str]], job_id: int) -> str:
    """``**Name:** value`` lines within one message: the typed texts share what the other
    rows leave, and a cut says where every word is."""
    shown = {
        name: without_bidi_controls(value)
        if name in _TYPED_ROWS
        else short(value, _OTHER_ROW_CHARS)
        for name, value in rows
    }

    def line(name: str) -> str:
        return f"**{name}:** {shown[name]}"

    text = "\n".join(line(name) for name, _ in rows)
    if len(text) <= MESSAGE_LIMIT:
        return text
    note = f"✂️ Cut to fit one message; `/recipe {job_id}` has every word."
    typed = sorted((name for name in shown if name in _TYPED_ROWS), key=lambda n: len(shown[n]))
    room = MESSAGE_LIMIT - len(note) - sum(len(line(n)) + 1 for n in shown if n not in typed)
    # Shortest first, so what a short text leaves over goes to the longer ones.
    for index, name in enumerate(typed):
        share = room // (len(typed) - index) - len(f"**{name}:** ") - 1
        shown[name] = short(shown[name], max(share, 1))
        room -= len(line(name)) + 1
    return "\n".join([*(line(name) for name, _ in rows), note])

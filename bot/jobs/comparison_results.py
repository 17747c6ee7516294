"""A finished comparison as a message: the captioned grid and what to notice."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import discord

from bot.jobs import xy_plot
from bot.jobs.grid import grid_png
from bot.jobs.lessons import original_panel, panel_labels
from bot.jobs.upload_fit import UploadFile
from bot.store.models import Job
from bot.ui import render
from bot.ui.buttons import job_view
from bot.ui.i18n import t
from engine.protocol import BOUNDS, FAMILIES, SCHEDULERS, Family, Result, SpooledFile

log = logging.getLogger(__name__)


def settings_line(job: Job, seconds: float) -> str:
    """The settings the panels share (the varied one is left out), then time and job id."""
    parts = [f"seed {job.seeds[0]}"]
    if job.comparison not in ("steps", "denoising"):
        parts.append(f"{job.steps} steps")
    if job.comparison != "guidance":
        parts.append(f"CFG {job.guidance:g}")
    if job.comparison != "schedulers":
        parts.append(SCHEDULERS.get(job.scheduler, job.scheduler))
    parts += [f"{job.width}×{job.height}", f"model {job.model_name}"]
    if job.kind == "inpaint":
        parts.append(f"strength {job.strength:g}")
    parts += [f"{seconds:.1f} s", f"job #{job.id}"]
    return " · ".join(parts)


def panel_name(job: Job, index: int, locale: str | None = None) -> str:
    """What panel ``index`` of a comparison is called on its grid: its axis values (an X/Y
    grid), or its label and, when the lesson has several seeds, the seed of its row."""
    if xy_plot.is_grid(job):
        columns, rows = xy_plot.labels(job, locale)
        row, column = divmod(index, len(columns))
        return columns[column] + (f", {rows[row]}" if rows else "")
    labels = panel_labels(job, locale)
    row, column = divmod(index, len(labels))
    return labels[column] + (f", seed {job.seeds[row]}" if len(job.seeds) > 1 else "")


def comparison_title(job: Job, locale: str | None = None) -> str:
    """What kind of grid a comparison job made: "X/Y grid", or the lesson's title."""
    if xy_plot.is_grid(job):
        return "X/Y grid"
    return t(locale, f"lesson.{job.comparison}.title")


def flagged_line(locale: str | None, count: int) -> str:
    """The caption's line saying how many panels are blurred ("" when none is)."""
    return t(locale, "lesson.flagged", count=count) if count else ""


def grid_caption(job: Job, result: Result, locale: str | None, chunks_note: str = "") -> str:
    """The message under a /compare grid: its axes, the settings the panels share, and which
    panel is the plain /imagine's picture."""
    found = xy_plot.axes(job)
    names = [t(locale, f"xy.axis.{axis.kind}") for axis in found]
    axes_line = (
        t(locale, "xy.axes_two", x=names[0], y=names[1])
        if len(names) == 2
        else t(locale, "xy.axes", x=names[0])
    )
    varied = {axis.kind for axis in found}
    shared = [
        part
        for kind, part in (
            ("seed", f"seed {job.seeds[0]}"),
            ("steps", f"{job.steps} steps"),
            ("guidance", f"CFG {job.guidance:g}"),
            ("scheduler", SCHEDULERS.get(job.scheduler, job.scheduler)),
            ("model", f"model {job.model_name}"),
        )
        if kind not in varied
    ]
    if job.kind == "image_to_image" and "strength" not in varied:
        shared.append(f"strength {job.strength:g}")
    shared += [f"{job.width}×{job.height}", f"{result.seconds:.1f} s", f"job #{job.id}"]
    seeds = (
        t(locale, "xy.seed_axis")
        if "seed" in varied
        else t(locale, "xy.same_seed", seed=job.seeds[0])
    )
    lines = [
        t(
            locale,
            "xy.caption",
            prompt=render.quote_prompt(job.prompt, 200),
            user=job.user_id,
        ),
        f"{axes_line} — {' · '.join(shared)}",
        seeds,
    ]
    if chunks_note:
        lines.append(chunks_note)
    if (index := xy_plot.default_panel(job)) is not None:
        lines.append(t(locale, "xy.default", label=panel_name(job, index, locale)))
    if flagged := flagged_line(locale, sum(1 for image in result.images if image.nsfw)):
        lines.append(flagged)
    return "\n".join(lines)


def caption(
    job: Job,
    result: Result,
    locale: str | None,
    chunks_note: str = "",
    family: Family = Family.SD,
) -> str:
    """The message under the grid, in the asker's language where there is a translation;
    ``family``: the model's (a distilled one's steps lesson has its own notice)."""
    if xy_plot.is_grid(job):
        return grid_caption(job, result, locale, chunks_note)
    kind = job.comparison
    notice = f"lesson.{kind}.notice"
    if kind == "steps" and FAMILIES[family].steps.max < BOUNDS.steps.max:
        notice = "lesson.steps.notice.distilled"
    lines = [
        t(
            locale,
            "lesson.caption",
            title=t(locale, f"lesson.{kind}.title"),
            parent=job.parent_job_id,
            prompt=render.quote_prompt(job.prompt, 200),
            user=job.user_id,
        ),
        " · ".join(panel_labels(job, locale)) + " — " + settings_line(job, result.seconds),
        t(locale, "lesson.notice", notice=t(locale, notice)),
    ]
    if chunks_note:
        lines.append(chunks_note)
    if (original := original_panel(job, locale)) is not None:
        lines.append(t(locale, "lesson.original", label=original))
    if flagged := flagged_line(locale, sum(1 for image in result.images if image.nsfw)):
        lines.append(flagged)
    return "\n".join(lines)


async def comparison_message(
    job: Job,
    result: Result,
    locale: str | None,
    chunks_note: str = "",
    family: Family = Family.SD,
    *,
    pictures: Sequence[bytes | Path] | None = None,
) -> tuple[str, list[UploadFile], discord.ui.View] | None:
    """Content, the grid file and the buttons of a finished comparison.

    ``pictures``: the panels' PNGs, as bytes or stored files; None: the result's own bytes.
    None when the grid cannot be made (logged): the caller posts the panels as plain images
    rather than leaving the user without a result.
    """
    assert job.comparison
    if xy_plot.is_grid(job):
        columns, rows = xy_plot.labels(job, locale)
        english_columns, english_rows = xy_plot.labels(job)
        drawn: dict[str, Any] = dict(
            rows=len(rows) or 1,
            row_labels=rows or None,
            row_fallbacks=english_rows or None,
            fallbacks=english_columns,
        )
    else:
        columns = panel_labels(job, locale)
        drawn = dict(rows=len(job.seeds), fallbacks=panel_labels(job))
    try:
        # Pillow work off the event loop: a five-panel grid of 512 px images takes a moment.
        # Labels in the asker's language; in English where the font cannot draw them.
        panels = pictures if pictures is not None else [image.png for image in result.images]
        grid = await asyncio.to_thread(
            functools.partial(_grid_of, comparison=job.comparison, **drawn), panels, columns
        )
    except Exception:
        log.exception("could not make the grid of comparison job %s", job.id)
        return None
    spoiler = any(image.nsfw for image in result.images)
    files = [UploadFile(f"job{job.id}_{job.comparison}.png", grid, spoiler)]
    content = caption(job, result, locale, chunks_note, family)
    if xy_plot.is_grid(job) and xy_plot.rerolls(job):
        return content, files, job_view(job.id, "reroll", "details", "delete", locale=locale)
    return content, files, job_view(job.id, "details", "delete", locale=locale)


def _grid_of(
    panels: Sequence[bytes | Path | SpooledFile], labels: Sequence[str], **drawn: Any
) -> bytes:
    """``grid_png`` of panels given as bytes or stored files (read here, off the event loop)."""
    pngs = []
    for panel in panels:
        if isinstance(panel, SpooledFile):
            raise ValueError("a comparison panel is in the engine's spool, not in the store")
        pngs.append(panel.read_bytes() if isinstance(panel, Path) else panel)
    return grid_png(pngs, labels, **drawn)

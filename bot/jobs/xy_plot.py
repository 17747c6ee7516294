"""/compare's X/Y grids as job rows: what is stored, the engine's panels, and the labels.

An X/Y grid is a comparison job (``jobs.comparison == "xy"``) like the course lessons, so it
runs as one job of ``JobSpec.variants`` in the engine (``engine.run.comparisons``): one panel
per (y value, x value), row by row, each from the job's own seed unless the seed is an axis.
``comparison_values`` holds the axes, fixed when asked so the job means the same after a
restart: ``[{"axis": "guidance", "values": [5.0, 7.5]}, {"axis": "model", "values": ["a",
"b"], "models": [["a", source, revision], ...]}]``. A model axis keeps each model's source and
revision, so a panel runs the checkpoint it ran when asked, as a job's own model is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.jobs.xy_values import Axis, Value
from bot.store.models import Job, Model
from bot.ui.i18n import t
from engine.protocol import SCHEDULERS, ModelRef, Variant

XY = "xy"  # jobs.comparison of an X/Y grid


@dataclass(frozen=True)
class StoredAxis:
    """An axis as the job row keeps it; ``models`` only on a model axis, in value order."""

    kind: str
    values: tuple[Value, ...]
    models: tuple[ModelRef, ...] = ()


def stored(axes: Sequence[Axis], models: Sequence[Model] = ()) -> list[dict[str, Any]]:
    """``comparison_values`` for a grid of ``axes``; ``models``: a model axis's, in order."""
    records: list[dict[str, Any]] = []
    for axis in axes:
        record: dict[str, Any] = {"axis": axis.kind, "values": list(axis.values)}
        if axis.kind == "model":
            record["values"] = [m.name for m in models]
            record["models"] = [[m.name, m.source, m.revision] for m in models]
        records.append(record)
    return records


def is_grid(job: Job) -> bool:
    return job.comparison == XY


def axes(job: Job) -> list[StoredAxis]:
    """The grid's axes, x first; [] for other jobs."""
    if not is_grid(job):
        return []
    return [
        StoredAxis(
            record["axis"],
            tuple(record["values"]),
            tuple(ModelRef(*model) for model in record.get("models", [])),
        )
        for record in job.comparison_values or []
    ]


def _own(job: Job, kind: str) -> Value:
    """The job's own value of the setting ``kind`` (its panel is the plain job's picture)."""
    if kind == "seed":
        return job.seeds[0]
    if kind == "model":
        return job.model_name
    own: dict[str, Value] = {
        "guidance": job.guidance,
        "steps": job.steps,
        "scheduler": job.scheduler,
        "strength": job.strength,
    }
    return own[kind]


def _cells(job: Job) -> list[list[tuple[StoredAxis, int]]]:
    """Each panel's (axis, value index) pairs, row by row (y), then across (x)."""
    found = axes(job)
    if not found:
        return []
    x, *rest = found
    rows = [[(rest[0], row)] for row in range(len(rest[0].values))] if rest else [[]]
    return [[(x, column), *row] for row in rows for column in range(len(x.values))]


def variants(job: Job) -> tuple[Variant, ...]:
    """The engine's panels: the job's settings with each panel's axis values."""
    panels = []
    for cell in _cells(job):
        settings: dict[str, Any] = {
            "guidance": job.guidance,
            "steps": job.steps,
            "scheduler": job.scheduler,
        }
        for axis, index in cell:
            value = axis.values[index]
            if axis.kind == "model":
                settings["model"] = axis.models[index]
            elif axis.kind in ("guidance", "strength"):
                settings[axis.kind] = float(value)
            elif axis.kind in ("steps", "seed"):
                settings[axis.kind] = int(value)
            else:
                settings[axis.kind] = str(value)
        label = ", ".join(value_label(axis.kind, axis.values[index]) for axis, index in cell)
        panels.append(Variant(label, **settings))
    return tuple(panels)


def value_label(kind: str, value: Value, locale: str | None = None) -> str:
    """One value as drawn beside its row or over its column: “CFG: 7.5”, “Sampler: DDIM”."""
    if kind in ("guidance", "strength"):
        shown = f"{float(value):g}"
    elif kind == "scheduler":
        shown = SCHEDULERS.get(str(value), str(value))
    else:
        shown = str(value)
    return f"{t(locale, f'xy.axis.{kind}')}: {shown}"


def labels(job: Job, locale: str | None = None) -> tuple[list[str], list[str]]:
    """The column labels (x) and the row labels (y; [] for one axis), in ``locale``."""
    found = axes(job)
    if not found:
        return [], []
    columns = [value_label(found[0].kind, v, locale) for v in found[0].values]
    rows = [value_label(found[1].kind, v, locale) for v in found[1].values] if found[1:] else []
    return columns, rows


def default_panel(job: Job) -> int | None:
    """The index of the panel with the job's own settings (the plain /imagine's picture)."""
    for index, cell in enumerate(_cells(job)):
        if all(_same(axis.values[i], _own(job, axis.kind)) for axis, i in cell):
            return index
    return None


def _same(value: Value, own: Value) -> bool:
    if isinstance(own, float):
        return float(value) == own
    return value == own


def rerolls(job: Job) -> bool:
    """Whether Reroll (a new seed for the whole grid) means anything: not when the seed is an
    axis, whose seeds are the grid's point."""
    return all(axis.kind != "seed" for axis in axes(job))

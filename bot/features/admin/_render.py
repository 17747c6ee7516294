"""The words the admin commands show: model lists, the audit log, the status page.

Plain functions of stored values and engine facts, so tests can read them without Discord.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

import discord

from bot.features.admin._engine_ops import EngineFacts, LoadOutcome, bytes_of
from bot.jobs.disk_usage import DiskUse
from bot.jobs.image_store import StorageHealth
from bot.store.models import AuditEntry, JobStatus, Model, utcnow
from bot.ui import render
from bot.ui.model_options import JOB_KIND_LABEL, KIND_LABEL
from bot.ui.render import fit, plural
from engine.protocol import FAMILIES, Family, JobKind, JobSpec, LoadedModel, is_folder_source

NOT_KNOWN = "not known right now (the image engine is starting or down)"
STORAGE_OK = StorageHealth(last_failure=None, failing=False)


def human_bytes(count: int) -> str:
    """Sizes as people read them; binary units, as the engine's log uses."""
    size = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def human_duration(seconds: float) -> str:
    """``0.4 s``, ``12 s``, ``3 min 5 s``, ``2 h 5 min``, ``3 d 4 h``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


def loaded_text(loaded: tuple[LoadedModel, ...] | None) -> str:
    """The models in the engine's memory and what each takes."""
    if loaded is None:
        return f"{NOT_KNOWN}."
    if not loaded:
        return "none (a model loads when the first job needs it)."
    total = sum(m.bytes for m in loaded)
    names = ", ".join(f"{m.model.name} ({human_bytes(m.bytes)})" for m in loaded)
    return f"{names}; {human_bytes(total)} in all."


def model_list(
    models: Iterable[Model],
    loaded: tuple[LoadedModel, ...] | None,
    *,
    admin: bool,
    adapters: Sequence[str] = (),
) -> str:
    """``/models-list``: each kind's models, its default, what is loaded; sources for admins.
    ``adapters``: the LoRAs' and embeddings' lines, after the models."""
    by_kind: dict[JobKind, list[Model]] = {kind: [] for kind in KIND_LABEL}
    for model in models:
        by_kind[model.kind].append(model)
    lines = ["**Models**"]
    for kind, label in KIND_LABEL.items():
        lines.append(f"__{label.capitalize()}__")
        entries = by_kind[kind]
        if not entries:
            lines.append("• none yet")
        lines += [_model_line(model, loaded, admin=admin) for model in entries]
    lines += adapters
    lines.append(f"Loaded now: {loaded_text(loaded)}")
    return fit(lines)


def _model_line(model: Model, loaded: tuple[LoadedModel, ...] | None, *, admin: bool) -> str:
    tags = []
    if model.family not in (None, Family.SD):  # it takes other options: people should know
        tags.append(FAMILIES[model.family].label)
    if model.is_default:
        tags.append("default")
    if not model.enabled:
        tags.append("disabled")
    if loaded is not None and (size := bytes_of(model.name, loaded)):
        tags.append(f"loaded, {human_bytes(size)}")
    line = f"• **{model.name}**" + (f" · {' · '.join(tags)}" if tags else "")
    if admin:
        # Local paths stay with the admins; students only need the names.
        revision = f" @ `{model.revision}`" if model.revision else ""
        line += f" · `{model.source}`{revision}"
    return line


def audit_log(entries: Sequence[AuditEntry]) -> str:
    """``/models log``: newest first, one line each."""
    if not entries:
        return "The audit log is empty: no admin has done anything yet."
    lines = [f"**Latest admin actions** (newest first, {len(entries)})"]
    for entry in entries:
        mark = "✅" if entry.ok else "⛔" if entry.outcome.startswith("refused") else "❌"
        target = f" `{entry.target}`" if entry.target else ""
        lines.append(
            f"{mark} {render.relative_time(entry.at)} <@{entry.actor_id}> "
            f"({discord.utils.escape_markdown(entry.actor_name)}) · **{entry.action}**{target}"
            f" · {render.short(entry.outcome, 200)}"
        )
    return fit(lines)


def status_page(
    *,
    counts: dict[JobStatus, int],
    waiting_in_memory: int,
    running: Sequence[JobSpec],
    engine: EngineFacts,
    loaded: tuple[LoadedModel, ...] | None,
    images_last_hour: int,
    disk: DiskUse | None,
    retention_days: int,
    storage: StorageHealth = STORAGE_OK,
    now: datetime | None = None,
) -> str:
    """``/status``: the queue, the running batch, the engine, memory, recent images, whether
    images can be saved, and the disk the images and uploads take (None: the folders could
    not be read)."""
    now = now or utcnow()
    queue = " · ".join(f"{status.value} {counts.get(status, 0)}" for status in JobStatus)
    lines = [
        "**Bot status**",
        f"**Jobs:** {queue} (all time; {waiting_in_memory} waiting in the scheduler now)",
        f"**Running batch:** {_batch(running)}",
        f"**Engine:** {_engine(engine, now)}",
        *([f"**Replicas:** {'; '.join(engine.replicas)}"] if engine.replicas else []),
        f"**Loaded models:** {loaded_text(loaded)}",
        f"**Images in the last hour:** {images_last_hour}",
        f"**Image storage:** {_storage(storage)}",
        f"**Disk:** {disk_text(disk, retention_days)}",
    ]
    return fit(lines)


def _storage(storage: StorageHealth) -> str:
    failure = storage.last_failure
    if failure is None:
        return "ok"
    cause = f"{render.relative_time(failure.at)}: `{render.short(failure.cause, 300)}`"
    if storage.failing:
        return f"⚠️ the last write failed {cause}"
    return f"ok again (a write failed {cause})"


def disk_text(disk: DiskUse | None, retention_days: int) -> str:
    """The folders' sizes, and how long their files are kept."""
    if retention_days:
        kept = f"kept {plural(retention_days, 'day')} after last use"
    else:
        kept = "kept forever"
    kept += f" (STORAGE_RETENTION_DAYS={retention_days})"
    if disk is None:
        return f"could not be measured (the image folders are unreadable; see the log) · {kept}"
    images, uploads = disk.images, disk.uploads
    return (
        f"images {human_bytes(images.bytes)} in {plural(images.files, 'file')} · "
        f"uploads {human_bytes(uploads.bytes)} in {plural(uploads.files, 'file')} · {kept}"
    )


def _batch(running: Sequence[JobSpec]) -> str:
    if not running:
        return "none"
    first = running[0]
    jobs = ", ".join(f"#{spec.job_id}" for spec in running)
    images = sum(len(spec.seeds) for spec in running)
    return (
        f"{plural(len(running), 'job')} ({jobs}), {plural(images, 'image')} · "
        f"{first.model.name} · {JOB_KIND_LABEL[first.kind]} · {first.width}×{first.height} · "
        f"{first.steps} steps"
    )


def _engine(engine: EngineFacts, now: datetime) -> str:
    if engine.failure:
        state = f"down: {engine.failure}"
    elif engine.retry_at is not None:
        # Restarts never stop; while it keeps dying the pause is long, and admins see why.
        died = plural(engine.recent_deaths, "death")
        state = f"restarting {render.relative_time(engine.retry_at)} ({died} recently)"
    elif not engine.ready or engine.started_at is None:
        state = "starting"
    else:
        uptime = human_duration((now - engine.started_at).total_seconds())
        state = f"ready, up {uptime} (since {render.relative_time(engine.started_at)})"
    parts = [state]
    if engine.pid is not None:
        parts.append(f"pid {engine.pid}")
    if engine.device:
        parts.append(engine.device)
    parts.append(f"{plural(engine.restarts, 'restart')}")
    return " · ".join(parts)


def choice_label(model: Model) -> str:
    """How a model reads in the admins' name autocomplete."""
    tags = [KIND_LABEL[model.kind]]
    if model.is_default:
        tags.append("default")
    if not model.enabled:
        tags.append("disabled")
    return f"{model.name} ({', '.join(tags)})"[:100]


def engine_problem(name: str, error: Exception) -> str:
    """Why a load could not even be tried, or did not end in time."""
    if isinstance(error, TimeoutError):
        return (
            f"{name} did not finish loading in time; the engine may still be at it. "
            "`/models-list` shows whether it arrived."
        )
    return f"Could not load {name}: {error}."


def load_report(model: Model, outcome: LoadOutcome) -> tuple[bool, str, str]:
    """Whether the load worked, the audit log's words, and the admin's."""
    name = model.name
    took = human_duration(outcome.seconds)
    if not outcome.ok:
        return (
            False,
            f"failed after {took}: {outcome.message}",
            load_failure(model, outcome.message, took),
        )
    size = human_bytes(outcome.model_bytes)
    if outcome.already_loaded:
        return (
            True,
            f"already loaded ({size})",
            f"✅ **{name}** was already loaded; it takes {size}.",
        )
    return (
        True,
        f"loaded in {took}, {size}",
        f"✅ Loaded **{name}** in {took}; it takes {size}.\n"
        f"Loaded now: {loaded_text(outcome.loaded)}",
    )


def load_failure(model: Model, reason: str, took: str) -> str:
    """Why a load failed, and what to check, by kind of source."""
    if is_folder_source(model.source):
        check = f"Check that `{model.source}` still holds a complete diffusers pipeline."
    else:
        revision = f" (revision `{model.revision}`)" if model.revision else ""
        check = (
            f"Check that `{model.source}`{revision} exists on Hugging Face and that the engine "
            "can download it (or has it cached)."
        )
    return (
        f"❌ **{model.name}** did not load (after {took}). The engine says: {reason}.\n"
        f"{check} If the source or kind is wrong, `/models remove {model.name}` and add it again."
    )

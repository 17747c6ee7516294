"""Retention: the bot's copies of results and uploads go some days after they were last needed.

``STORAGE_RETENTION_DAYS`` (N; 0 keeps everything) sets the policy, applied by an hourly pass
(``bot.jobs.housekeeping``):

- A result image's file goes N days after its job ended. The rows stay, the job's and its
  images' (seeds, safety flags, paths): they are small, and they are the record /history,
  Details, /reroll and /recipe read. None of those reads a result file, the posted message
  keeps its images on Discord, and the safety flags go on deciding who may have a recipe.
  ``files_removed`` tells whether a job's files are gone, for Details to say so.
- It never races delivery. Only jobs that ended before the cutoff are considered, and the
  cutoff is at least ``REDELIVER_WINDOW`` ago: a queued or running job has not ended, a result
  being posted is in memory, and the only reader of result files, the redelivery at start,
  reads only jobs that ended within that window. ``Repository.jobs_keeping_files`` checks all
  three again against the rows, so a changed window cannot make it race.
- Result files are found by their day folder (``bot.jobs.image_store``): only folders of days
  wholly before the cutoff are opened, and a folder emptied is removed, so each pass opens only
  the days newly expired. Files whose job no longer exists go too.
- A flagged image's unblurred original (``bot.jobs.reviews``) goes when its moderator's
  decision says (Confirm and Strike: some hours later; Release: at once), or with its job's
  result files when the retention ends, decided or not. This part runs even when
  ``STORAGE_RETENTION_DAYS`` is 0: an original is kept only for the review.
- Pictures a local engine spooled (``ImageStore.spool``) and the bot never took into the
  store, because the engine died between writing them and sending their result, go an hour
  after they were written, whatever the policy (the spool is also emptied at each start).
- Uploads are stored once per content and shared by jobs (rerolls of an inpainting reuse its
  picture and mask). One goes when no job that is queued, running, or made or ended in the last
  N days refers to it, and no job stored or reused it in that time (its modification time,
  ``bot.jobs.inputs.InputStore``): a job written while the pass runs keeps its picture.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from bot.jobs.image_store import ImageStore
from bot.jobs.inputs import InputStore
from bot.jobs.service import REDELIVER_WINDOW
from bot.store.models import Job, JobStatus, utcnow
from bot.store.repository import Repository

DAY_FOLDER = re.compile(r"\d{4}-\d{2}-\d{2}")
# ``job<ID>_<N>.png``, or the temporary name it is written under first.
RESULT_FILE = re.compile(r"job([0-9]+)_[0-9]+\.(?:png|tmp)")
# A picture the engine spooled is moved into the store as its result is read, within seconds;
# one still there after this long belongs to a result that never came.
SPOOL_KEPT = timedelta(hours=1)


@dataclass(frozen=True)
class Swept:
    """What one pass deleted."""

    images: int = 0
    uploads: int = 0
    originals: int = 0  # unblurred originals of flagged images (bot.jobs.reviews)
    spooled: int = 0  # engine pictures never taken into the store (bot.jobs.image_store)


def retention_cutoff(days: int, now: datetime) -> datetime | None:
    """Files last needed before this moment go; None when they are kept forever."""
    if days <= 0:
        return None
    return now - max(timedelta(days=days), REDELIVER_WINDOW)


def files_removed(job: Job, days: int, now: datetime | None = None) -> bool:
    """Whether ``job``'s result files are past the retention (gone, or going this hour)."""
    cutoff = retention_cutoff(days, now or utcnow())
    return (
        cutoff is not None
        and job.status is JobStatus.DONE
        and job.finished_at is not None
        and job.finished_at < cutoff
    )


class Retention:
    """Deletes the result files and uploads past ``days``; see the module's docstring."""

    def __init__(
        self,
        repo: Repository,
        images: ImageStore,
        inputs: InputStore,
        days: int,
        originals: ImageStore | None = None,
    ) -> None:
        self._repo = repo
        self._images = images
        self._inputs = inputs
        self._originals = originals
        self.days = days

    async def sweep(self, now: datetime | None = None) -> Swept:
        """One pass: originals due, results of jobs ended before the cutoff, unused uploads."""
        now = now or utcnow()
        cutoff = retention_cutoff(self.days, now)
        originals = await self._sweep_originals(now, cutoff)
        spooled = await self._images.sweep_spool(before=now - SPOOL_KEPT)
        if cutoff is None:
            return Swept(originals=originals, spooled=spooled)
        images = await self._sweep_results(cutoff, now)
        # Rows first, files after: an upload stored or reused after this read is newer than
        # the cutoff, and so kept (the store refreshes its time on both).
        in_use = await self._repo.referenced_inputs(since=cutoff)
        uploads = await self._inputs.remove_unused(
            None, keep=in_use, unused_since=cutoff.timestamp()
        )
        return Swept(images, len(uploads), originals, spooled)

    async def _sweep_originals(self, now: datetime, cutoff: datetime | None) -> int:
        if self._originals is None:
            return 0
        due = await self._repo.moderation.originals_due(now, ended_before=cutoff)
        gone = []
        for review_id, path in due:
            with contextlib.suppress(FileNotFoundError, ValueError):  # gone already, or not ours
                await self._originals.delete(path)
            gone.append(review_id)
        await self._repo.moderation.forget_originals(gone)
        return len(gone)

    async def _sweep_results(self, cutoff: datetime, now: datetime) -> int:
        folders = await asyncio.to_thread(_expired_folders, self._images.root, cutoff)
        removed = 0
        for folder, files in sorted(folders.items()):
            keep = await self._repo.jobs_keeping_files(
                {job_id for _, job_id in files},
                ended_before=cutoff,
                redeliver_since=now - REDELIVER_WINDOW,
            )
            going = [path for path, job_id in files if job_id not in keep]
            removed += await asyncio.to_thread(_remove_results, folder, going)
        return removed


def _expired_folders(root: Path, cutoff: datetime) -> dict[Path, list[tuple[Path, int]]]:
    """The day folders wholly before ``cutoff``, each with its result files and their jobs."""
    if not root.is_dir():
        return {}
    found: dict[Path, list[tuple[Path, int]]] = {}
    for folder in root.iterdir():
        if not folder.is_dir() or not DAY_FOLDER.fullmatch(folder.name):
            continue
        try:
            day = date.fromisoformat(folder.name)
        except ValueError:
            continue  # not a date after all (2024-13-45): not ours
        if datetime.combine(day + timedelta(days=1), time(), UTC) > cutoff:
            continue  # a file in it may be younger than the cutoff
        found[folder] = [
            (path, int(match[1]))
            for path in folder.iterdir()
            if (match := RESULT_FILE.fullmatch(path.name))
        ]
    return found


def _remove_results(folder: Path, paths: list[Path]) -> int:
    """Delete ``paths``, then the folder if nothing else is left in it."""
    removed = 0
    for path in paths:
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        removed += 1
    with contextlib.suppress(OSError):  # kept files, or someone else's: the folder stays
        folder.rmdir()
    return removed

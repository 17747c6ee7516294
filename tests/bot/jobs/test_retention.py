"""Retention deletes what is past its days and nothing a job still needs, on the real store
and real folders; its hourly loop outlives a failing pass."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.jobs import housekeeping
from bot.jobs.image_store import ImageStore
from bot.jobs.inputs import InputStore
from bot.jobs.retention import Retention, Swept, files_removed, retention_cutoff
from bot.jobs.service import REDELIVER_WINDOW
from bot.store.models import utcnow
from tests.bot.store.test_repository import UNLIMITED, aged, finished_job, new_job

DAYS = 30


def ref(name: str) -> str:
    """A reference shaped like the input store's own (a content hash)."""
    digest = hashlib.sha256(name.encode()).hexdigest()
    return f"{digest[:2]}/{digest}.png"


def day_folder(images: ImageStore, days_ago: float) -> Path:
    day = (utcnow() - timedelta(days=days_ago)).strftime("%Y-%m-%d")
    folder = images.root / day
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def result_file(images: ImageStore, job_id: int, days_ago: float) -> Path:
    path = day_folder(images, days_ago) / f"job{job_id}_0.png"
    path.write_bytes(b"png")
    return path


async def upload(inputs: InputStore, name: str, days_ago: float) -> Path:
    """A stored upload, last stored or used ``days_ago``."""
    await inputs.write(ref(name), name.encode())
    path = inputs.resolve(ref(name))
    when = (utcnow() - timedelta(days=days_ago)).timestamp()
    os.utime(path, (when, when))
    return path


@pytest.fixture
def stores(tmp_path) -> tuple[ImageStore, InputStore]:
    return ImageStore(tmp_path / "images"), InputStore(tmp_path / "inputs")


async def test_old_results_go_and_live_recent_or_unposted_ones_stay(repo, stores):
    images, inputs = stores
    old = await finished_job(repo, days_ago=40, posted=True)
    old_unposted = await finished_job(repo, days_ago=40, posted=False)  # past redelivery too
    recent = await finished_job(repo, days_ago=10, posted=True)
    # Saved just before midnight, 40 days ago by its folder, but the job ended later: it stays.
    late = await finished_job(repo, days_ago=25, posted=True)
    queued = (await repo.create_job(new_job(), UNLIMITED)).id
    gone = [result_file(images, job, 40) for job in (old, old_unposted)]
    orphan = result_file(images, 999, 40)  # its job was deleted
    kept = [
        result_file(images, recent, 10),
        result_file(images, late, 40),
        result_file(images, queued, 40),  # a queued job is never touched, whatever its files
    ]
    foreign = day_folder(images, 40) / "notes.txt"  # not the bot's: left alone
    foreign.write_text("mine")
    emptied = result_file(images, old, 50).parent  # a day with nothing left to keep

    swept = await Retention(repo, images, inputs, DAYS).sweep()

    assert swept == Swept(images=4, uploads=0)
    assert not any(path.exists() for path in [*gone, orphan])
    assert all(path.exists() for path in kept) and foreign.exists()
    assert not emptied.exists()
    # The rows stay: they are the record /history, Details and /recipe read.
    assert [image.path for image in (await repo.get_job(old)).images] == [f"job{old}_0.png"]
    assert await Retention(repo, images, inputs, DAYS).sweep() == Swept()


async def test_uploads_go_only_when_no_live_or_young_job_uses_them(repo, stores):
    images, inputs = stores
    now = utcnow()
    # The picture of an old inpainting rerolled 5 days ago (rerolls share it), and its masks.
    await finished_job(repo, days_ago=40, posted=True, image_ref=ref("fox"), mask_ref=ref("m1"))
    await finished_job(repo, days_ago=5, posted=True, image_ref=ref("fox"), mask_ref=ref("m2"))
    waiting = await repo.create_job(new_job(image_ref=ref("queued")), UNLIMITED)
    await aged(repo, waiting.id, created=now - timedelta(days=40))
    shared = await upload(inputs, "fox", 40)
    young_mask = await upload(inputs, "m2", 40)
    old_mask = await upload(inputs, "m1", 40)
    of_queued = await upload(inputs, "queued", 40)
    unknown_old = await upload(inputs, "stray", 40)
    # Stored a moment ago for a job whose row the pass did not read: it stays.
    just_stored = await upload(inputs, "new", 0)

    swept = await Retention(repo, images, inputs, DAYS).sweep()

    assert swept == Swept(images=0, uploads=2)
    assert not old_mask.exists() and not unknown_old.exists()
    assert all(path.exists() for path in (shared, young_mask, of_queued, just_stored))


async def test_storing_or_reusing_an_upload_marks_it_used(stores):
    _images, inputs = stores
    path = await upload(inputs, "fox", 40)
    await inputs.write(ref("fox"), b"fox")  # the same picture uploaded again
    assert path.stat().st_mtime > (utcnow() - timedelta(minutes=1)).timestamp()
    await upload(inputs, "fox", 40)
    assert await inputs.touch(ref("fox"))  # a reroll reuses it
    assert path.stat().st_mtime > (utcnow() - timedelta(minutes=1)).timestamp()
    path.unlink()
    assert not await inputs.touch(ref("fox"))


async def test_zero_days_keeps_everything(repo, stores):
    images, inputs = stores
    old = await finished_job(repo, days_ago=400, posted=True)
    path = result_file(images, old, 400)
    stray = await upload(inputs, "stray", 400)
    assert await Retention(repo, images, inputs, 0).sweep() == Swept()
    assert path.exists() and stray.exists()


def test_the_cutoff_is_never_inside_the_redelivery_window():
    now = datetime(2025, 6, 1, tzinfo=UTC)
    assert retention_cutoff(DAYS, now) == now - timedelta(days=DAYS)
    assert retention_cutoff(0, now) is None
    for days in range(1, 3):
        cutoff = retention_cutoff(days, now)
        assert cutoff is not None and cutoff <= now - REDELIVER_WINDOW


async def test_files_removed_says_whether_a_job_is_past_the_retention(repo):
    old = await repo.get_job(await finished_job(repo, days_ago=40, posted=True))
    recent = await repo.get_job(await finished_job(repo, days_ago=10, posted=True))
    assert files_removed(old, DAYS) and not files_removed(recent, DAYS)
    assert not files_removed(old, 0)
    queued = await repo.get_job((await repo.create_job(new_job(), UNLIMITED)).id)
    assert not files_removed(queued, DAYS)


class Failing:
    """A retention whose first pass fails (a locked database, say)."""

    days = DAYS

    def __init__(self) -> None:
        self.passes = 0

    async def sweep(self) -> Swept:
        self.passes += 1
        if self.passes == 1:
            raise RuntimeError("database is locked")
        return Swept(images=1)


class Stop(Exception):
    pass


async def test_a_failing_pass_does_not_stop_the_loop(monkeypatch, caplog):
    retention = Failing()
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2:
            raise Stop  # two rounds are enough to see it carried on

    monkeypatch.setattr(housekeeping.asyncio, "sleep", sleep)
    with pytest.raises(Stop):
        await housekeeping.remove_expired_files(retention)  # type: ignore[arg-type]
    assert retention.passes == 2
    assert waits == [housekeeping.RETENTION_EVERY_S] * 2
    assert "the retention pass failed" in caplog.text


async def test_spooled_pictures_whose_result_never_came_go_after_an_hour(repo, stores):
    images, inputs = stores
    await images.clear_spool()
    stale = images.spool / "job1_0_dead.png"  # its engine died before sending the result
    fresh = images.spool / "job2_0_live.png"  # its result is on its way
    for picture in (stale, fresh):
        picture.write_bytes(b"\x89PNG")
    an_hour_ago = (utcnow() - timedelta(minutes=61)).timestamp()
    os.utime(stale, (an_hour_ago, an_hour_ago))

    # Whatever the policy: 0 keeps results forever, not the engine's leftovers.
    swept = await Retention(repo, images, inputs, 0).sweep()

    assert swept == Swept(spooled=1)
    assert not stale.exists() and fresh.exists()

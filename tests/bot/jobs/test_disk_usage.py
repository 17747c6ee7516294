"""/status's disk figures: measured off the event loop, and kept a minute."""

from __future__ import annotations

from bot.jobs.disk_usage import DiskUsage, DiskUse, FolderUse, folder_use


def test_a_folder_is_its_files_and_their_bytes_and_a_missing_one_is_empty(tmp_path):
    (tmp_path / "2025-01-01").mkdir()
    (tmp_path / "2025-01-01" / "job1_0.png").write_bytes(b"x" * 100)
    (tmp_path / "job2_0.png").write_bytes(b"x" * 20)
    assert folder_use(tmp_path) == FolderUse(files=2, bytes=120)
    assert folder_use(tmp_path / "not-yet") == FolderUse(0, 0)


async def test_the_figure_is_kept_for_a_minute_then_measured_again(tmp_path):
    images, uploads = tmp_path / "images", tmp_path / "inputs"
    images.mkdir()
    (images / "a.png").write_bytes(b"x" * 10)
    now = [0.0]
    usage = DiskUsage(images, uploads, max_age_s=60, clock=lambda: now[0])
    first = await usage.measure()
    assert first == DiskUse(FolderUse(1, 10), FolderUse(0, 0))

    (images / "b.png").write_bytes(b"x" * 5)
    now[0] = 59.0
    assert await usage.measure() == first  # no second walk within the minute
    now[0] = 61.0
    assert await usage.measure() == DiskUse(FolderUse(2, 15), FolderUse(0, 0))

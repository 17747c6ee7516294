"""The image store takes the engine's spooled pictures by moving them, never by copying."""

from __future__ import annotations

import errno
import os

import pytest

from bot.jobs.image_store import ImageStore, SaveFailed
from engine.protocol import SpooledFile

PICTURE = b"\x89PNG" + bytes(range(256)) * 100


def spooled(store: ImageStore, name: str, data: bytes = PICTURE) -> SpooledFile:
    (store.spool / name).write_bytes(data)
    return SpooledFile(name, len(data))


async def test_a_spooled_picture_is_moved_into_place(tmp_path):
    store = ImageStore(tmp_path / "images")
    await store.clear_spool()
    picture = spooled(store, "job3_0_ab12cd34.png")
    inode = (store.spool / picture.name).stat().st_ino

    path = await store.save(3, 0, picture)

    stored = store.resolve(path)
    assert path.endswith("/job3_0.png") and stored.read_bytes() == PICTURE
    assert stored.stat().st_ino == inode  # renamed, not copied
    assert not os.listdir(store.spool)
    assert not store.health.failing


@pytest.mark.parametrize("name", ["../escape.png", "sub/x.png", "..", ".", ""])
async def test_a_name_that_is_not_a_file_in_the_spool_is_refused(tmp_path, name):
    store = ImageStore(tmp_path / "images")
    await store.clear_spool()
    outside = tmp_path / "images" / "escape.png"
    outside.write_bytes(b"not the engine's")
    (store.spool / "sub").mkdir()
    (store.spool / "sub" / "x.png").write_bytes(PICTURE)

    with pytest.raises(SaveFailed, match="is not a file in the spool"):
        await store.save(3, 0, SpooledFile(name, 1))
    assert outside.read_bytes() == b"not the engine's"
    assert (store.spool / "sub" / "x.png").exists()
    assert store.health.failing  # admins see it in /status


async def test_a_spooled_file_that_is_gone_fails_the_save_plainly(tmp_path):
    store = ImageStore(tmp_path / "images")
    await store.clear_spool()
    with pytest.raises(SaveFailed) as raised:
        await store.save(3, 0, SpooledFile("job3_0_gone.png", 10))
    assert f"[Errno {errno.ENOENT}]" in raised.value.failure.cause
    assert "job3_0_gone.png" in raised.value.failure.cause
    assert not list(store.root.rglob("job3_0.png"))


async def test_the_spool_is_emptied_before_the_engine_starts(tmp_path):
    store = ImageStore(tmp_path / "images")
    await store.clear_spool()
    spooled(store, "job1_0_left.png")
    (store.spool / "job1_1_half.png").write_bytes(PICTURE[:10])
    await store.clear_spool()
    assert store.spool.is_dir() and not os.listdir(store.spool)


async def test_discard_removes_spooled_files_only(tmp_path):
    store = ImageStore(tmp_path / "images")
    await store.clear_spool()
    kept = spooled(store, "job2_0_keep.png")
    dropped = spooled(store, "job1_0_drop.png")
    await store.discard([dropped, b"bytes in hand", SpooledFile("../escape.png", 1)])
    assert os.listdir(store.spool) == [kept.name]

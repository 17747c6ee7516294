"""Result pictures spooled to the bot's disk instead of piped (engine.spool)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from engine.protocol import (
    Accepted,
    GeneratedImage,
    MaskOverlay,
    Result,
    SpooledFile,
    decode,
    encode,
    read_message,
)
from engine.spool import spool_pictures

ROOT = Path(__file__).resolve().parents[2]
PICTURE = bytes(range(256)) * 3000  # 768 KB, about a 512x512 result's PNG


def a_result(job_id: int = 7) -> Result:
    return Result(
        job_id=job_id,
        images=(
            GeneratedImage(seed=1, png=PICTURE, nsfw=False),
            GeneratedImage(seed=2, png=b"blurred", nsfw=True, original_png=PICTURE[::-1]),
        ),
        model_revision="abc123",
        seconds=1.5,
        mask_overlay=MaskOverlay(png=b"outline", nsfw=False),
    )


def test_each_picture_is_written_to_the_spool_and_only_its_name_is_framed(tmp_path):
    spooled = spool_pictures(a_result(), tmp_path)
    assert isinstance(spooled, Result)

    names = []
    for image, picture in zip(spooled.images, (PICTURE, b"blurred"), strict=True):
        assert isinstance(image.png, SpooledFile)
        assert image.png.size == len(picture)
        assert (tmp_path / image.png.name).read_bytes() == picture
        names.append(image.png.name)
    assert sorted(os.listdir(tmp_path)) == sorted(names)
    # What the moderators and the outline need travels as before.
    assert spooled.images[1].original_png == PICTURE[::-1]
    assert spooled.mask_overlay == MaskOverlay(png=b"outline", nsfw=False)

    body = encode(spooled)
    assert len(body) < 2 * len(PICTURE)  # the original's bytes only, not the picture's
    assert decode(body) == spooled


def test_a_job_run_twice_gets_new_files(tmp_path):
    # After an engine restart a job runs again; its first run's file may still be there.
    first = spool_pictures(a_result(), tmp_path)
    second = spool_pictures(a_result(), tmp_path)
    assert isinstance(first, Result) and isinstance(second, Result)
    first_names = {i.png.name for i in first.images if isinstance(i.png, SpooledFile)}
    second_names = {i.png.name for i in second.images if isinstance(i.png, SpooledFile)}
    assert len(first_names) == len(second_names) == 2
    assert not first_names & second_names
    assert len(os.listdir(tmp_path)) == 4


def test_a_picture_that_cannot_be_written_travels_in_the_frame(tmp_path):
    gone = tmp_path / "no such folder"
    result = a_result()
    assert spool_pictures(result, gone) == result
    assert not gone.exists()


def test_other_events_pass_as_they_are(tmp_path):
    assert spool_pictures(Accepted(job_id=3), tmp_path) == Accepted(job_id=3)
    assert not os.listdir(tmp_path)


def test_pictures_and_spooled_files_both_decode_to_what_was_sent():
    result = Result(
        job_id=1,
        images=(
            GeneratedImage(seed=1, png=SpooledFile("job1_0_ab.png", 10), nsfw=False),
            GeneratedImage(seed=2, png=b"bytes", nsfw=False),
        ),
        model_revision=None,
        seconds=0.0,
    )
    assert decode(encode(result)) == result


CHILD = """
import os, sys
from pathlib import Path
from engine.process import FrameWriter, _claim_stdout
from engine.protocol import GeneratedImage, Result
writer = FrameWriter(_claim_stdout(), Path(sys.argv[1]))
writer.write(Result(5, (GeneratedImage(9, b"\\x89PNG" * 1000, False),), None, 0.1))
writer.close()
"""


def test_the_engine_process_writes_its_frames_with_the_pictures_spooled(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        timeout=60,
        check=True,
    )
    message = read_message(io.BytesIO(done.stdout))
    assert isinstance(message, Result)
    (image,) = message.images
    assert isinstance(image.png, SpooledFile)
    assert (tmp_path / image.png.name).read_bytes() == b"\x89PNG" * 1000
    assert len(done.stdout) < 1000  # the name went through the pipe, not the picture

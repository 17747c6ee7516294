"""Uploads are decoded in worker processes, bounded in CPU time and in number (issue 15, item 1)."""

from __future__ import annotations

import asyncio
import struct
import time
from dataclasses import dataclass

import pytest
from PIL import Image

from bot.jobs import inputs
from bot.jobs.decoding import TOO_MANY, TOO_SLOW, DecodedUploads, PictureDecoder
from bot.jobs.job_request import Uploads
from bot.jobs.uploads import read_uploads
from bot.ui.errors import UserFacingError, UserInputError
from tests.bot.pictures import box_mask, encode, scene

pytestmark = pytest.mark.timeout(120)


def _segments(data: bytes) -> list[tuple[int, bytes]]:
    """A JPEG's marker segments after SOI, each with its bytes; a scan with its entropy data."""
    found, at = [], 2
    while data[at + 1] != 0xD9:  # EOI
        marker = data[at + 1]
        (length,) = struct.unpack(">H", data[at + 2 : at + 4])
        end = at + 2 + length
        if marker == 0xDA:  # the scan's data runs to the next marker (not a stuffed 0 or RSTn)
            while data[end] != 0xFF or data[end + 1] == 0 or 0xD0 <= data[end + 1] <= 0xD7:
                end += 2 if data[end] == 0xFF else 1
        found.append((marker, data[at:end]))
        at = end
    return found


def repeated_scan_jpeg(side: int = 2048, repeats: int = 3000) -> bytes:
    """A progressive JPEG whose last scan is repeated ``repeats`` times: a few bytes each, but
    every repeat is a pass over all the picture's blocks. Valid headers, a small file, and
    seconds of CPU to decode (25,000 repeats, 404 KB, took 69 s)."""
    progressive = encode(Image.new("L", (side, side), 128), "JPEG", progressive=True)
    segments = _segments(progressive)
    last_scan = [data for marker, data in segments if marker == 0xDA][-1]
    body = b"".join(data for _, data in segments)
    return b"\xff\xd8" + body + last_scan * repeats + b"\xff\xd9"


@dataclass
class Attached:
    """What ``download`` needs of a ``discord.Attachment``."""

    data: bytes

    async def read(self) -> bytes:
        return self.data


def uploads(image: bytes, mask: bytes | None = None, words: str | None = None) -> Uploads:
    mask_file = Attached(mask) if mask is not None else None
    return Uploads(Attached(image), mask_file, words)  # type: ignore[arg-type]


async def test_a_picture_that_takes_too_long_to_decode_is_refused() -> None:
    decoder = PictureDecoder(cpu_limit_s=1)
    slow = repeated_scan_jpeg()
    assert len(slow) < 100_000 and inputs.header_size(slow, "JPEG") == (2048, 2048)
    try:
        started = time.monotonic()
        with pytest.raises(UserInputError) as refused:
            await read_uploads(uploads(slow, words="the sky"), decoder)
        assert str(refused.value) == TOO_SLOW
        assert time.monotonic() - started < 30  # unbounded, it decodes for several seconds

        # A fresh worker reads the next picture.
        read = await read_uploads(uploads(encode(scene((96, 64))), words="the sky"), decoder)
        assert read.fields["width"] == 768 and read.fields["height"] == 512
    finally:
        decoder.close()


async def test_decoded_pictures_are_the_ones_the_inputs_make() -> None:
    image, mask = scene((96, 64)), box_mask((96, 64), (10, 10, 40, 40))
    image_data, mask_data = encode(image), encode(mask)
    decoder = PictureDecoder(cpu_limit_s=30)
    try:
        decoded = await decoder.decode(image_data, mask_data, None)
        # Refusals cross the process boundary as they are.
        with pytest.raises(UserInputError, match="must be a PNG, JPEG or WebP"):
            await decoder.decode(b"not a picture", None, "the sky")
    finally:
        decoder.close()
    fitted = inputs.prepare_inputs(image_data, mask_data, None)
    assert fitted.mask is not None
    expected = [inputs.named_png(fitted.image), inputs.named_png(fitted.mask)]
    assert decoded == DecodedUploads((768, 512), expected)


async def test_when_every_worker_is_busy_a_request_is_refused() -> None:
    decoder = PictureDecoder(cpu_limit_s=1, workers=1, wait_s=0.2)
    try:
        slow = asyncio.create_task(decoder.decode(repeated_scan_jpeg(), None, "the sky"))
        await asyncio.sleep(0.05)
        with pytest.raises(UserFacingError) as busy:
            await decoder.decode(encode(scene()), None, "the sky")
        assert str(busy.value) == TOO_MANY
        with pytest.raises(UserInputError, match="took too long"):
            await slow
    finally:
        decoder.close()

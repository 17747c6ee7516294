"""Frames between the bot and the engine: JSON for the fields, pictures raw beside it."""

from __future__ import annotations

import asyncio
import io
import json
import random
import struct

import pytest

from engine.protocol import (
    Accepted,
    DepthMap,
    GeneratedImage,
    MaskOverlay,
    Progress,
    Result,
    SafetyVerdict,
    decode,
    encode,
    frame,
    read_message,
    read_message_async,
)

# Bytes that are not valid UTF-8, with every byte value: the raw part must carry them as is.
PICTURE = bytes(range(256)) * 400 + random.Random(0).randbytes(50_000)


def a_result() -> Result:
    return Result(
        job_id=7,
        images=(
            GeneratedImage(seed=1, png=PICTURE, nsfw=False, verdict=SafetyVerdict(first=False)),
            GeneratedImage(seed=2, png=b"blurred", nsfw=True, original_png=PICTURE[::-1]),
            GeneratedImage(seed=3, png=b"", nsfw=False),
        ),
        model_revision="abc123",
        seconds=1.5,
        mask_overlay=MaskOverlay(png=b"outline", nsfw=False),
        depth_map=DepthMap(png=PICTURE[:999], nsfw=True),
    )


def test_every_bytes_field_comes_back_exactly() -> None:
    result = a_result()
    assert decode(encode(result)) == result
    progress = Progress(job_id=7, step=3, total_steps=10, preview_png=PICTURE[:5000])
    assert decode(encode(progress)) == progress
    assert decode(encode(Accepted(job_id=7))) == Accepted(job_id=7)


def test_the_pictures_stay_out_of_the_json() -> None:
    # Base64 in a JSON string cost the bot ~2 ms to decode per 512x512 result; the JSON part
    # now holds only where each picture lies in the raw part after it.
    body = encode(a_result())
    (length,) = struct.unpack_from(">I", body)
    text = body[4 : 4 + length]
    assert length < 1000
    data = json.loads(text)
    first = data["images"][0]["png"]
    offset, size = first["$bytes"]
    raw = body[4 + length :]
    assert raw[offset : offset + size] == PICTURE
    assert len(body) < 4 + length + 3 * len(PICTURE)  # no picture travels twice


def test_a_bytes_field_pointing_outside_its_frame_is_refused() -> None:
    body = encode(Progress(job_id=1, step=1, total_steps=2, preview_png=b"tiny"))
    (length,) = struct.unpack_from(">I", body)
    data = json.loads(body[4 : 4 + length])
    data["preview_png"] = {"$bytes": [0, 5]}  # one byte past the raw part
    text = json.dumps(data).encode()
    with pytest.raises(ValueError, match="outside"):
        decode(struct.pack(">I", len(text)) + text + b"tiny")
    with pytest.raises(ValueError, match="past its body"):
        decode(struct.pack(">I", 1000) + text)


def test_frames_read_back_in_order_from_a_stream_and_a_pipe() -> None:
    messages = [Accepted(job_id=7), a_result(), Progress(job_id=8, step=1, total_steps=1)]
    stream = io.BytesIO(b"".join(frame(m) for m in messages))
    assert [read_message(stream) for _ in messages] == messages
    assert read_message(stream) is None

    async def read_all() -> list[object]:
        reader = asyncio.StreamReader()
        reader.feed_data(b"".join(frame(m) for m in messages))
        reader.feed_eof()
        return [await read_message_async(reader) for _ in range(len(messages) + 1)]

    assert asyncio.run(read_all()) == [*messages, None]

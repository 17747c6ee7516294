"""Pictures for /inpaint tests, as the bytes a user would attach."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image, ImageDraw


def encode(picture: Image.Image, format: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format=format, **options)
    return buffer.getvalue()


def scene(size: tuple[int, int] = (96, 64)) -> Image.Image:
    """A small RGB picture with some structure: sky, ground and a sun."""
    width, height = size
    picture = Image.new("RGB", size, (70, 130, 200))
    draw = ImageDraw.Draw(picture)
    draw.rectangle((0, height * 2 // 3, width, height), fill=(60, 150, 60))
    draw.ellipse((width // 8, height // 8, width // 3, height // 2), fill=(250, 210, 60))
    return picture


def box_mask(size: tuple[int, int], box: tuple[int, int, int, int]) -> Image.Image:
    """Black with a white box: repaint the box."""
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle(box, fill=255)
    return mask


def with_hole(picture: Image.Image, box: tuple[int, int, int, int]) -> Image.Image:
    """The picture as RGBA, fully transparent inside ``box``."""
    holed = picture.convert("RGBA")
    alpha = Image.new("L", picture.size, 255)
    ImageDraw.Draw(alpha).rectangle(box, fill=0)
    holed.putalpha(alpha)
    return holed


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def decompression_bomb(width: int = 9000, height: int = 9000) -> bytes:
    """A valid PNG of ``width``×``height`` black pixels: a few hundred KB that decode to
    ``3 × width × height`` bytes (243 MB at the default size)."""
    compressor = zlib.compressobj(1)
    row = b"\0" * (1 + width * 3)  # filter byte + RGB
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", data)
        + _chunk(b"IEND", b"")
    )


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width``×``height`` and holds no pixels: Pillow reads the size from
    the header alone."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IEND", b"")


def with_exif(format: str, exif: bytes) -> bytes:
    """The scene as ``format`` (PNG or WEBP) carrying ``exif`` as its EXIF block, verbatim."""
    if format == "WEBP":
        return encode(scene(), "WEBP", exif=exif)
    png = encode(scene())
    after_header = 8 + 8 + 13 + 4  # signature, then the IHDR chunk: length, type, data, CRC
    return png[:after_header] + _chunk(b"eXIf", exif) + png[after_header:]


def exif_block(*entries: tuple[int, int, int, int]) -> bytes:
    """A little-endian TIFF header and one directory of ``(tag, type, count, value)``."""
    directory = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHII", *entry) for entry in entries
    )
    return b"II*\x00" + struct.pack("<I", 8) + directory + b"\0\0\0\0"


def png16(samples: np.ndarray, transparent: tuple[int, ...] | None = None) -> bytes:
    """A 16-bit PNG of ``samples`` (height × width, or × 2, 3 or 4 channels: grey, grey and
    alpha, RGB, RGBA), with ``transparent`` as its tRNS colour key when given."""
    height, width = samples.shape[:2]
    channels = 1 if samples.ndim == 2 else samples.shape[2]
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = b"".join(b"\0" + samples[y].astype(">u2").tobytes() for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    key = (
        b""
        if transparent is None
        else _chunk(b"tRNS", struct.pack(f">{len(transparent)}H", *transparent))
    )
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + key
        + _chunk(b"IDAT", zlib.compress(rows))
        + _chunk(b"IEND", b"")
    )

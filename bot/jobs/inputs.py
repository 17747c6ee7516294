"""The pictures users attach to /inpaint and /imagine: checked, normalised and stored before a
job exists.

Every check runs before anything is queued or written, with a message in the user's terms:
the type by its first bytes (not by the name or the declared type), the byte count, and the
pixel count read from the header before any decoding, so a small file that inflates to
gigabytes (a decompression bomb) is refused cheaply. The area to repaint comes from exactly
one of three sources: a mask picture (white = repaint), the image's own transparency
(transparent = repaint), or words that the engine turns into a mask (CLIPSeg).

What is stored is what the engine will use: the image as RGB at the size the job runs at, and
the mask as black and white at the same size, as PNGs named by their content hash. The job
row keeps only those names, so a job can run again after a restart, and a reroll reads the
same bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import math
import os
import re
import struct
import tempfile
import warnings
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from bot.ui.errors import UserInputError
from engine.protocol import BOUNDS

MAX_INPUT_BYTES = 20 * 1024 * 1024
MAX_INPUT_PIXELS = 16_000_000
MIN_INPUT_SIDE = 64
# Stable Diffusion 1.x and 2.x inpainting models work at 512 px; the shorter side goes there,
# the longer one at most to twice that, SD 1.x's longest size. SDXL and FLUX.1 jobs may be
# larger (``BOUNDS.side``), but uploads are fitted the same way on every family for now.
FIT_SIDE = 512
MAX_FIT_SIDE = 2 * FIT_SIDE
MIN_FIT_SIDE = BOUNDS.side.min
MULTIPLE = BOUNDS.side_multiple  # the VAE's downscale factor: sides must be multiples of it
# Shapes closer than this (relative) count as the same aspect; a mask drawn on a screenshot or
# exported at another scale is off by a pixel or two.
ASPECT_TOLERANCE = 0.01
# Where a transparent pixel is repainted, it is first filled with this neutral grey.
FILL = (128, 128, 128)

# EXIF's orientation tag, and the turn each of its values asks for (1 is upright already).
_ORIENTATION = 0x0112
_TURNS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# What Pillow's EXIF parser raises on a damaged block: "not a TIFF file" is a SyntaxError, a
# truncated entry a struct.error; offsets and counts out of range give the others.
_DAMAGED_EXIF = (SyntaxError, struct.error, ValueError, TypeError, OSError, EOFError, IndexError)

ALLOWED = "PNG, JPEG or WebP"
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
)
_REF = re.compile(r"[0-9a-f]{2}/[0-9a-f]{64}\.png")

HOW_TO_MASK = (
    "attach a `mask` picture (white = repaint, black = keep), make that area of the image "
    "transparent, or describe it in `mask_prompt` (for example “the background”)"
)
NO_MASK = f"Say which part of the image to repaint: {HOW_TO_MASK}."


def more_than_one_mask(given: list[str]) -> str:
    """The refusal when the area to repaint was given in several ways."""
    listed = " and ".join(given)
    return (
        f"Give the area to repaint in one way only; you gave {listed}. Use a mask picture, "
        "a transparent area in the image, or mask_prompt words — not several."
    )


def _megabytes(count: int) -> str:
    # Rounded up, so a file just over the limit never reads as equal to it.
    tenths = math.ceil(count * 10 / 1024 / 1024)
    return f"{tenths // 10} MB" if tenths % 10 == 0 else f"{tenths / 10:.1f} MB"


def _megapixels(count: int) -> str:
    return f"{count / 1_000_000:g} megapixels"


def sniff_format(data: bytes) -> str | None:
    """PNG, JPEG or WEBP from a file's first bytes; None for anything else."""
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def header_size(data: bytes, kind: str) -> tuple[int, int] | None:
    """The width and height a PNG, JPEG or WebP header claims, read without Pillow (which
    refuses to open a picture past its own pixel limit); None when the header is unreadable."""
    try:
        if kind == "PNG" and data[12:16] == b"IHDR":
            return struct.unpack(">II", data[16:24])
        if kind == "JPEG":
            return _jpeg_size(data)
        if kind == "WEBP":
            chunk = data[12:16]
            if chunk == b"VP8X":  # 24-bit canvas size minus one
                return (
                    int.from_bytes(data[24:27], "little") + 1,
                    int.from_bytes(data[27:30], "little") + 1,
                )
            if chunk == b"VP8L":  # 14-bit sizes minus one, after a signature byte
                bits = int.from_bytes(data[21:25], "little")
                return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
            if chunk == b"VP8 ":  # after a frame tag and a start code
                width, height = struct.unpack("<HH", data[26:30])
                return width & 0x3FFF, height & 0x3FFF
    except struct.error:
        return None
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """The size in a JPEG's start-of-frame segment (any SOFn but DHT, JPG and DAC)."""
    at = 2
    while at + 9 <= len(data) and data[at] == 0xFF:
        marker = data[at + 1]
        (length,) = struct.unpack(">H", data[at + 2 : at + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            return width, height
        at += 2 + length
    return None


def check_declared_size(size: int, what: str) -> None:
    """Refuse an attachment by the size Discord reports, before downloading it."""
    if size > MAX_INPUT_BYTES:
        raise UserInputError(
            f"The {what} is {_megabytes(size)}; the most is {_megabytes(MAX_INPUT_BYTES)}."
        )


def open_picture(data: bytes, what: str, min_side: int = MIN_INPUT_SIDE) -> Image.Image:
    """Decode an attached picture after checking its type, bytes and (header) pixel count."""
    check_declared_size(len(data), what)
    kind = sniff_format(data)
    if kind is None:
        raise UserInputError(f"The {what} must be a {ALLOWED} picture; this file is not one.")
    try:
        with warnings.catch_warnings():
            # Pillow warns above ~89 MP; we refuse far below that ourselves.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            picture = Image.open(io.BytesIO(data), formats=[kind])
    except Image.DecompressionBombError:
        # Pillow refuses the header itself past its own limit; say the size all the same.
        size = header_size(data, kind)
        shown = f"is {size[0]}×{size[1]} pixels" if size else "has far too many pixels"
        raise UserInputError(
            f"The {what} {shown}; the most is {_megapixels(MAX_INPUT_PIXELS)}."
        ) from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise UserInputError(f"The {what} could not be read; the file may be damaged.") from None
    width, height = picture.size  # from the header: nothing is decoded yet
    if width * height > MAX_INPUT_PIXELS:
        raise UserInputError(
            f"The {what} is {width}×{height} pixels; the most is {_megapixels(MAX_INPUT_PIXELS)}."
        )
    if min(width, height) < min_side:
        raise UserInputError(
            f"The {what} is {width}×{height} pixels; it needs at least {min_side} on each side."
        )
    try:
        picture.load()
    except (OSError, ValueError, SyntaxError):
        raise UserInputError(f"The {what} could not be read; the file may be damaged.") from None
    sixteen_bit = kind == "PNG" and data[24:25] == b"\x10"  # the IHDR's bit depth
    return _eight_bit(_upright(picture, what), sixteen_bit=sixteen_bit)


def _upright(picture: Image.Image, what: str) -> Image.Image:
    """The picture turned the way its EXIF orientation says (phone photos are stored sideways
    with a note saying how to turn them); refused when that note cannot be read.

    Only the orientation is read, not rewritten: ``ImageOps.exif_transpose`` would also write
    the whole block back, which fails on tags it could read but not write, and nothing here
    keeps metadata anyway.
    """
    try:
        orientation = picture.getexif().get(_ORIENTATION)
    except _DAMAGED_EXIF:
        raise UserInputError(
            f"The {what}'s EXIF data (the notes a camera adds, such as which way is up) is "
            "damaged and cannot be read. Save the picture again, for example as a new PNG "
            "or a screenshot, and attach that."
        ) from None
    turn = _TURNS.get(orientation) if isinstance(orientation, int) else None
    return picture if turn is None else picture.transpose(turn)


def _eight_bit(picture: Image.Image, *, sixteen_bit: bool) -> Image.Image:
    """A 16-bit PNG as the 8-bit picture it shows, with its transparency kept.

    Pillow opens a 16-bit grey PNG as 32-bit integers ("I;16"), which it converts to RGB by
    clipping at 255: almost every grey would turn white. A 16-bit colour PNG it reads as 8-bit
    RGB (the high byte of each sample) but leaves its transparent colour (tRNS) in 16 bits, so
    no pixel matched it and the transparent area was lost.
    """
    key = picture.info.get("transparency")
    if picture.mode in ("I", "I;16", "I;16B", "I;16L"):
        # Imported here: 16-bit grey uploads are rare, and numpy costs the bot's long-lived
        # process 10 MiB resident (docs/performance.md, "Bot under a burst").
        import numpy as np

        samples = np.asarray(picture).astype(np.uint32)
        # The high byte, as Pillow reduces 16-bit colour and alpha.
        grey = Image.fromarray((samples >> 8).astype(np.uint8), "L")
        if not isinstance(key, int):
            return grey
        alpha = Image.fromarray(np.where(samples == key, 0, 255).astype(np.uint8), "L")
        return Image.merge("LA", (grey, alpha))
    if sixteen_bit and picture.mode == "RGB" and isinstance(key, tuple):
        # Pillow kept only the high byte of each sample, so the key is matched on that byte.
        picture.info["transparency"] = tuple(value >> 8 for value in key)
    return picture


def fitted_size(width: int, height: int) -> tuple[int, int]:
    """The job's size for a picture: shorter side at 512 (longer side at most 1024), keeping the
    aspect, each side a multiple of 8."""
    scale = min(FIT_SIDE / min(width, height), MAX_FIT_SIDE / max(width, height))

    def side(pixels: int) -> int:
        return max(MULTIPLE, round(pixels * scale / MULTIPLE) * MULTIPLE)

    fitted = side(width), side(height)
    if min(fitted) < MIN_FIT_SIDE:
        longest = MAX_FIT_SIDE // MIN_FIT_SIDE
        raise UserInputError(
            f"The image is {width}×{height} pixels, too long and thin: the longer side may be "
            f"at most {longest} times the shorter."
        )
    return fitted


def _has_alpha(picture: Image.Image) -> bool:
    return picture.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in picture.info


def transparent_area(picture: Image.Image) -> Image.Image | None:
    """White where the picture is (mostly) transparent, as an L image; None when nowhere."""
    if not _has_alpha(picture):
        return None
    alpha = picture.convert("RGBA").getchannel("A")
    area = alpha.point(lambda value: 255 if value < 128 else 0)
    return area if area.getbbox() is not None else None


def _flatten(picture: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """RGB, with any transparency filled with ``background``."""
    if not _has_alpha(picture):
        return picture.convert("RGB")
    under = Image.new("RGBA", picture.size, (*background, 255))
    return Image.alpha_composite(under, picture.convert("RGBA")).convert("RGB")


def _binary(mask: Image.Image) -> Image.Image:
    return mask.point(lambda value: 255 if value >= 128 else 0)


def _same_aspect(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return abs(a[0] / a[1] - b[0] / b[1]) <= ASPECT_TOLERANCE * (b[0] / b[1])


@dataclass(frozen=True)
class InpaintInputs:
    """What a job runs on: the image (RGB) and the mask (L, 0 or 255; None when the mask
    comes from words), both at ``size``."""

    image: Image.Image
    mask: Image.Image | None

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size


def prepare_inputs(
    image_data: bytes, mask_data: bytes | None, mask_prompt: str | None
) -> InpaintInputs:
    """Check and normalise an /inpaint request's pictures; ``UserInputError`` when refused.

    Blocking, and as slow as the pictures make it: the bot runs it in a worker process, bounded
    in CPU time (``bot.jobs.decoding``).
    """
    picture = open_picture(image_data, "image")
    transparent = transparent_area(picture)
    given = [
        name
        for name, present in (
            ("a mask picture", mask_data is not None),
            ("an image with transparent areas", transparent is not None),
            ("mask_prompt words", bool(mask_prompt)),
        )
        if present
    ]
    if not given:
        raise UserInputError(NO_MASK)
    if len(given) > 1:
        raise UserInputError(more_than_one_mask(given))

    area: Image.Image | None = transparent
    if mask_data is not None:
        mask = open_picture(mask_data, "mask", min_side=1)  # a small mask is scaled up
        if mask.size != picture.size:
            if not _same_aspect(mask.size, picture.size):
                raise UserInputError(
                    f"The mask is {mask.size[0]}×{mask.size[1]} pixels and the image "
                    f"{picture.size[0]}×{picture.size[1]}: their shapes differ, so the mask "
                    "cannot line up. Make the mask from the image (a mask of the same shape "
                    "at another size is fine)."
                )
            mask = mask.resize(picture.size, Image.Resampling.BILINEAR)
        # A mask drawn in white on a transparent layer counts its transparent part as black.
        area = _binary(_flatten(mask, (0, 0, 0)).convert("L"))
        if area.getbbox() is None:
            raise UserInputError(
                "The mask is all black, so there is nothing to repaint "
                "(white = repaint, black = keep)."
            )

    size = fitted_size(*picture.size)
    image = _flatten(picture, FILL).resize(size, Image.Resampling.LANCZOS)
    if area is None:
        return InpaintInputs(image, None)
    fitted_area = _binary(area.resize(size, Image.Resampling.BILINEAR))
    if fitted_area.getbbox() is None:
        raise UserInputError(
            "The area to repaint is too small to survive resizing the image to "
            f"{size[0]}×{size[1]}; make it a little larger."
        )
    return InpaintInputs(image, fitted_area)


def prepare_start_picture(image_data: bytes) -> InpaintInputs:
    """Check and normalise an image-to-image picture (the whole of it is the starting point,
    so no mask); ``UserInputError`` when refused. Blocking, like ``prepare_inputs``."""
    picture = open_picture(image_data, "image")
    size = fitted_size(*picture.size)
    return InpaintInputs(_flatten(picture, FILL).resize(size, Image.Resampling.LANCZOS), None)


def start_picture_from_result(png: bytes) -> tuple[str, bytes]:
    """A result of the bot's own (already at a job's size) as an input: its pixels as RGB
    without the metadata, named by content (``named_png``). Blocking."""
    with Image.open(io.BytesIO(png)) as picture:
        return named_png(picture.convert("RGB"))


def png_bytes(picture: Image.Image) -> bytes:
    """PNG bytes without metadata: the same picture always gives the same bytes."""
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def named_png(picture: Image.Image) -> tuple[str, bytes]:
    """The picture's PNG bytes and the reference they are stored under (their content hash)."""
    data = png_bytes(picture)
    digest = hashlib.sha256(data).hexdigest()
    return f"{digest[:2]}/{digest}.png", data


class InputStore:
    """Normalised inputs on disk, named by content hash: ``ab/abcdef….png`` under ``root``.

    The same picture uploaded twice is stored once. Files are written to a temporary name and
    renamed, so the engine never reads half a file. A file's modification time says when a job
    last stored or reused it (``write`` and ``touch`` refresh it): retention
    (``bot.jobs.retention``) deletes only files unused since before the job rows it read, so a
    job written meanwhile never loses its picture.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    async def save(self, picture: Image.Image) -> str:
        """Store ``picture`` as PNG; returns its reference (a path relative to the root)."""
        ref, data = await self.encode(picture)
        await self.write(ref, data)
        return ref

    async def encode(self, picture: Image.Image) -> tuple[str, bytes]:
        """The reference and the bytes ``picture`` would be stored as, without storing it."""
        return await asyncio.to_thread(named_png, picture)

    async def write(self, ref: str, data: bytes) -> None:
        """Store ``data`` under ``ref`` (from :meth:`encode`); nothing to do if it is there."""
        await asyncio.to_thread(self._write, ref, data)

    def _write(self, ref: str, data: bytes) -> None:
        path = self.resolve(ref)
        if self._touch(path):
            return  # stored already (by another job); now marked as used again
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(data)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    async def touch(self, ref: str) -> bool:
        """Mark a stored file as used now (a reroll reuses it); False when it is gone."""
        return await asyncio.to_thread(self._touch, self.resolve(ref))

    @staticmethod
    def _touch(path: Path) -> bool:
        try:
            os.utime(path)
        except FileNotFoundError:
            return False
        return True

    async def remove_unused(
        self, refs: Iterable[str] | None, *, keep: Collection[str], unused_since: float
    ) -> list[str]:
        """Delete ``refs`` (None: every file stored here, and leftover temporary files) except
        those in ``keep`` and those stored or used at or after ``unused_since`` (a
        ``time.time()``); returns the references deleted."""
        return await asyncio.to_thread(self._remove_unused, refs, keep, unused_since)

    def _remove_unused(
        self, refs: Iterable[str] | None, keep: Collection[str], unused_since: float
    ) -> list[str]:
        if refs is None:
            paths = [*self.root.glob("??/*.png"), *self.root.glob("??/*.tmp")]
        else:
            paths = [self.resolve(ref) for ref in refs]
        removed = []
        for path in paths:
            ref = path.relative_to(self.root).as_posix()
            if ref in keep:
                continue
            try:
                if path.stat().st_mtime >= unused_since:
                    continue  # stored or reused by a job the caller's rows may not show
                path.unlink()
            except FileNotFoundError:
                continue
            removed.append(ref)
        return removed

    def resolve(self, ref: str) -> Path:
        """The file of a reference; refuses anything but a reference this store made."""
        if not _REF.fullmatch(ref):
            raise ValueError(f"{ref!r} is not an input reference")
        path = (self.root / ref).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"{ref!r} is outside the input folder")
        return path

"""/inpaint's input checks and storage, without Discord."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageFile

from bot.jobs import inputs
from bot.ui.errors import UserInputError
from tests.bot.pictures import (
    box_mask,
    decompression_bomb,
    encode,
    exif_block,
    png16,
    png_header_only,
    scene,
    with_exif,
    with_hole,
)


def refusal(*args: object, call=inputs.prepare_inputs) -> str:
    with pytest.raises(UserInputError) as refused:
        call(*args)
    return str(refused.value)


def test_types_are_told_by_their_first_bytes():
    picture = scene()
    assert inputs.sniff_format(encode(picture, "PNG")) == "PNG"
    assert inputs.sniff_format(encode(picture, "JPEG")) == "JPEG"
    assert inputs.sniff_format(encode(picture, "WEBP")) == "WEBP"
    assert inputs.sniff_format(encode(picture, "GIF")) is None
    assert inputs.sniff_format(b"<html>not a picture</html>") is None
    # Each allowed type opens.
    for format in ("PNG", "JPEG", "WEBP"):
        assert inputs.open_picture(encode(picture, format), "image").size == (96, 64)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (encode(scene(), "GIF"), "The image must be a PNG, JPEG or WebP picture; this file is not"),
        (b"GIF89a" + b"\0" * 100, "The image must be a PNG, JPEG or WebP picture"),
        (encode(scene((40, 30))), "The image is 40×30 pixels; it needs at least 64 on each side."),
        (encode(scene())[:200], "The image could not be read; the file may be damaged."),
        (
            b"\x89PNG\r\n\x1a\n" + b"\0" * 50,
            "The image could not be read; the file may be damaged.",
        ),
    ],
)
def test_bad_files_are_refused(data: bytes, message: str):
    assert refusal(data, "image", call=inputs.open_picture).startswith(message)


def test_bytes_are_bounded_before_and_after_downloading():
    assert refusal(30 * 1024 * 1024, "mask", call=inputs.check_declared_size) == (
        "The mask is 30 MB; the most is 20 MB."
    )
    inputs.check_declared_size(inputs.MAX_INPUT_BYTES, "image")  # the limit itself is fine
    too_big = encode(scene()) + b"\0" * inputs.MAX_INPUT_BYTES
    assert refusal(too_big, "image", call=inputs.open_picture).startswith(
        "The image is 20.1 MB; the most is 20 MB."
    )


def test_a_decompression_bomb_is_refused_from_its_header_without_decoding(monkeypatch):
    def never(self):
        raise AssertionError("the bomb was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", never)
    message = refusal(decompression_bomb(), "image", call=inputs.open_picture)
    assert message == "The image is 9000×9000 pixels; the most is 16 megapixels."
    # Past Pillow's own bomb limit, Pillow refuses the header itself; the size is still said.
    assert refusal(png_header_only(20_000, 20_000), "image", call=inputs.open_picture) == (
        "The image is 20000×20000 pixels; the most is 16 megapixels."
    )


@pytest.mark.parametrize("kind", ["JPEG", "WEBP", "PNG"])
def test_header_sizes_are_read_without_pillow(kind):
    picture = scene((120, 80))
    out = io.BytesIO()
    picture.save(out, format=kind, **({"lossless": True} if kind == "WEBP" else {}))
    assert inputs.header_size(out.getvalue(), kind) == (120, 80)
    lossy = io.BytesIO()
    if kind == "WEBP":
        picture.save(lossy, format="WEBP", quality=80)
        assert inputs.header_size(lossy.getvalue(), kind) == (120, 80)  # VP8
        extended = io.BytesIO()
        picture.convert("RGBA").save(extended, format="WEBP", exif=Image.Exif().tobytes())
        assert extended.getvalue()[12:16] == b"VP8X"
        assert inputs.header_size(extended.getvalue(), kind) == (120, 80)
    assert inputs.header_size(b"\x89PNG\r\n\x1a\n", kind) is None


def test_phone_photos_are_turned_upright():
    photo = scene((100, 80))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to view
    upright = inputs.open_picture(encode(photo, "JPEG", exif=exif.tobytes()), "image")
    assert upright.size == (80, 100)


DAMAGED_EXIF = "The image's EXIF data (the notes a camera adds, such as which way is up) is damaged"
ORIENTATION, IMAGE_WIDTH = 0x0112, 0x0100  # EXIF tags
ASCII, SHORT = 2, 3  # EXIF value types


@pytest.mark.parametrize("format", ["PNG", "WEBP"])
@pytest.mark.parametrize(
    "exif",
    [
        b"garbage, not TIFF",  # Pillow: SyntaxError("not a TIFF file")
        b"Exif\x00\x00garbage",
        b"MM\x00*\x82p",  # the directory offset cut short: struct.error
    ],
)
def test_a_damaged_exif_block_is_a_clear_refusal(format, exif):
    data = with_exif(format, exif)
    assert refusal(data, "image", call=inputs.open_picture).startswith(DAMAGED_EXIF)
    assert refusal(data, None, "the sky").startswith(DAMAGED_EXIF)


@pytest.mark.parametrize("format", ["PNG", "WEBP"])
def test_an_exif_block_that_reads_but_would_not_write_back_still_turns(format):
    # A valid orientation next to an entry Pillow reads but cannot write back (the image
    # width, a number, stored as the text "AAA"): only the orientation matters here.
    exif = exif_block((ORIENTATION, SHORT, 1, 6), (IMAGE_WIDTH, ASCII, 4, 0x00414141))
    assert inputs.open_picture(with_exif(format, exif), "image").size == (64, 96)


TALL = (64, 96)  # height × width of the 16-bit test pictures
HOLE = (slice(10, 30), slice(20, 50))  # rows 10-29, columns 20-49


def sixteen_bit_holed(channels: int) -> bytes:
    """A 16-bit PNG with a transparent hole at ``HOLE``, by alpha or by colour key."""
    if channels in (2, 4):  # grey + alpha, RGBA
        samples = np.full((*TALL, channels), 40_000, np.uint16)
        samples[..., -1] = 65_535
        samples[(*HOLE, -1)] = 0
        return png16(samples)
    samples = np.full(TALL if channels == 1 else (*TALL, 3), 40_000, np.uint16)
    key = (7,) if channels == 1 else (1, 2, 3)
    samples[HOLE] = key
    return png16(samples, transparent=key)


@pytest.mark.parametrize("channels", [1, 2, 3, 4], ids=["grey", "grey+alpha", "RGB", "RGBA"])
def test_sixteen_bit_pngs_keep_their_transparency_and_their_greys(channels):
    data = sixteen_bit_holed(channels)
    area = inputs.transparent_area(inputs.open_picture(data, "image"))
    assert area is not None and area.getbbox() == (20, 10, 50, 30)
    fitted = inputs.prepare_inputs(data, None, None)
    assert fitted.mask is not None and fitted.mask.getbbox() == (160, 80, 400, 240)
    # 40000 is 156 in 8 bits (its high byte), not clipped to white; the hole is filled grey.
    assert tuple(np.asarray(fitted.image)[400, 700]) == (156, 156, 156)
    assert tuple(np.asarray(fitted.image)[160, 280]) == inputs.FILL


@pytest.mark.parametrize(
    ("size", "fitted"),
    [
        ((512, 512), (512, 512)),
        ((96, 64), (768, 512)),  # small pictures are scaled up to the model's resolution
        ((640, 480), (680, 512)),
        ((4000, 3000), (680, 512)),
        ((1000, 3000), (344, 1024)),  # the longer side stops at 1024
        ((1600, 100), (1024, 64)),
    ],
)
def test_fitted_size_keeps_the_aspect_in_multiples_of_8(size, fitted):
    assert inputs.fitted_size(*size) == fitted
    assert all(side % 8 == 0 for side in fitted)
    assert fitted[0] / fitted[1] == pytest.approx(size[0] / size[1], rel=0.07)


def test_very_long_thin_images_are_refused():
    assert refusal(2000, 100, call=inputs.fitted_size) == (
        "The image is 2000×100 pixels, too long and thin: the longer side may be at most 16 "
        "times the shorter."
    )


def test_a_mask_picture_is_fitted_with_the_image():
    picture = scene()
    fitted = inputs.prepare_inputs(
        encode(picture), encode(box_mask((96, 64), (48, 0, 95, 31))), None
    )
    assert (fitted.image.mode, fitted.image.size) == ("RGB", (768, 512))
    assert (fitted.mask.mode, fitted.mask.size) == ("L", (768, 512))
    mask = np.asarray(fitted.mask)
    assert set(np.unique(mask)) == {0, 255}  # black and white only
    assert mask[100, 600] == 255 and mask[400, 100] == 0
    # The image is the upload, scaled.
    expected = picture.resize((768, 512), Image.Resampling.LANCZOS)
    assert np.array_equal(np.asarray(fitted.image), np.asarray(expected))


def test_a_mask_of_the_same_shape_at_another_size_is_resized():
    for size, box in (((192, 128), (96, 0, 191, 63)), ((48, 32), (24, 0, 47, 15))):
        fitted = inputs.prepare_inputs(encode(scene()), encode(box_mask(size, box)), None)
        assert fitted.mask.size == (768, 512) and np.asarray(fitted.mask)[100, 600] == 255


def test_a_mask_of_another_shape_is_refused():
    mask = box_mask((100, 100), (0, 0, 50, 50))
    assert refusal(encode(scene()), encode(mask), None) == (
        "The mask is 100×100 pixels and the image 96×64: their shapes differ, so the mask "
        "cannot line up. Make the mask from the image (a mask of the same shape at another "
        "size is fine)."
    )


def test_a_white_on_transparent_mask_counts_transparent_as_keep():
    mask = Image.new("RGBA", (96, 64), (0, 0, 0, 0))
    mask.paste((255, 255, 255, 255), (0, 0, 48, 64))
    fitted = inputs.prepare_inputs(encode(scene()), encode(mask), None)
    assert np.asarray(fitted.mask)[:, :384].min() == 255
    assert np.asarray(fitted.mask)[:, 400:].max() == 0


def test_an_all_black_mask_or_a_vanishing_speck_is_refused():
    black = encode(Image.new("L", (96, 64), 0))
    assert refusal(encode(scene()), black, None).startswith("The mask is all black")
    big = scene((4000, 3000))
    speck = Image.new("L", (4000, 3000), 0)
    speck.putpixel((10, 10), 255)
    assert refusal(encode(big), encode(speck), None).startswith(
        "The area to repaint is too small to survive resizing the image to 680×512"
    )


def test_transparency_is_the_mask_and_is_filled_with_grey():
    holed = with_hole(scene(), (0, 0, 47, 63))  # left half transparent
    fitted = inputs.prepare_inputs(encode(holed), None, None)
    mask = np.asarray(fitted.mask)
    assert mask[:, :370].min() == 255 and mask[:, 400:].max() == 0
    assert tuple(np.asarray(fitted.image)[256, 100]) == inputs.FILL


def test_an_opaque_alpha_channel_is_not_a_mask():
    opaque = scene().convert("RGBA")
    assert inputs.transparent_area(opaque) is None
    assert refusal(encode(opaque), None, None) == inputs.NO_MASK


def test_words_leave_the_mask_to_the_engine():
    fitted = inputs.prepare_inputs(encode(scene()), None, "the sky")
    assert fitted.mask is None and fitted.size == (768, 512)


def test_exactly_one_mask_source():
    image, holed = encode(scene()), encode(with_hole(scene(), (0, 0, 10, 10)))
    mask = encode(box_mask((96, 64), (0, 0, 10, 10)))
    assert refusal(image, None, None) == (
        "Say which part of the image to repaint: attach a `mask` picture (white = repaint, "
        "black = keep), make that area of the image transparent, or describe it in "
        "`mask_prompt` (for example “the background”)."
    )
    assert refusal(holed, mask, None) == (
        "Give the area to repaint in one way only; you gave a mask picture and an image with "
        "transparent areas. Use a mask picture, a transparent area in the image, or "
        "mask_prompt words — not several."
    )
    assert "you gave an image with transparent areas and mask_prompt words." in refusal(
        holed, None, "the sky"
    )


async def test_the_store_names_files_by_content_and_refuses_escapes(tmp_path):
    store = inputs.InputStore(tmp_path / "inputs")
    picture = scene()
    ref = await store.save(picture)
    assert ref == await store.save(picture.copy())  # same content, same file
    folder, name = ref.split("/")
    assert name.startswith(folder) and len(name) == 64 + 4
    stored = store.resolve(ref)
    assert stored.parent.parent == tmp_path.resolve() / "inputs"
    with Image.open(stored) as reopened:
        assert np.array_equal(np.asarray(reopened), np.asarray(picture))
    assert list(stored.parent.iterdir()) == [stored]  # no temporary file left behind
    other = await store.save(box_mask((96, 64), (0, 0, 5, 5)))
    assert other != ref
    for bad in ("../secret.png", "/etc/passwd", f"{folder}/../../x.png", "ab/x.png"):
        with pytest.raises(ValueError):
            store.resolve(bad)


def test_png_bytes_are_reproducible():
    picture = scene()
    assert inputs.png_bytes(picture) == inputs.png_bytes(picture.copy())
    with Image.open(io.BytesIO(inputs.png_bytes(picture))) as decoded:
        assert decoded.info.get("parameters") is None


def test_a_start_picture_needs_no_mask_and_is_fitted_like_an_inpainting_one():
    holed = encode(with_hole(scene(), (0, 0, 47, 63)))  # transparency is no mask here
    start = inputs.prepare_start_picture(holed)
    assert start.mask is None and start.size == (768, 512)
    assert np.array_equal(
        np.asarray(start.image), np.asarray(inputs.prepare_inputs(holed, None, None).image)
    )
    with pytest.raises(UserInputError, match="must be a PNG, JPEG or WebP picture"):
        inputs.prepare_start_picture(b"plain text")


def test_a_result_becomes_an_input_without_its_metadata():
    from engine.images.metadata import png_with_parameters

    picture = scene()
    ref, data = inputs.start_picture_from_result(png_with_parameters(picture, "a fox\nSteps: 3"))
    assert (ref, data) == inputs.named_png(picture)  # the pixels only, named by content

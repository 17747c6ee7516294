"""Whatever bytes arrive as an attachment, decoding ends in a picture or a user-facing refusal."""

import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from bot.jobs.inputs import fitted_size, open_picture
from bot.ui.errors import UserInputError
from tests.bot.pictures import encode, scene


def _check(data: bytes) -> None:
    try:
        picture = open_picture(data, "image")
    except UserInputError as error:
        assert "image" in str(error)
        return
    assert picture.width >= 1 and picture.height >= 1


@given(st.binary(max_size=4096))
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_arbitrary_bytes_never_crash(data):
    _check(data)


_VALID = {fmt: encode(scene((96, 64)), fmt) for fmt in ("PNG", "JPEG", "WEBP")}


@given(st.sampled_from(sorted(_VALID)), st.data())
@settings(max_examples=150)
def test_truncated_or_corrupted_pictures_are_refused_or_read(fmt, data):
    original = _VALID[fmt]
    cut = data.draw(st.integers(0, len(original)))
    flips = data.draw(st.lists(st.integers(0, len(original) - 1), max_size=4))
    damaged = bytearray(original[:cut])
    for index in flips:
        if index < len(damaged):
            damaged[index] ^= 0xFF
    _check(bytes(damaged))


def test_whole_pictures_of_each_format_are_read():
    for data in _VALID.values():
        assert open_picture(data, "image").size == (96, 64)


@given(st.integers(64, 4000), st.integers(64, 4000))
def test_fitted_sizes_are_multiples_of_8_and_keep_the_aspect(width, height):
    try:
        fitted = fitted_size(width, height)
    except UserInputError:
        assert max(width, height) / min(width, height) > 8  # only very long and thin ones
        return
    assert fitted[0] % 8 == 0 and fitted[1] % 8 == 0
    assert abs(fitted[0] / fitted[1] - width / height) < 0.1 * (width / height) + 0.05
    Image.new("RGB", fitted).save(io.BytesIO(), "PNG")

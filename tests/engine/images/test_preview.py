"""Latent previews: one linear map, small PNGs, always obscured."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from engine.images.preview import (
    PREVIEW_BLOCKS,
    latents_to_image,
    latents_to_images,
    obscured,
    png_bytes,
)
from tests.engine.helpers import shuffle_within_blocks


def test_preview_size_and_colours() -> None:
    latents = torch.zeros(4, 64, 96)
    image = latents_to_image(latents, max_side=128)
    assert image.size == (96, 64)
    assert image.getpixel((0, 0)) == (127, 127, 127)  # zero latents: mid grey
    small = latents_to_image(torch.randn(4, 128, 128), max_side=64)
    assert small.size == (64, 64)
    with Image.open(io.BytesIO(png_bytes(small))) as decoded:
        assert decoded.format == "PNG"


def test_wrong_shape() -> None:
    with pytest.raises(ValueError, match="expected latents of shape"):
        latents_to_image(torch.zeros(1, 4, 8, 8), max_side=64)


@pytest.mark.parametrize("side", [64, 128])
def test_a_preview_keeps_layout_and_colour_but_nothing_finer_than_its_blocks(side: int) -> None:
    rng = np.random.default_rng(0)
    original = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    original[: side // 2] //= 4  # a dark top half: layout the preview keeps
    shuffled = shuffle_within_blocks(original, side // PREVIEW_BLOCKS)
    assert not np.array_equal(shuffled, original)
    shown = np.asarray(obscured(Image.fromarray(original))).astype(int)
    # Rearranging pixels inside a block changes nothing: no detail finer than a block is left.
    np.testing.assert_array_equal(shown, np.asarray(obscured(Image.fromarray(shuffled))))
    assert shown[: side // 4].mean() < shown[-side // 4 :].mean() - 50
    assert np.abs(np.diff(shown, axis=0)).max() <= 24 and np.abs(np.diff(shown, axis=1)).max() <= 24


def test_a_batch_of_previews_is_the_previews_one_by_one() -> None:
    from engine.images.preview import latents_to_images

    latents = torch.randn(3, 4, 24, 16, generator=torch.Generator().manual_seed(0))
    batch = latents_to_images(latents, max_side=128)
    assert [image.size for image in batch] == [(16, 24)] * 3
    for one, image in zip(latents, batch, strict=True):
        np.testing.assert_array_equal(np.asarray(image), np.asarray(latents_to_image(one, 128)))
    with pytest.raises(ValueError, match="expected latents of shape"):
        latents_to_images(torch.zeros(4, 8, 8), max_side=64)


def test_flux_latents_unpack_to_what_diffusers_packed() -> None:
    from diffusers import FluxPipeline

    from engine.images.preview import unpack_flux
    from engine.protocol import Family

    latents = torch.randn(2, 16, 8, 12)
    packed = FluxPipeline._pack_latents(latents, 2, 16, 8, 12)
    assert packed.shape == (2, 24, 64)
    torch.testing.assert_close(unpack_flux(packed, width=96, height=64), latents)
    (image, _) = latents_to_images(unpack_flux(packed, 96, 64), 128, Family.FLUX)
    assert image.size == (12, 8)

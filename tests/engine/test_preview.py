"""Latent previews: one linear map, small PNGs."""

from __future__ import annotations

import io

import pytest
import torch
from PIL import Image

from engine.preview import latents_to_image, png_bytes


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

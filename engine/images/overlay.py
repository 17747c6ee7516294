"""The picture that shows what an inpainting job repainted: the input, with the mask outlined.

A bright line with a dark edge runs just outside the repainted area (so it covers none of the
pixels that were kept or repainted), and the area itself gets a light tint, so a thin or
scattered mask still reads at a glance. The line is drawn on both sides of an edge in two
contrasting colours so it stands out on light and dark pictures alike.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

LINE = np.array([255, 0, 200], dtype=np.float32)  # magenta: rare in photos and paintings
EDGE = np.array([20, 20, 20], dtype=np.float32)  # a dark rim that keeps the line visible on white
TINT = 0.3  # how far the repainted area is pulled towards the line colour


def _grow(area: Image.Image, pixels: int) -> Image.Image:
    return area.filter(ImageFilter.MaxFilter(2 * pixels + 1)) if pixels else area


def line_width(size: tuple[int, int]) -> int:
    """The outline's width in pixels: 3 at 512, growing with the picture."""
    return max(2, round(max(size) / 170))


def outline_mask(image: Image.Image, mask: Image.Image) -> Image.Image:
    """``image`` (RGB) with the white part of ``mask`` (same size) tinted and outlined."""
    if image.size != mask.size:
        raise ValueError("the image and the mask must be the same size")
    area = mask.convert("L").point(lambda value: 255 if value >= 128 else 0)
    width = line_width(image.size)
    inside = np.asarray(area) > 0
    line_outer = np.asarray(_grow(area, width)) > 0
    edge_outer = np.asarray(_grow(area, width + 1)) > 0

    pixels = np.asarray(image.convert("RGB"), dtype=np.float32).copy()
    pixels[inside] = pixels[inside] * (1 - TINT) + LINE * TINT
    pixels[edge_outer & ~line_outer] = EDGE
    pixels[line_outer & ~inside] = LINE
    # The innermost pixel ring of the area gets the dark rim too, so the line is framed on
    # both sides.
    inner_rim = inside & ~(np.asarray(area.filter(ImageFilter.MinFilter(3))) > 0)
    pixels[inner_rim] = EDGE
    return Image.fromarray(np.rint(pixels).astype(np.uint8))

"""Comparison grids: layout, untouched panels, drawn labels, and the labels in metadata."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from bot.jobs.grid import (
    BACKGROUND,
    GAP,
    compose_grid,
    grid_png,
    label_height,
    panel_box,
)


def noise(seed: int, size: tuple[int, int] = (64, 48)) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), np.uint8)
    return Image.fromarray(pixels)


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def band(grid: Image.Image, index: int, columns: int, size: tuple[int, int]) -> np.ndarray:
    left, top, right, _ = panel_box(index, columns, size)
    return np.asarray(grid)[top - label_height(size[0]) : top, left:right]


def test_panels_sit_side_by_side_untouched_under_their_labels():
    panels = [noise(i) for i in range(3)]
    grid = compose_grid(panels, ["CFG 0", "CFG 7.5", "CFG 10"])
    band_height = label_height(64)
    assert grid.size == (GAP + 3 * (64 + GAP), GAP + band_height + 48 + GAP)
    for index, panel in enumerate(panels):
        left, top, right, bottom = panel_box(index, 3, (64, 48))
        np.testing.assert_array_equal(np.asarray(grid.crop((left, top, right, bottom))), panel)
        drawn = band(grid, index, 3, (64, 48))
        assert (drawn < 128).any(), "the label is drawn in dark pixels"
        assert (drawn == BACKGROUND).all(axis=-1).mean() > 0.5, "on a light band"
    # Different words, different pixels.
    assert not np.array_equal(band(grid, 0, 3, (64, 48)), band(grid, 1, 3, (64, 48)))


def test_long_labels_shrink_to_fit_their_panel():
    grid = compose_grid([noise(0, (64, 64))], ["DPM++ 2M Karras, with a very long label"])
    left, top, right, _ = panel_box(0, 1, (64, 64))
    whole = np.asarray(grid)[top - label_height(64) : top]
    dark_columns = np.nonzero((whole < 128).any(axis=(0, 2)))[0]
    assert dark_columns.min() >= left - 2 and dark_columns.max() <= right + 2


def test_wide_grids_are_scaled_down_and_rows_repeat_the_labels():
    panels = [noise(i, (512, 512)) for i in range(8)]
    grid = compose_grid(panels, ["a", "b", "c", "d"], rows=2, max_width=1024)
    assert grid.width <= 1024
    assert grid.height > 2 * (grid.width // 4)  # two rows of square panels plus bands
    with pytest.raises(ValueError, match="do not fill"):
        compose_grid(panels[:7], ["a", "b", "c", "d"], rows=2)


def test_grid_png_carries_the_labels_as_text():
    data = grid_png(
        [png(noise(1)), png(noise(2))], ["step 1/30", "步 30/30"], comparison="denoising"
    )
    image = Image.open(io.BytesIO(data))
    assert image.text["comparison"] == "denoising"
    assert json.loads(image.text["panels"]) == ["step 1/30", "步 30/30"]

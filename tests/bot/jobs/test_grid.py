"""Comparison grids: layout, untouched panels, drawn labels, and the labels in metadata."""

from __future__ import annotations

import io
import json
import logging

import numpy as np
import pytest
from PIL import Image

from bot.jobs import grid
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


# --- the label font: Chinese and accented Latin in real glyphs, never boxes --------------------


def one_band(label: str, **kwargs) -> np.ndarray:
    """The label band of a one-panel grid (a wide panel, so short labels are never cut)."""
    return band(compose_grid([noise(0, (160, 48))], [label], **kwargs), 0, 1, (160, 48))


@pytest.fixture
def no_label_font(monkeypatch):
    """The font package is not installed: its import fails, as on a machine without it."""
    monkeypatch.setattr(grid, "FONT_PACKAGE", "no_such_font_package")
    grid._font_file.cache_clear()
    yield
    grid._font_file.cache_clear()  # the next test loads the real font again


def test_chinese_labels_are_drawn_in_their_own_glyphs():
    # In a font without Chinese every character is the same box, so these would match.
    first, second = one_band("去噪"), one_band("调度")
    assert (first < 128).any() and (second < 128).any()
    assert not np.array_equal(first, second)
    assert not np.array_equal(one_band("第 1/30 步"), one_band("第 1/30 天"))
    assert grid.missing_glyphs("第 1/30 步 调度器 去噪") == set()


def test_accented_latin_labels_are_drawn_too():
    assert not np.array_equal(one_band("café"), one_band("cafè"))
    assert grid.missing_glyphs("é è ü × … ·") == set()


def test_a_label_the_font_cannot_draw_is_drawn_in_english_or_without_boxes():
    emoji = "\U0001f600"  # no label font has it: it would be a box
    assert grid.missing_glyphs(f"CFG {emoji}") == {emoji}
    np.testing.assert_array_equal(one_band(emoji, fallbacks=["smile"]), one_band("smile"))
    # No drawable fallback: the missing character is a question mark, not a box.
    np.testing.assert_array_equal(one_band(f"a{emoji}", fallbacks=[emoji]), one_band("a?"))
    assert grid.drawable_labels(["步", f"x{emoji}"], ["step", "y"]) == ["步", "y"]
    with pytest.raises(ValueError, match="fallback"):
        grid.drawable_labels(["a", "b"], ["a"])


def test_without_the_font_package_labels_fall_back_to_english(no_label_font, caplog):
    chinese, english = ["第 1/2 步", "第 2/2 步"], ["step 1/2", "step 2/2"]
    with caplog.at_level(logging.WARNING, logger=grid.__name__):
        data = grid_png(
            [png(noise(1)), png(noise(2))], chinese, comparison="denoising", fallbacks=english
        )
        grid_png([png(noise(1))], ["CFG 7.5"], comparison="guidance")
    (warning,) = caplog.records  # once, not once a grid
    assert "no_such_font_package" in warning.getMessage()
    # What is drawn, in Pillow's own font, is said in the metadata too.
    assert json.loads(Image.open(io.BytesIO(data)).text["panels"]) == english
    assert grid.drawable_labels(["CFG 7.5", "café"]) == ["CFG 7.5", "caf?"]
    drawn = compose_grid([noise(1), noise(2)], chinese, fallbacks=english)
    np.testing.assert_array_equal(
        np.asarray(drawn), np.asarray(compose_grid([noise(1), noise(2)], english))
    )


def test_label_fonts_are_loaded_once_per_size():
    assert grid.label_font(30) is grid.label_font(30)
    assert grid.label_font(30) is not grid.label_font(28)

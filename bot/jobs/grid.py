"""Comparison grids: panels side by side, each with its label drawn above it.

One PNG that reads on its own when shared out of Discord: the labels are pixels, not message
text, in the font Pillow ships with (``ImageFont.load_default``, scalable since Pillow 10.1),
so it looks the same on every machine. The labels also travel in the PNG's text chunks
(``comparison``, ``panels``) for tools and tests.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

MAX_WIDTH = 4096  # wider grids are scaled down: Discord previews them small anyway
GAP = 8  # pixels between panels, and around the grid
BACKGROUND = (255, 255, 255)
LABEL_COLOUR = (24, 24, 24)
MIN_FONT_SIZE = 10  # smaller is unreadable; longer labels are cut instead
PANELS_KEY = "panels"
COMPARISON_KEY = "comparison"


def label_height(panel_width: int) -> int:
    """Height of the band above each panel: readable on a phone, small next to the picture."""
    return max(24, panel_width // 9)


def _fit(
    label: str, size: int, width: int
) -> tuple[ImageFont.FreeTypeFont | ImageFont.ImageFont, str]:
    """The default font at ``size`` or smaller, and ``label`` (cut with … if need be), fitting
    in ``width`` pixels."""

    def fits(font: ImageFont.FreeTypeFont | ImageFont.ImageFont, text: str) -> bool:
        left, _, right, _ = font.getbbox(text)
        return right - left <= width

    font = ImageFont.load_default(size=size)
    while not fits(font, label) and size > MIN_FONT_SIZE:
        size -= 2
        font = ImageFont.load_default(size=size)
    text = label
    while not fits(font, text) and len(text) > 1:
        text = text[:-2] + "…"
    return font, text


def compose_grid(
    panels: Sequence[Image.Image],
    labels: Sequence[str],
    *,
    rows: int = 1,
    max_width: int = MAX_WIDTH,
) -> Image.Image:
    """Panels in ``rows`` rows (row by row, left to right), ``labels`` repeating on each row.

    Every panel is drawn at the first panel's size, scaled down evenly when the grid would be
    wider than ``max_width``; at full size a panel is its pixels, untouched.
    """
    columns = len(labels)
    if columns == 0 or len(panels) != columns * rows:
        raise ValueError(f"{len(panels)} panels do not fill {rows} row(s) of {columns}")
    width, height = panels[0].size
    fit = (max_width - GAP * (columns + 1)) / (width * columns)
    if fit < 1:
        width, height = max(1, int(width * fit)), max(1, int(height * fit))
    band = label_height(width)
    grid = Image.new(
        "RGB",
        (GAP + columns * (width + GAP), GAP + rows * (band + height + GAP)),
        BACKGROUND,
    )
    draw = ImageDraw.Draw(grid)
    for index, panel in enumerate(panels):
        row, column = divmod(index, columns)
        left = GAP + column * (width + GAP)
        top = GAP + row * (band + height + GAP)
        font, label = _fit(labels[column], int(band * 0.6), width - 4)
        # Centred in the band over the panel ("mm": the anchor is the text's middle).
        draw.text(
            (left + width / 2, top + band / 2), label, fill=LABEL_COLOUR, font=font, anchor="mm"
        )
        picture = panel.convert("RGB")
        if picture.size != (width, height):
            picture = picture.resize((width, height), Image.Resampling.LANCZOS)
        grid.paste(picture, (left, top + band))
    return grid


def grid_png(
    pngs: Sequence[bytes], labels: Sequence[str], *, comparison: str, rows: int = 1
) -> bytes:
    """The grid of PNG ``pngs`` as PNG bytes, with the labels in its text chunks too."""
    panels = [Image.open(io.BytesIO(data)) for data in pngs]
    grid = compose_grid(panels, labels, rows=rows)
    info = PngImagePlugin.PngInfo()
    info.add_text(COMPARISON_KEY, comparison)
    info.add_itxt(PANELS_KEY, json.dumps(list(labels), ensure_ascii=False))
    out = io.BytesIO()
    grid.save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def panel_box(index: int, columns: int, panel_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Where panel ``index`` of an unscaled grid lies: (left, top, right, bottom)."""
    width, height = panel_size
    row, column = divmod(index, columns)
    band = label_height(width)
    left = GAP + column * (width + GAP)
    top = GAP + row * (band + height + GAP) + band
    return left, top, left + width, top + height

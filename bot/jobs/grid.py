"""Comparison grids: panels side by side, each with its label drawn above it.

One PNG that reads on its own when shared out of Discord: the labels are pixels, not message
text, in a font installed with the bot, so it looks the same on every machine. The labels also
travel in the PNG's text chunks (``comparison``, ``panels``) for tools and tests.

The font is Noto Sans SC (SIL Open Font License), from the data-only ``pylopdf-fonts-zh-cn``
package: zh-CN readers get Chinese labels (``bot.jobs.lessons``), and Pillow's own font has
neither Chinese nor accented Latin. Should it fail to load, the labels fall back to Pillow's
font. Either way a label is never drawn with glyphs the font lacks (they would be boxes):
such a label is drawn in English instead (``drawable_labels``).
"""

from __future__ import annotations

import functools
import io
import json
import logging
from collections.abc import Sequence
from importlib import resources

from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

log = logging.getLogger(__name__)

MAX_WIDTH = 4096  # wider grids are scaled down: Discord previews them small anyway
GAP = 8  # pixels between panels, and around the grid
BACKGROUND = (255, 255, 255)
LABEL_COLOUR = (24, 24, 24)
MIN_FONT_SIZE = 10  # smaller is unreadable; longer labels are cut instead
PANELS_KEY = "panels"
ROWS_KEY = "rows"  # an X/Y grid's row labels (its y axis)
COMPARISON_KEY = "comparison"
FONT_PACKAGE = "pylopdf_fonts_zh_cn"  # the pylopdf-fonts-zh-cn dependency in pyproject.toml
FONT_FILE = "NotoSansSC-Regular.otf"
MISSING = "?"  # drawn for a character the font lacks when a label has no drawable fallback
# A code point no font maps (a noncharacter): it renders as the font's .notdef glyph, the box
# that a character the font lacks would show.
NOTDEF_PROBE = "\U0010ffff"
GLYPH_CHECK_SIZE = 24  # large enough that two different glyphs never render alike

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@functools.cache
def _font_file() -> str | None:
    """The label font's path, or None (logged, once a process) when it cannot be loaded."""
    try:
        path = str(resources.files(FONT_PACKAGE) / FONT_FILE)
        ImageFont.truetype(path, GLYPH_CHECK_SIZE)  # a missing or broken file fails here
    except (ImportError, OSError) as error:
        log.warning(
            "grid labels: cannot load %s from %s (%s); using Pillow's own font, which has no "
            "Chinese, so labels it cannot draw are drawn in English",
            FONT_FILE,
            FONT_PACKAGE,
            error,
        )
        return None
    return path


@functools.lru_cache(maxsize=64)
def _font_at(file: str | None, size: int) -> Font:
    # Opening a face is cheap (FreeType reads the file lazily), but a grid asks for the same
    # sizes over and over while fitting its labels.
    if file is None:
        return ImageFont.load_default(size=size)
    return ImageFont.truetype(file, size)


def label_font(size: int) -> Font:
    """The font labels are drawn in, at ``size`` pixels."""
    return _font_at(_font_file(), size)


def _rendering(font: Font, char: str) -> bytes:
    canvas = Image.new("L", (3 * GLYPH_CHECK_SIZE, 3 * GLYPH_CHECK_SIZE))
    ImageDraw.Draw(canvas).text((GLYPH_CHECK_SIZE, GLYPH_CHECK_SIZE), char, fill=255, font=font)
    return canvas.tobytes()


@functools.lru_cache(maxsize=4096)
def _has_glyph(file: str | None, char: str) -> bool:
    # Pillow does not say whether a font maps a character, but a character it does not map
    # renders as the .notdef glyph, exactly like the probe. Blanks render as nothing in any font.
    if char.isspace():
        return True
    font = _font_at(file, GLYPH_CHECK_SIZE)
    return _rendering(font, char) != _rendering(font, NOTDEF_PROBE)


def missing_glyphs(text: str) -> set[str]:
    """The characters of ``text`` that the label font cannot draw."""
    file = _font_file()
    return {char for char in text if not _has_glyph(file, char)}


def drawable_labels(labels: Sequence[str], fallbacks: Sequence[str] | None = None) -> list[str]:
    """Each label as the grid draws it, decided label by label: itself where the font has all
    its glyphs, else its fallback (the English label) where that has them, else itself with
    each missing character drawn as ``?`` (never as a box)."""
    if fallbacks is not None and len(fallbacks) != len(labels):
        raise ValueError(f"{len(fallbacks)} fallback labels for {len(labels)} labels")
    drawn = []
    for index, label in enumerate(labels):
        if not missing_glyphs(label):
            drawn.append(label)
        elif fallbacks is not None and not missing_glyphs(fallbacks[index]):
            drawn.append(fallbacks[index])
        else:
            missing = missing_glyphs(label)
            drawn.append("".join(MISSING if char in missing else char for char in label))
    return drawn


def label_height(panel_width: int) -> int:
    """Height of the band above each panel: readable on a phone, small next to the picture."""
    return max(24, panel_width // 9)


def _fit(label: str, size: int, width: int) -> tuple[Font, str]:
    """The label font at ``size`` or smaller, and ``label`` (cut with … if need be), fitting
    in ``width`` pixels."""

    def fits(font: Font, text: str) -> bool:
        left, _, right, _ = font.getbbox(text)
        return right - left <= width

    font = label_font(size)
    while not fits(font, label) and size > MIN_FONT_SIZE:
        size -= 2
        font = label_font(size)
    text = label
    while not fits(font, text) and len(text) > 1:
        text = text[:-2] + "…"
    return font, text


def row_band_width(panel_width: int) -> int:
    """Width of the band left of each row that holds its label (an X/Y grid's y axis)."""
    return max(96, panel_width // 2)


def compose_grid(
    panels: Sequence[Image.Image],
    labels: Sequence[str],
    *,
    rows: int = 1,
    max_width: int = MAX_WIDTH,
    fallbacks: Sequence[str] | None = None,
    row_labels: Sequence[str] | None = None,
    row_fallbacks: Sequence[str] | None = None,
) -> Image.Image:
    """Panels in ``rows`` rows (row by row, left to right), ``labels`` repeating on each row.

    Every panel is drawn at the first panel's size, scaled down evenly when the grid would be
    wider than ``max_width``; at full size a panel is its pixels, untouched. A label the font
    cannot draw is drawn as its entry in ``fallbacks`` (``drawable_labels``). ``row_labels``
    (an X/Y grid's y values) are drawn in a band left of the rows, like the web UI's X/Y plot.
    """
    labels = drawable_labels(labels, fallbacks)
    columns = len(labels)
    if columns == 0 or len(panels) != columns * rows:
        raise ValueError(f"{len(panels)} panels do not fill {rows} row(s) of {columns}")
    if row_labels is not None:
        row_labels = drawable_labels(row_labels, row_fallbacks)
        if len(row_labels) != rows:
            raise ValueError(f"{len(row_labels)} row labels for {rows} rows")
    width, height = panels[0].size
    margin = row_band_width(width) if row_labels is not None else 0
    fit = (max_width - margin - GAP * (columns + 1)) / (width * columns)
    if fit < 1:
        width, height = max(1, int(width * fit)), max(1, int(height * fit))
    band = label_height(width)
    grid = Image.new(
        "RGB",
        (margin + GAP + columns * (width + GAP), GAP + rows * (band + height + GAP)),
        BACKGROUND,
    )
    draw = ImageDraw.Draw(grid)
    for row, text in enumerate(row_labels or ()):
        top = GAP + row * (band + height + GAP) + band
        size = int(band * 0.6)
        # "Sampler: DPM++ 2M Karras" is long for the band: the axis name over its value, each
        # line fitted, rather than one line shrunk to a size nobody reads.
        whole, shown = _fit(text, size, margin - GAP)
        fits = shown == text and getattr(whole, "size", size) >= size * 0.8
        lines = [text] if fits else text.split(": ", 1)
        for number, line in enumerate(lines):
            font, line = _fit(line, size, margin - GAP)
            draw.text(
                (
                    GAP + (margin - GAP) / 2,
                    top + height / 2 + (number - (len(lines) - 1) / 2) * band,
                ),
                line,
                fill=LABEL_COLOUR,
                font=font,
                anchor="mm",
            )
    for index, panel in enumerate(panels):
        row, column = divmod(index, columns)
        left = margin + GAP + column * (width + GAP)
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
    pngs: Sequence[bytes],
    labels: Sequence[str],
    *,
    comparison: str,
    rows: int = 1,
    fallbacks: Sequence[str] | None = None,
    row_labels: Sequence[str] | None = None,
    row_fallbacks: Sequence[str] | None = None,
) -> bytes:
    """The grid of PNG ``pngs`` as PNG bytes, with the labels as drawn in its text chunks too.

    ``fallbacks``: the labels in English, drawn where the font lacks a glyph of ``labels``
    (``row_fallbacks`` likewise for ``row_labels``, which the ``rows`` chunk holds).
    """
    panels = [Image.open(io.BytesIO(data)) for data in pngs]
    labels = drawable_labels(labels, fallbacks)
    if row_labels is not None:
        row_labels = drawable_labels(row_labels, row_fallbacks)
    grid = compose_grid(panels, labels, rows=rows, row_labels=row_labels)
    info = PngImagePlugin.PngInfo()
    info.add_text(COMPARISON_KEY, comparison)
    info.add_itxt(PANELS_KEY, json.dumps(list(labels), ensure_ascii=False))
    if row_labels is not None:
        info.add_itxt(ROWS_KEY, json.dumps(list(row_labels), ensure_ascii=False))
    out = io.BytesIO()
    grid.save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def panel_box(
    index: int, columns: int, panel_size: tuple[int, int], *, row_labels: bool = False
) -> tuple[int, int, int, int]:
    """Where panel ``index`` of an unscaled grid lies: (left, top, right, bottom);
    ``row_labels``: the grid has a band of row labels on its left."""
    width, height = panel_size
    row, column = divmod(index, columns)
    band = label_height(width)
    margin = row_band_width(width) if row_labels else 0
    left = margin + GAP + column * (width + GAP)
    top = GAP + row * (band + height + GAP) + band
    return left, top, left + width, top + height

"""What PNG encoding costs per image at zlib level 6 (Pillow's default) against the engine's.

The engine encodes every result as a PNG carrying its parameters (``engine.images.metadata``),
at ``ENGINE_PNG_COMPRESS_LEVEL``. Level 6 spends most of its time searching for matches that
shrink a photograph-like picture by a few percent; the fast levels skip that search. This
script encodes the same picture at both levels in turns (A, B, A, B, ...), so a change in the
machine's load moves both alike, and prints medians, the ratio and the sizes.

The picture is photograph-like rather than random: smooth shapes and gradients with a little
sensor-like noise, which is how a diffusion model's 512x512 output compresses (pure noise
would not compress at any level, a flat colour at every level).

    python bench/bench_png_encode.py --size 512 --repeats 15
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.images.metadata import png_with_parameters
from engine.settings import EngineSettings

PARAMETERS = (
    "a lighthouse on a cliff at dusk, oil painting\n"
    "Steps: 30, Sampler: Euler, CFG scale: 7.5, Seed: 1234, Size: 512x512, Model: sd15"
)


def photo_like(side: int, seed: int = 0) -> Image.Image:
    """A deterministic picture with the statistics of a photograph: smooth, with mild noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side
    channels = []
    for phase in rng.uniform(0, 2 * np.pi, size=3):
        wave = np.sin(6 * x + phase) * np.cos(4 * y - phase) + 0.5 * np.sin(15 * (x + y) + phase)
        channels.append(wave)
    pixels = (np.stack(channels, axis=-1) + 1.5) * 80
    # A few hard-edged shapes, as objects in a scene.
    for _ in range(6):
        x0, y0 = rng.integers(0, side - side // 4, size=2)
        size = int(rng.integers(side // 16, side // 4))
        pixels[y0 : y0 + size, x0 : x0 + size] = rng.uniform(0, 255, size=3)
    pixels += rng.normal(0, 3, pixels.shape)
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))


def encode_seconds(image: Image.Image, level: int) -> tuple[float, int]:
    started = time.perf_counter()
    data = png_with_parameters(image, PARAMETERS, level)
    return time.perf_counter() - started, len(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--slow-level", type=int, default=6, help="Pillow's default")
    parser.add_argument(
        "--fast-level",
        type=int,
        default=EngineSettings.model_fields["png_compress_level"].default,
        help="default: the engine's",
    )
    args = parser.parse_args()

    image = photo_like(args.size)
    levels = (args.slow_level, args.fast_level)
    times: dict[int, list[float]] = {level: [] for level in levels}
    sizes: dict[int, int] = {}
    for level in levels:  # warm-up: first-call costs stay out of the figures
        encode_seconds(image, level)
    for _ in range(args.repeats):
        for level in levels:
            seconds, sizes[level] = encode_seconds(image, level)
            times[level].append(seconds)

    slow, fast = (statistics.median(times[level]) for level in levels)
    print(
        f"one {args.size}x{args.size} RGB picture with parameters, {args.repeats} interleaved runs"
    )
    for level in levels:
        median = statistics.median(times[level])
        print(f"PNG level {level}: median {median * 1000:7.1f} ms, {sizes[level] / 1024:7.1f} KiB")
    print(
        f"level {args.fast_level} is {slow / fast:.1f}x faster than level {args.slow_level}, "
        f"{sizes[args.fast_level] / sizes[args.slow_level]:.2f}x the bytes"
    )


if __name__ == "__main__":
    main()

"""How far apart two copies of the same bare diffusers call run, in one process.

``bench_engine_overhead.py`` holds the engine's call against a bare call of another copy of
the same weights. This measures the floor of that comparison: the same pipeline loaded twice,
called in turns (A, B, A, B, ...) with the same seeds, so any difference is where the copies
sit in memory, not work either does. Run it a few times: which copy is faster changes from one
start to the next.

    python bench/bench_pipeline_copies.py --size 256 --steps 20 --turns 8
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_engine_overhead import bare_call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--turns", type=int, default=8)
    parser.add_argument("--model", default=None, help="id or folder; default: tiny test model")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        source = args.model
        if source is None:
            from tests.fixtures.tiny_models import build_tiny_models

            source = str(build_tiny_models(Path(scratch)).text_to_image)
        copies = (bare_call(source, args), bare_call(source, args))
        times: tuple[list[float], list[float]] = ([], [])
        for seed in range(args.turns + 1):
            for call, kept in zip(copies, times, strict=True):
                seconds = call(seed)
                if seed:  # the first turn warms up
                    kept.append(seconds)
    first, second = times
    ratios = [b / a for a, b in zip(first, second, strict=True)]
    print(f"one {args.size}x{args.size} image, {args.steps} steps, {len(ratios)} turns")
    print(f"copy A: median {statistics.median(first) * 1000:8.1f} ms")
    print(f"copy B: median {statistics.median(second) * 1000:8.1f} ms")
    print(
        f"copy B against copy A: median ratio {statistics.median(ratios):.3f}x, "
        f"fastest runs {min(second) / min(first):.3f}x"
    )


if __name__ == "__main__":
    main()

"""What the second safety opinion adds per flagged image, on the CPU.

The engine's gate (``engine.run.pipeline_call.check``) runs the first checker on every picture,
then, for the pictures it flags, the second classifier (open_nsfw on onnxruntime,
``engine.images.second_opinion``). This script finishes the same flagged 512x512 picture
through ``check`` and ``Checked.encode`` with ``ENGINE_SECOND_OPINION=first`` (never asked) and
``either`` (asked), in turns (first, either, first, ...), so a change in the machine's load moves
both alike; the first checker is a stand-in that flags everything, so the two differ only by
the second opinion. It prints the medians, their difference, and the classifier's one-time load.

    python bench/bench_second_opinion.py --size 512 --repeats 15
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_png_encode import photo_like
from engine.images.second_opinion import SecondOpinion
from engine.protocol import JobKind, JobSpec, ModelRef
from engine.run.pipeline_call import check
from engine.settings import EngineSettings


class FlagsEverything:
    """The first checker's place in ``check``: flags every picture, costs nothing."""

    def __init__(self, second_opinion: SecondOpinion) -> None:
        self.second_opinion = second_opinion

    def judge(self, images: list[object]) -> tuple[list[bool], list[float | None]]:
        return [True] * len(images), [None] * len(images)


def finish_ms(gate: FlagsEverything, made: list, level: int) -> float:
    started = time.perf_counter()
    (image,) = check(gate, made).encode(None, level)  # type: ignore[arg-type]
    assert image.nsfw and image.original_png is not None
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()

    settings = {
        policy: EngineSettings(_env_file=None, second_opinion=policy)
        for policy in ("first", "either")
    }
    gates = {policy: FlagsEverything(SecondOpinion(s)) for policy, s in settings.items()}
    started = time.perf_counter()
    assert gates["either"].second_opinion.load()
    load_ms = (time.perf_counter() - started) * 1000

    picture = torch.from_numpy(np.array(photo_like(args.size))).permute(2, 0, 1).contiguous()
    spec = JobSpec(
        job_id=1,
        kind=JobKind.TEXT_TO_IMAGE,
        model=ModelRef("sd15", "sd15"),
        prompt="a lighthouse on a cliff at dusk",
        seeds=(1,),
        width=args.size,
        height=args.size,
    )
    made = [(spec, 1, picture)]
    level = EngineSettings.model_fields["png_compress_level"].default
    times: dict[str, list[float]] = {policy: [] for policy in gates}
    for gate in gates.values():  # warm-up: first-call costs stay out of the figures
        finish_ms(gate, made, level)
    for _ in range(args.repeats):
        for policy, gate in gates.items():
            times[policy].append(finish_ms(gate, made, level))

    without, with_second = (statistics.median(times[p]) for p in ("first", "either"))
    pairs = [b - a for a, b in zip(times["first"], times["either"], strict=True)]
    print(f"one flagged {args.size}x{args.size} picture, {args.repeats} interleaved runs")
    print(f"finished without the second opinion (first): median {without:7.1f} ms")
    print(f"finished with the second opinion (either):   median {with_second:7.1f} ms")
    print(f"second opinion adds per flagged image: median {statistics.median(pairs):.1f} ms")
    print(f"open_nsfw load (once per engine start): {load_ms:.0f} ms")


if __name__ == "__main__":
    main()

"""Command line: run one job without Discord, through the same worker the bot uses.

    python -m engine generate --model <id-or-folder> --prompt "..." --seed 42 --steps 30 --out a.png
    python -m engine inpaint --model <id-or-folder> --prompt "..." --image in.png --mask mask.png
    python -m engine upscale --model <upscaler> --prompt "..." --image small.png --out big.png
    python -m engine serve      # the framed-protocol process the bot's engine client starts

Settings come from ``ENGINE_*`` variables and ``.env``; the options below override them.
"""

from __future__ import annotations

import argparse
import logging
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.protocol import (
    BOUNDS,
    SCHEDULERS,
    SIZES,
    Accepted,
    Event,
    JobError,
    JobKind,
    JobSpec,
    ModelRef,
    Progress,
    Result,
    RunBatch,
    number_text,
)


def _range(name: str) -> str:
    """“1 to 100 (default 30)”: a bound of ``BOUNDS`` for the options' help."""
    bound = getattr(BOUNDS, name)
    default = f" (default {number_text(bound.default)})" if hasattr(bound, "default") else ""
    return f"{number_text(bound.min)} to {number_text(bound.max)}{default}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the engine process for the bot (framed stdin/stdout)")
    for name, kind in (
        ("generate", JobKind.TEXT_TO_IMAGE),
        ("img2img", JobKind.IMAGE_TO_IMAGE),
        ("inpaint", JobKind.INPAINT),
        ("depth", JobKind.DEPTH_TO_IMAGE),
        ("upscale", JobKind.UPSCALE),
    ):
        what = "picture four times larger" if kind is JobKind.UPSCALE else "image"
        sub = commands.add_parser(name, help=f"make one {kind.value.replace('_', '-')} {what}")
        sub.set_defaults(kind=kind)
        sub.add_argument("--model", required=True, help="Hugging Face id or local folder")
        sub.add_argument("--revision", default=None, help="model revision (branch, tag, commit)")
        sub.add_argument("--prompt", required=True)
        sub.add_argument("--negative-prompt", default="")
        sub.add_argument(
            "--seed", type=int, default=None, help=f"{_range('seed')}; random if omitted"
        )
        sub.add_argument("--steps", type=int, default=BOUNDS.steps.default, help=_range("steps"))
        sub.add_argument(
            "--guidance", type=float, default=BOUNDS.guidance.default, help=_range("guidance")
        )
        if kind is not JobKind.UPSCALE:  # an upscale runs at its picture's own size
            size, sides = SIZES[BOUNDS.size], _range("side")
            sub.add_argument("--width", type=int, default=size.width, help=f"pixels, {sides}")
            sub.add_argument("--height", type=int, default=size.height, help=f"pixels, {sides}")
        sub.add_argument("--scheduler", choices=sorted(SCHEDULERS), default=BOUNDS.scheduler)
        sub.add_argument("--out", type=Path, required=True, help="PNG file to write")
        sub.add_argument("--device", default=None, help="cuda, cuda:1 or cpu (default: auto)")
        sub.add_argument("--offline", action="store_true", help="never reach the Hub")
        sub.add_argument("--safety-checker", default=None, help="safety checker id or folder")
        sub.add_argument(
            "--no-safety-checker", action="store_true", help="explicitly turn the checker off"
        )
        if kind is JobKind.INPAINT:
            sub.add_argument("--image", type=Path, required=True, help="the picture to repaint")
            sub.add_argument("--mask", type=Path, required=True, help="white = repaint")
            sub.add_argument(
                "--strength", type=float, default=BOUNDS.strength.default, help=_range("strength")
            )
        if kind is JobKind.UPSCALE:
            pixels = BOUNDS.upscale_pixels.max
            sub.add_argument(
                "--image", type=Path, required=True, help=f"the picture, at most {pixels:,} pixels"
            )
            sub.add_argument(
                "--noise-level",
                type=int,
                default=BOUNDS.noise_level.default,
                help=f"{_range('noise_level')}: more noise, more invented detail",
            )
        if kind in (JobKind.IMAGE_TO_IMAGE, JobKind.DEPTH_TO_IMAGE):
            sub.add_argument(
                "--image", type=Path, required=True, help="the picture to start from (resized)"
            )
            strength = BOUNDS.image_strength
            sub.add_argument(
                "--strength", type=float, default=strength.default, help=_range("image_strength")
            )
    return parser


class _Unreadable(Exception):
    """The picture to upscale cannot be read; ``str(error)`` says so."""


def _size(args: argparse.Namespace) -> tuple[int, int]:
    """The job's width and height: the options', or an upscale's picture's own."""
    if args.kind is not JobKind.UPSCALE:
        return args.width, args.height
    from PIL import Image

    try:
        with Image.open(args.image) as picture:
            return picture.size
    except OSError:  # Pillow's UnidentifiedImageError is one
        raise _Unreadable(f"cannot read {args.image} as a picture") from None


def _spec(args: argparse.Namespace, seed: int) -> JobSpec:
    source = str(args.model)
    name = Path(source).name if Path(source).is_dir() else source
    inpainting = args.kind is JobKind.INPAINT
    from_picture = args.kind.takes_picture
    width, height = _size(args)
    return JobSpec(
        job_id=1,
        kind=args.kind,
        model=ModelRef(name=name, source=source, revision=args.revision),
        prompt=args.prompt,
        negative_prompt=args.negative_prompt,
        seeds=(seed,),
        steps=args.steps,
        guidance=args.guidance,
        width=width,
        height=height,
        scheduler=args.scheduler,
        strength=getattr(args, "strength", BOUNDS.strength.default),
        noise_level=getattr(args, "noise_level", BOUNDS.noise_level.default),
        image_path=str(args.image) if from_picture else None,
        mask_path=str(args.mask) if inpainting else None,
        preview=False,
    )


def _run_one(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from engine.settings import EngineSettings
    from engine.worker import Worker

    overrides: dict[str, Any] = {}
    if args.device:
        overrides["device"] = args.device
    if args.offline:
        overrides["offline"] = True
    if args.safety_checker:
        overrides["safety_checker"] = args.safety_checker
    if args.no_safety_checker:
        overrides["safety_enabled"] = False
    settings = EngineSettings(**overrides)
    seed = args.seed if args.seed is not None else secrets.randbelow(BOUNDS.seed.max + 1)
    try:
        spec = _spec(args, seed)
    except _Unreadable as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    bar = tqdm(total=spec.steps, unit="step", file=sys.stderr, leave=True)
    outcome: list[Result | JobError] = []

    def on_event(event: Event) -> None:
        if isinstance(event, Accepted) and event.prompt_chunks:
            chunks = len(event.prompt_chunks)
            print(f"note: the prompt is read in {chunks} windows of the text encoder:")
            for number, chunk in enumerate(event.prompt_chunks, 1):
                print(f"  {number}. {chunk}")
        elif isinstance(event, Progress):
            bar.total = event.total_steps
            bar.update(event.step - bar.n)
        elif isinstance(event, Result | JobError):
            outcome.append(event)

    try:
        Worker(settings, on_event).handle(RunBatch(jobs=(spec,)))
    finally:
        bar.close()
    result = outcome[0] if outcome else None
    if not isinstance(result, Result):
        message = result.message if result is not None else "no result"
        print(f"error: {message}", file=sys.stderr)
        return 1
    (image,) = result.images
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(image.png)
    note = " (flagged by the safety checker, so it is blurred)" if image.nsfw else ""
    scale = args.kind.scale
    size = f", {spec.width * scale}x{spec.height * scale}" if scale > 1 else ""
    print(f"wrote {args.out} with seed {seed}{size} in {result.seconds:.1f}s{note}")
    if result.depth_map is not None:  # what conditioned a depth-to-image picture
        depth_file = args.out.with_name(f"{args.out.stem}_depth_map.png")
        depth_file.write_bytes(result.depth_map.png)
        print(f"wrote {depth_file}, the estimated depth (light is near)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m engine``; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "serve":
        from engine.process import serve
        from engine.settings import EngineSettings

        return serve(EngineSettings())
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return _run_one(args)

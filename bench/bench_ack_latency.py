"""How fast the bot answers a burst: N ``/imagine`` commands arriving at once.

The real bot (discord.py, the SQLite store, the scheduler, delivery) runs in this process; the
Discord stub runs in its own (``bench/bot_on_stub.py``), so the stub's work does not count as
the bot's and the stub answers while the bot is busy. The engine is one of:

- ``instant`` (the default): a stand-in process that answers each job at once with a 512x512
  PNG, as an infinitely fast GPU would, through the bot's own engine client and pipe
  (``bench.instant_engine``); what is left is the bot's own cost per job.
- ``instant-in-process``: the same answers from inside the bot's process, without the pipe
  and the decoding of its frames.
- ``real``: the engine process on the tiny test models on the CPU (the model is loaded before
  the burst). On a CPU the engine is the bottleneck: about 2 s per 512x512 image.

For each size, a fresh bot, database and stub; N commands from many users are sent back to
back, as fast as the stub can send them. Measured by the stub from each command's dispatch:

- the first answer (the deferral, "thinking..."): p50, p99 and the slowest, and how many came
  after Discord's 3-second deadline (those fail on Discord);
- the posted result, and how long after the first command every result was posted.

    python bench/bench_ack_latency.py                   # 200 and 1000 commands, 50 users
    python bench/bench_ack_latency.py --commands 200 --engine real
    python bench/bench_ack_latency.py --quick           # 20 commands, 10 users (CI)
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bot_on_stub import (
    BriefErrorLog,
    InstantEngine,
    InstantEngineInProcess,
    bot_on_stub,
    burst,
    log_errors_briefly,
)
from bench.burst import BurstReport
from tests.fixtures.tiny_models import TinyModels

DISCORD_DEADLINE_S = 3.0


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile (``share`` in 0..1) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def milliseconds(values: list[float]) -> str:
    """p50, p99 and max of ``values`` (seconds; ``inf``: never answered in time), in ms."""

    def ms(value: float) -> str:
        return "  refused" if math.isinf(value) else f"{value * 1000:7.1f} ms"

    return (
        f"p50 {ms(percentile(values, 0.5))}, p99 {ms(percentile(values, 0.99))}, "
        f"max {ms(max(values))}"
    )


async def measure(args: argparse.Namespace, commands: int, root: Path) -> BurstReport:
    """One burst of ``commands`` on a fresh bot, database and stub."""
    if args.engine == "real":
        from tests.fixtures.tiny_models import build_tiny_models

        tiny, engine = build_tiny_models(root / "tiny"), None
    else:
        # The instant engine never opens the models; the bot only stores their names.
        tiny = TinyModels(*(root / name for name in "abcd"))
        engine = InstantEngine if args.engine == "instant" else lambda _: InstantEngineInProcess()
    running = bot_on_stub(
        root / f"bot-{commands}",
        tiny,
        max_queued_jobs=commands,
        batch_images=args.batch,
        engine=engine,
    )
    async with running as (stub, _bot):
        return await burst(stub, commands, args.users, steps=args.steps)


def report(args: argparse.Namespace, burst: BurstReport, errors: BriefErrorLog) -> None:
    """Print one burst's figures."""
    commands = burst.commands
    # A refused callback counts as slower than any answer: past Discord's deadline.
    answers = [math.inf if c.refused else c.answered for c in commands]
    answered = [at for at in answers if at is not None]
    posted = [c.posted for c in commands if c.posted is not None]
    engine_note = (
        f"tiny models on the CPU, {args.steps} step(s)"
        if args.engine == "real"
        else "instant (a 512x512 PNG at once)"
    )
    print(
        f"{len(commands)} /imagine commands from {min(args.users, len(commands))} users, "
        f"dispatched in {burst.dispatch_s * 1000:.0f} ms; engine: {engine_note}; 512x512, "
        f"up to {args.batch} images per call; the stub in its own process"
    )
    deferred = sum(1 for c in commands if c.deferred)
    in_time = [c.answered for c in commands if c.answered is not None]
    print(
        f"first answer (deferral) : {milliseconds(answered)}  "
        f"[{len(in_time)} answered, {deferred} deferred]"
    )
    if burst.refused_callbacks and in_time:
        print(f"  of those answered     : {milliseconds(in_time)}")
    late = sum(1 for at in answered if at > DISCORD_DEADLINE_S)
    print(
        f"after Discord's 3 s     : {late} (refused by the stub, {burst.refused_callbacks}: the "
        "student sees 'The application did not respond')"
    )
    if posted:
        print(
            f"result posted           : p50 {statistics.median(posted):7.2f} s, "
            f"max {max(posted):7.2f} s  [{burst.posted} of {len(commands)} posted]"
        )
        print(
            f"every result posted     : {burst.all_posted_s:7.2f} s after the first command "
            f"({burst.images / burst.all_posted_s:.2f} images/s end to end)"
        )
    print(f"the stub's process      : {burst.stub_load()}")
    print(f"errors the bot logged   : {errors.summary()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--commands", type=int, nargs="+", default=[200, 1000], help="burst sizes: 200 1000"
    )
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--steps", type=int, default=1, help="denoising steps per image")
    parser.add_argument("--batch", type=int, default=8, help="SCHEDULER_MAX_BATCH_IMAGES")
    parser.add_argument(
        "--engine",
        choices=("instant", "instant-in-process", "real"),
        default="instant",
        help="instant: behind a pipe (bench.instant_engine); in-process: inside the bot",
    )
    parser.add_argument("--quick", action="store_true", help="20 commands, 10 users")
    args = parser.parse_args()
    if args.quick:
        args.commands, args.users = [20], 10
    for i, commands in enumerate(args.commands):
        if i:
            print()
        errors = log_errors_briefly()
        with tempfile.TemporaryDirectory() as scratch:
            report(args, asyncio.run(measure(args, commands, Path(scratch))), errors)


if __name__ == "__main__":
    main()

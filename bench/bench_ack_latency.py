"""How fast the bot answers a burst: N ``/imagine`` commands arriving at once.

The real bot (discord.py, the SQLite store, the scheduler, delivery) runs against the Discord
stub (``bench/bot_on_stub.py``) with one of two engines:

- ``real``: the engine process on the tiny test models on the CPU (the model is loaded before
  the burst). On a CPU the engine is the bottleneck: about 2 s per 512x512 image.
- ``instant``: a stand-in that answers each job at once with a 512x512 PNG, as an infinitely
  fast GPU would; what is left is the bot's own cost per job.

N commands from many users are dispatched back to back, as fast as the stub can send them.
Measured from each command's dispatch:

- the first answer (the deferral, "thinking..."): p50, p99 and the slowest, and how many came
  after Discord's 3-second deadline (those fail on Discord);
- the posted result, and how long after the first command every result was posted.

The stub shares the bot's event loop, so these times include the stub's own work.

    python bench/bench_ack_latency.py                  # 200 commands, 50 users, real engine
    python bench/bench_ack_latency.py --engine instant # the bot's own ceiling
    python bench/bench_ack_latency.py --quick          # 20 commands, instant engine (CI)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bot_on_stub import (
    RESULT_TIMEOUT_S,
    InstantEngine,
    bot_on_stub,
    imagine,
    is_result_event,
)
from tests.discord_stub import DiscordStub, EventKind, InteractionHandle
from tests.fixtures.tiny_models import TinyModels

DISCORD_DEADLINE_S = 3.0


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile (``share`` in 0..1) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def milliseconds(values: list[float]) -> str:
    return (
        f"p50 {percentile(values, 0.5) * 1000:7.1f} ms, p99 {percentile(values, 0.99) * 1000:7.1f}"
        f" ms, max {max(values) * 1000:7.1f} ms"
    )


async def burst(
    stub: DiscordStub, commands: int, users: int, steps: int
) -> list[tuple[InteractionHandle, float]]:
    """Dispatch the commands back to back; returns each handle with its dispatch time."""
    loop = asyncio.get_running_loop()
    people = [stub.add_user(f"student{i:03d}") for i in range(users)]
    sent = []
    for i in range(commands):
        handle = await imagine(stub, people[i % users], f"a watercolor fox, study {i}", steps)
        sent.append((handle, loop.time() - handle.age()))
    return sent


async def measure(args: argparse.Namespace, root: Path) -> None:
    if args.engine == "real":
        from tests.fixtures.tiny_models import build_tiny_models

        tiny, engine = build_tiny_models(root / "tiny"), None
    else:
        # The instant engine never opens the models; the bot only stores their names.
        tiny, engine = TinyModels(*(root / name for name in "abcd")), InstantEngine()
    running = bot_on_stub(
        root, tiny, max_queued_jobs=args.commands, batch_images=args.batch, engine=engine
    )
    async with running as (stub, _bot):
        started = time.perf_counter()
        sent = await burst(stub, args.commands, args.users, args.steps)
        dispatch_s = time.perf_counter() - started
        first_dispatch = sent[0][1]
        answers = await asyncio.gather(
            *(handle.wait_for_response(timeout=RESULT_TIMEOUT_S) for handle, _ in sent)
        )
        results = await asyncio.gather(
            *(handle.wait_for(is_result_event, timeout=RESULT_TIMEOUT_S) for handle, _ in sent)
        )
        refused = sum(1 for handle, _ in sent for r in handle.rejections if "callback" in r.path)

    ack = [answer.at for answer in answers]
    done = [result.at for result in results]
    all_posted = max(
        at + sent_at - first_dispatch for at, (_, sent_at) in zip(done, sent, strict=True)
    )
    deferred = sum(1 for answer in answers if answer.kind is EventKind.RESPONSE)
    engine_note = (
        f"tiny models on the CPU, {args.steps} step(s)"
        if args.engine == "real"
        else "instant (a 512x512 PNG at once)"
    )
    print(
        f"{args.commands} /imagine commands from {args.users} users, dispatched in "
        f"{dispatch_s * 1000:.0f} ms; engine: {engine_note}; 512x512, up to {args.batch} "
        "images per call"
    )
    print(f"first answer (deferral) : {milliseconds(ack)}  [{deferred} answered]")
    late = sum(1 for at in ack if at > DISCORD_DEADLINE_S)
    print(f"after Discord's 3 s     : {late} answer(s); callbacks refused by the stub: {refused}")
    print(f"result posted           : p50 {statistics.median(done):7.2f} s, max {max(done):7.2f} s")
    print(
        f"every result posted     : {all_posted:7.2f} s after the first command "
        f"({args.commands / all_posted:.2f} images/s end to end)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--commands", type=int, default=200)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--steps", type=int, default=1, help="denoising steps per image")
    parser.add_argument("--batch", type=int, default=8, help="SCHEDULER_MAX_BATCH_IMAGES")
    parser.add_argument("--engine", choices=("real", "instant"), default=None, help="real")
    parser.add_argument("--quick", action="store_true", help="20 commands, 10 users, instant")
    args = parser.parse_args()
    if args.quick:
        args.commands, args.users = 20, 10
    args.engine = args.engine or ("instant" if args.quick else "real")
    logging.basicConfig(level=logging.ERROR)  # the bot and the engine log every job
    with tempfile.TemporaryDirectory() as scratch:
        asyncio.run(measure(args, Path(scratch)))


if __name__ == "__main__":
    main()

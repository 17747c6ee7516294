"""Soak at full size: 20 users, 200 /imagine jobs through the Discord stub, the engine killed
twice, the bot restarted once, a few per cent of Discord's REST calls failing, connections
dropped under some of the calls that show a job, the image disk full for 20 s, the database
locked by another process for 40 s, and two JPEGs that would take minutes to decode.

Prints jobs, faults injected, jobs lost, jobs posted twice, the slowest first answer to an
interaction and the time taken. The same run at a small size is part of the test suite
(tests/bot/e2e/test_soak.py).

    .venv/bin/python bench/bench_soak.py [--users 20] [--jobs 200] [--kills 2] [--faults 0.03]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tests.bot.e2e.harness import Harness, make_settings
from tests.bot.e2e.soak import SoakPlan, run_soak
from tests.discord_stub import DiscordStub
from tests.fixtures.tiny_models import build_tiny_models


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--kills", type=int, default=2)
    parser.add_argument("--restarts", type=int, default=1)
    parser.add_argument("--faults", type=float, default=0.03)
    parser.add_argument("--drops", type=float, default=0.03)
    parser.add_argument("--disk-full-s", type=float, default=20.0)
    parser.add_argument("--db-locked-s", type=float, default=40.0)
    parser.add_argument("--slow-jpegs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    plan = SoakPlan(
        users=args.users,
        jobs=args.jobs,
        engine_kills=args.kills,
        bot_restarts=args.restarts,
        fault_rate=args.faults,
        drop_rate=args.drops,
        disk_full_s=args.disk_full_s,
        db_locked_s=args.db_locked_s,
        slow_jpegs=args.slow_jpegs,
        seed=args.seed,
    )
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        tiny = build_tiny_models(root / "models")
        async with DiscordStub(strict=False) as stub:
            harness = Harness(root, stub, tiny, make_settings(root, stub, tiny))
            report = await run_soak(harness, plan)
    print(f"soak: {plan}")
    print("\n".join(report.lines()))
    healthy = not (report.lost or report.duplicated or report.inconsistent)
    print("result: " + ("nothing lost, nothing duplicated" if healthy else "PROBLEMS"))
    return 0 if healthy else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))

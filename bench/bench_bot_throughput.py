"""How many images per second the bot itself can deliver, and what each job costs it.

1000 ``/imagine`` jobs from 50 users arrive at once and go through the real bot (discord.py,
the SQLite store, the fair queue and scheduler, delivery at the production edit rate) with an
engine that answers every job at once with a 512x512 PNG (``InstantEngine``: an infinitely fast
GPU, in a process of its own behind the bot's real engine client and pipe, so reading and
decoding its frames counts; ``--engine instant-in-process`` answers from inside the bot, which
leaves that out). The Discord stub runs in its own process (``bench/bot_on_stub.py``), so
everything this process spends is the bot's. Printed, from the first command sent to the last
result posted:

- images/s through the bot;
- the bot's CPU per job (``time.process_time`` of this process, every thread: the event loop
  and aiosqlite's, divided by the jobs);
- SQL statements and transactions per job (SQLAlchemy's ``before_cursor_execute`` and
  ``begin`` events on every engine; a ``BEGIN`` the store sends itself counts as a statement,
  the driver's ``COMMIT`` does not), and how many transactions took SQLite's write lock up
  front (``BEGIN IMMEDIATE``);
- Discord REST requests per job and message edits (PATCH) per job, counted by the stub;
- the bot process's peak resident memory (``ru_maxrss``: the whole run, start-up included).

    python bench/bench_bot_throughput.py            # 1000 jobs, 50 users
    python bench/bench_bot_throughput.py --quick    # 40 jobs, 10 users (CI)
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from bench.bot_on_stub import (
    BriefErrorLog,
    EngineFactory,
    InstantEngine,
    InstantEngineInProcess,
    bot_on_stub,
    burst,
    log_errors_briefly,
)
from bench.burst import BurstReport
from tests.fixtures.tiny_models import TinyModels

LATE_DEFERRAL_ACCEPTED_S = 600.0
DISCORD_DEADLINE_S = 3.0


@dataclass
class SqlCounts:
    """Statements and transactions on every SQLAlchemy engine of this process."""

    statements: int = 0  # every one sent through a cursor, BEGIN included
    transactions: int = 0
    write_locking: int = 0  # BEGIN IMMEDIATE / EXCLUSIVE

    def on_statement(self, statement: str) -> None:
        self.statements += 1
        if statement.lstrip().upper().startswith(("BEGIN IMMEDIATE", "BEGIN EXCLUSIVE")):
            self.write_locking += 1


@contextmanager
def counting_sql() -> Iterator[SqlCounts]:
    """Count SQL on every engine (class-level listeners: engines made later count too)."""
    counts = SqlCounts()

    def before_cursor_execute(_conn: Connection, _cursor: Any, statement: str, *_args: Any) -> None:
        counts.on_statement(statement)

    def begin(_conn: Connection) -> None:
        counts.transactions += 1

    event.listen(Engine, "before_cursor_execute", before_cursor_execute)
    event.listen(Engine, "begin", begin)
    try:
        yield counts
    finally:
        event.remove(Engine, "before_cursor_execute", before_cursor_execute)
        event.remove(Engine, "begin", begin)


@dataclass(frozen=True)
class Figures:
    """What one run measured in the bot's process."""

    burst: BurstReport
    cpu_s: float
    sql: SqlCounts


def instant_engine(args: argparse.Namespace) -> EngineFactory:
    """The stand-in ``--engine`` names, its pictures spooled or piped as ``--pictures`` says."""
    if args.engine == "instant-in-process":
        return lambda _spool: InstantEngineInProcess()
    if args.pictures == "piped":
        return lambda _spool: InstantEngine()
    return InstantEngine


async def measure(args: argparse.Namespace, root: Path) -> Figures:
    # The instant engine never opens the models; the bot only stores their names.
    tiny = TinyModels(*(root / name for name in "abcd"))
    running = bot_on_stub(
        root,
        tiny,
        max_queued_jobs=args.jobs,
        batch_images=args.batch,
        engine=instant_engine(args),
        # Every job must enter the queue, however late the bot defers it on a loaded machine:
        # this measures throughput; bench_ack_latency.py measures the deferral.
        callback_deadline=LATE_DEFERRAL_ACCEPTED_S,
    )
    async with running as (stub, bot):
        if args.max_uploads:
            bot.delivery.limit_uploads(args.max_uploads)
        with counting_sql() as sql:
            cpu = time.process_time()
            report = await burst(stub, args.jobs, args.users)
            cpu_s = time.process_time() - cpu
    return Figures(report, cpu_s, sql)


def report(args: argparse.Namespace, figures: Figures, errors: BriefErrorLog) -> None:
    """Print the figures, per job where that is how the targets are stated."""
    done = figures.burst
    jobs = len(done.commands)
    sql = figures.sql
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    requests = sum(done.requests.values())
    print(
        f"{jobs} /imagine jobs from {min(args.users, jobs)} users at once, instant engine "
        f"({args.engine}, 512x512 PNG), up to {args.batch} images per call, production edit rate; "
        "the stub in its own process"
    )
    print(
        f"images/s through the bot : {done.images / done.all_posted_s:7.2f}  "
        f"({done.images} images, every result posted after {done.all_posted_s:.2f} s)"
    )
    print(f"bot CPU per job          : {figures.cpu_s / jobs * 1000:7.2f} ms")
    print(
        f"SQL per job              : {sql.statements / jobs:7.2f} statements, "
        f"{sql.transactions / jobs:.2f} transactions ({sql.write_locking / jobs:.2f} BEGIN "
        "IMMEDIATE)"
    )
    print(
        f"Discord per job          : {done.edits / jobs:7.2f} edits (PATCH), "
        f"{requests / jobs:.2f} REST requests in all"
    )
    print(f"bot RSS peak             : {peak_mib:7.1f} MiB")
    late = sum(1 for c in done.commands if (c.answered or 0.0) > DISCORD_DEADLINE_S)
    print(
        f"posted {done.posted} of {jobs} jobs; {late} deferred after 3 s (taken anyway here); "
        f"errors the bot logged: {errors.summary()}; the stub's process: {done.stub_load()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--batch", type=int, default=8, help="SCHEDULER_MAX_BATCH_IMAGES")
    parser.add_argument("--quick", action="store_true", help="40 jobs, 10 users")
    parser.add_argument(
        "--engine",
        choices=("instant", "instant-in-process"),
        default="instant",
        help="instant: behind a pipe (bench.instant_engine); in-process: inside the bot",
    )
    parser.add_argument(
        "--pictures",
        choices=("spooled", "piped"),
        default="spooled",
        help="spooled: the engine writes them where the store takes them, as the bot runs it; "
        "piped: in the frames, as to a Ray replica",
    )
    parser.add_argument(
        "--max-uploads",
        type=int,
        default=0,
        help="messages with files uploading at once (default: the bot's MAX_UPLOADS)",
    )
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.users = 40, 10
    errors = log_errors_briefly()
    with tempfile.TemporaryDirectory() as scratch:
        report(args, asyncio.run(measure(args, Path(scratch))), errors)


if __name__ == "__main__":
    main()

"""A soak run: many users and jobs through the Discord stub while things break.

The engine is killed mid-batch, the bot is restarted once, a fraction of Discord's REST
calls fail (429 and 500) and a fraction of the calls that show a job lose their connection
(before or after Discord acted on them). In the first part the image disk is full for a
while (every write refused with ENOSPC), another process holds the database's write lock for
a while, and some students upload a JPEG that takes minutes of CPU to decode. At the end
every job must be done or failed with a message its owner received, none lost or posted
twice, and the store consistent. Used at a small size by the test suite and at full size by
``bench/bench_soak.py``.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import os
import random
import re
import signal
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass, field

from bot.store.models import JobStatus
from tests.bot.e2e.harness import CHANNEL, Harness, eventually, make_settings


@dataclass(frozen=True)
class SoakPlan:
    users: int = 20
    jobs: int = 200
    engine_kills: int = 2
    bot_restarts: int = 1
    fault_rate: float = 0.03
    drop_rate: float = 0.0  # of the calls that show a job: the connection drops
    disk_full_s: float = 0.0  # the image disk refuses every write this long
    db_locked_s: float = 0.0  # another process holds the database's write lock this long
    slow_jpegs: int = 0  # /inpaint uploads that would take minutes of CPU to decode
    seed: int = 1
    timeout: float = 1500.0


@dataclass
class SoakReport:
    commands: int = 0
    jobs: int = 0
    done: int = 0
    failed: int = 0
    lost: list[int] = field(default_factory=list)  # job ids with no final message
    duplicated: list[int] = field(default_factory=list)  # job ids posted more than once
    inconsistent: list[str] = field(default_factory=list)
    engine_kills: int = 0
    bot_restarts: int = 0
    discord_faults: int = 0
    dropped_connections: int = 0
    disk_full_s: float = 0.0
    db_locked_s: float = 0.0
    slow_jpegs_refused: int = 0
    unanswered: int = 0  # interactions Discord never saw answered (their jobs still count)
    slowest_first_answer_s: float = 0.0
    seconds: float = 0.0

    def lines(self) -> list[str]:
        return [
            f"commands sent        {self.commands}",
            f"jobs in the store    {self.jobs}",
            f"done / failed        {self.done} / {self.failed}",
            f"engine kills         {self.engine_kills}",
            f"bot restarts         {self.bot_restarts}",
            f"Discord faults       {self.discord_faults}",
            f"dropped connections  {self.dropped_connections}",
            f"disk full for        {self.disk_full_s:.0f} s",
            f"database locked for  {self.db_locked_s:.0f} s",
            f"slow JPEGs refused   {self.slow_jpegs_refused}",
            f"never answered       {self.unanswered}",
            f"slowest first answer {self.slowest_first_answer_s:.2f} s",
            f"jobs lost            {len(self.lost)} {self.lost or ''}",
            f"jobs posted twice    {len(self.duplicated)} {self.duplicated or ''}",
            f"store inconsistent   {len(self.inconsistent)} {self.inconsistent[:5] or ''}",
            f"time                 {self.seconds:.1f} s",
        ]


def _final_job_ids(content: str, has_result: bool) -> int | None:
    """The job a final message is about: a result (images + Reroll) or a failure line."""
    if not (has_result or "**Failed**" in content):
        return None
    found = re.search(r"job #(\d+)", content)
    return int(found.group(1)) if found else None


async def run_soak(harness: Harness, plan: SoakPlan) -> SoakReport:
    report = SoakReport()
    rng = random.Random(plan.seed)
    stub = harness.stub
    harness.settings = make_settings(
        harness.tmp_path,
        stub,
        harness.tiny,
        images_per_hour=10**6,
        max_queued_jobs=plan.jobs,
        # The slow JPEG is scaled down to what CI affords: a few seconds of CPU, not minutes;
        # the decode limit with it.
        decode_cpu_s=0.5,
    )
    users = [stub.add_user(f"soak{i}") for i in range(plan.users)]
    chaos = stub.chaos(plan.fault_rate, seed=plan.seed, drop_rate=plan.drop_rate)
    started = time.monotonic()
    kills_left = plan.engine_kills
    segments = plan.bot_restarts + 1
    per_segment = -(-plan.jobs // segments)
    sent = 0

    async with asyncio.timeout(plan.timeout):
        for segment in range(segments):
            async with harness.bot() as bot:
                if segment:
                    report.bot_restarts += 1
                batch = range(sent, min(plan.jobs, sent + per_segment))
                if segment == 0:
                    for n in range(plan.slow_jpegs):
                        report.slow_jpegs_refused += await _slow_jpeg(stub, users[n % plan.users])
                for n in batch:
                    await stub.invoke_slash(
                        "imagine",
                        {"prompt": f"soak {n}", "steps": rng.choice((1, 2))},
                        user=users[n % plan.users],
                        channel=CHANNEL,
                    )
                    report.commands += 1
                sent = batch.stop
                troubles = []
                if segment == 0:  # while the first jobs finish
                    troubles = [asyncio.create_task(_io_faults(harness, bot, plan, report))]
                # Kill the engine mid-batch, spread over the segments.
                kills_here = -(-kills_left // (segments - segment)) if kills_left else 0
                for _ in range(kills_here):
                    await _kill_engine_mid_batch(bot)
                    report.engine_kills += 1
                    kills_left -= 1
                await asyncio.gather(*troubles)
                if segment < segments - 1:
                    # Restart with work still queued: some results out first, not all.
                    half = sent - len(batch) // 2
                    await eventually(functools.partial(_finished_at_least, bot, half), plan.timeout)
                else:
                    await eventually(
                        functools.partial(_all_delivered, bot, plan.jobs), plan.timeout
                    )
        report.seconds = time.monotonic() - started
    stub.chaos(0)
    report.discord_faults = chaos.hits
    report.dropped_connections = chaos.drops
    first_answers = [h.response.at for h in stub.interactions if h.response is not None]
    report.unanswered = len(stub.interactions) - len(first_answers)
    report.slowest_first_answer_s = max(first_answers, default=0.0)
    await _check(harness, report, [user.id for user in users])
    return report


async def _io_faults(harness: Harness, bot, plan: SoakPlan, report: SoakReport) -> None:  # type: ignore[no-untyped-def]
    """The disk full, then the database locked: one after the other, so that each meets
    results on their way (a locked database holds them all up)."""
    await _disk_full(bot, plan.disk_full_s, report)
    await _database_locked(harness, plan.db_locked_s, report)


async def _disk_full(bot, seconds: float, report: SoakReport) -> None:  # type: ignore[no-untyped-def]
    """Every image write fails as on a full disk, from when the engine is at work until one
    write has been refused and ``seconds`` more have passed. (Patched, not a real full disk:
    the tests run as root, whom permissions do not stop, and filling the machine's disk is
    not a test's business.)"""
    if not seconds:
        return
    refused = asyncio.Event()
    loop = asyncio.get_running_loop()

    def full(*_: object) -> None:
        loop.call_soon_threadsafe(refused.set)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    async with asyncio.timeout(300):
        while not (bot.engine.ready and bot.engine.in_flight):  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    store = bot.images
    store._write = full
    # The engine's spool is on the same disk, so its writes fail too: a file where the folder
    # was refuses them. The engine then sends its pictures in the frames, as it does when it
    # cannot spool, and the bot's own write of them meets the full disk. Pictures spooled
    # before are set aside with the folder: gone, as far as the bot can tell.
    aside = store.spool.with_name(".spool-aside")
    store.spool.rename(aside)
    store.spool.write_bytes(b"")
    try:
        async with asyncio.timeout(300):
            await refused.wait()
        await asyncio.sleep(seconds)
    finally:
        del store._write  # the class's own again
        store.spool.unlink()
        aside.rename(store.spool)
    report.disk_full_s += seconds


async def _database_locked(harness: Harness, seconds: float, report: SoakReport) -> None:
    """Another process's transaction holds the database's write lock for ``seconds``."""
    if not seconds:
        return
    path = harness.settings.database.url.split("///", 1)[1]

    def hold() -> None:
        other = sqlite3.connect(path, timeout=60, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            time.sleep(seconds)
            other.execute("COMMIT")
        finally:
            other.close()

    await asyncio.to_thread(hold)
    report.db_locked_s += seconds


async def _slow_jpeg(stub, user) -> int:  # type: ignore[no-untyped-def]
    """An /inpaint whose picture would take minutes to decode; 1 if it was refused in time."""
    from tests.bot.jobs.test_decoding import repeated_scan_jpeg

    handle = await stub.invoke_slash(
        "inpaint",
        {"prompt": "slow", "mask_prompt": "the sky", "steps": 1},
        user=user,
        channel=CHANNEL,
        attachments={"image": ("slow.jpg", repeated_scan_jpeg(), "image/jpeg")},
    )
    answer = await handle.wait_for_message(lambda m: "too long to read" in m.content, timeout=120)
    return int(answer is not None)


async def _kill_engine_mid_batch(bot) -> None:
    async with asyncio.timeout(300):
        while not (bot.engine.ready and bot.engine.in_flight):  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    os.kill(bot.engine.pid, signal.SIGKILL)
    # Wait for the replacement, so the next kill hits a new process.
    async with asyncio.timeout(300):
        while not bot.engine.ready:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def _finished(bot) -> int:  # type: ignore[no-untyped-def]
    counts = await bot.repo.count_by_status()
    return sum(n for status, n in counts.items() if status.is_final)


async def _finished_at_least(bot, n: int) -> bool:  # type: ignore[no-untyped-def]
    return await _finished(bot) >= n


async def _all_delivered(bot, jobs: int) -> bool:  # type: ignore[no-untyped-def]
    # Finished in the store, and delivery has nothing left on its way to Discord.
    return await _finished(bot) >= jobs and not bot.delivery.busy


async def _check(harness: Harness, report: SoakReport, user_ids: list[int]) -> None:
    stub = harness.stub
    finals: Counter[int] = Counter()
    seen: set[tuple[int, int]] = set()
    messages = [m for h in stub.interactions for m in h.messages] + stub.channel_messages(CHANNEL)
    for message in messages:
        has_result = bool(message.attachments) and any(
            c.startswith("job:reroll:") for c in message.custom_ids
        )
        job_id = _final_job_ids(message.content, has_result)
        if job_id is not None and (job_id, message.id) not in seen:
            seen.add((job_id, message.id))
            finals[job_id] += 1
    async with harness.repository() as repo:
        jobs = [job for user in user_ids for job in await repo.history(user, 10**6)]
    report.jobs = len(jobs)
    for job in jobs:
        if job.status is JobStatus.DONE:
            report.done += 1
            if len(job.images) != len(job.seeds):
                report.inconsistent.append(f"job {job.id}: {len(job.images)} images")
            for image in job.images:
                if not (harness.settings.storage.output_dir / image.path).is_file():
                    report.inconsistent.append(f"job {job.id}: {image.path} missing")
        elif job.status is JobStatus.FAILED:
            report.failed += 1
            if not job.error:
                report.inconsistent.append(f"job {job.id}: failed without a message")
        else:
            report.inconsistent.append(f"job {job.id}: left {job.status.value}")
        if finals[job.id] == 0:
            report.lost.append(job.id)
        elif finals[job.id] > 1:
            report.duplicated.append(job.id)
    if report.jobs != report.commands:  # the slow JPEGs are refused: no job
        report.inconsistent.append(f"{report.commands} commands but {report.jobs} jobs")

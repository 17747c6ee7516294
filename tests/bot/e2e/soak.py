"""A soak run: many users and jobs through the Discord stub while things break.

The engine is killed mid-batch, the bot is restarted once, and a fraction of Discord's REST
calls fail (429 and 500). At the end every job must be done or failed with a message its
owner received, none lost or posted twice, and the store consistent. Used at a small size by
the test suite and at full size by ``bench/bench_soak.py``.
"""

from __future__ import annotations

import asyncio
import functools
import os
import random
import re
import signal
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
    seconds: float = 0.0

    def lines(self) -> list[str]:
        return [
            f"commands sent        {self.commands}",
            f"jobs in the store    {self.jobs}",
            f"done / failed        {self.done} / {self.failed}",
            f"engine kills         {self.engine_kills}",
            f"bot restarts         {self.bot_restarts}",
            f"Discord faults       {self.discord_faults}",
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
    )
    users = [stub.add_user(f"soak{i}") for i in range(plan.users)]
    chaos = stub.chaos(plan.fault_rate, seed=plan.seed)
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
                for n in batch:
                    await stub.invoke_slash(
                        "imagine",
                        {"prompt": f"soak {n}", "steps": rng.choice((1, 2))},
                        user=users[n % plan.users],
                        channel=CHANNEL,
                    )
                    report.commands += 1
                sent = batch.stop
                # Kill the engine mid-batch, spread over the segments.
                kills_here = -(-kills_left // (segments - segment)) if kills_left else 0
                for _ in range(kills_here):
                    await _kill_engine_mid_batch(bot)
                    report.engine_kills += 1
                    kills_left -= 1
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
    await _check(harness, report, [user.id for user in users])
    return report


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
    if report.jobs != report.commands:
        report.inconsistent.append(f"{report.commands} commands but {report.jobs} jobs")

"""Periodic chores of a job's life, one loop per concern, each guarded: a failure in one
(a locked database, say) is logged and retried next round, and never stops the others."""

from __future__ import annotations

import asyncio
import logging
import time

from bot.jobs.retention import Retention
from bot.jobs.scheduler import EngineLike, Scheduler
from bot.store.repository import Repository

log = logging.getLogger(__name__)

WATCH_EVERY_S = 30.0
PRUNE_EVERY_S = 3600.0
RETENTION_EVERY_S = 3600.0


async def restart_stalled_engine(
    scheduler: Scheduler, engine: EngineLike, stall_timeout_s: float
) -> None:
    """Kill (and so restart) an engine that has said nothing about its batch for too long;
    the engine client retries the batch once. An engine that is restarting is not stalled:
    its batches wait in the client, and the clock starts again once it is up."""
    while True:
        try:
            stalled = scheduler.stalled_for()
            if not engine.ready:
                scheduler.last_activity = time.monotonic()
            elif stalled > stall_timeout_s and engine.in_flight:
                log.error(
                    "the engine has said nothing about its batch for %.0f s; restarting it",
                    stalled,
                )
                engine.kill()
                scheduler.last_activity = time.monotonic()  # one kill per stall
        except Exception:
            log.exception("the stall watchdog failed this round")
        await asyncio.sleep(min(WATCH_EVERY_S, stall_timeout_s / 4))


async def prune_rate_limits(repo: Repository) -> None:
    """Forget rate-limit rows too old to count, hourly."""
    while True:
        try:
            pruned = await repo.prune_rate_limits()
            log.debug("pruned %d old rate-limit rows", pruned)
        except Exception:
            log.exception("could not prune old rate-limit rows; trying again later")
        await asyncio.sleep(PRUNE_EVERY_S)


async def remove_expired_files(retention: Retention) -> None:
    """Delete result files and uploads past the retention (``bot.jobs.retention``), hourly."""
    while True:
        try:
            swept = await retention.sweep()
            if swept.originals:
                log.info("moderation: deleted %d reviewed original(s)", swept.originals)
            if swept.spooled:
                log.info("deleted %d spooled picture(s) whose result never came", swept.spooled)
            if swept.images or swept.uploads:
                log.info(
                    "retention: deleted %d result image(s) and %d upload(s) older than %d days",
                    swept.images,
                    swept.uploads,
                    retention.days,
                )
        except Exception:
            log.exception("the retention pass failed; trying again in an hour")
        await asyncio.sleep(RETENTION_EVERY_S)

"""Engine replicas on a real local Ray cluster, through the Discord stub: three users' queue
on two CPU replicas (one torch thread each), one replica's process killed mid-batch."""

import asyncio
import os
import signal

import pytest

from bot.settings import SchedulerSettings
from bot.store.models import JobStatus
from tests.bot.e2e.harness import CHANNEL, engine_env, eventually
from tests.bot.e2e.test_imagine import has_png, imagine

pytest.importorskip("ray")

START_TIMEOUT = 90  # a cluster, Serve and two replicas importing torch, on two shared cores
RESULT_TIMEOUT = 60


async def test_two_replicas_keep_the_fair_order_and_retry_a_killed_replicas_job(harness):
    from bot.jobs.ray_engine import RayEngine

    # One job per batch, so the six jobs make six batches for the two replicas to share.
    harness.settings = harness.settings.model_copy(
        update={"scheduler": SchedulerSettings(max_batch_images=1, _env_file=None)}
    )
    engine = RayEngine(replicas=2, env=engine_env(harness.tiny), cpus_per_replica=1)
    sent: list[int] = []  # the job ids in the order the scheduler sent them
    run_batch = engine.run_batch

    async def recording_run_batch(jobs):
        jobs = tuple(jobs)
        sent.extend(job.job_id for job in jobs)
        await run_batch(jobs)

    engine.run_batch = recording_run_batch  # type: ignore[method-assign]
    try:
        async with harness.bot(engine=engine) as bot:
            stub = harness.stub

            async def replicas_ready() -> bool:
                return all(engine.replica_pids) and len(engine.replica_pids) == 2

            await eventually(replicas_ready, START_TIMEOUT)
            assert len(set(engine.replica_pids)) == 2  # two processes, neither the bot
            painting: set[int] = set()
            progress = bot.delivery.progress

            async def noting_progress(job_id, event):
                painting.add(job_id)
                await progress(job_id, event)

            bot.delivery.progress = noting_progress  # type: ignore[method-assign]
            await bot.scheduler.pause()
            ada, bo, cy = (stub.add_user(name) for name in ("ada", "bo", "cy"))
            # Jobs 1-3 are ada's, 4-5 bo's, 6 cy's; long enough to be killed while running.
            handles = [
                await imagine(stub, user, steps=steps, seed=seed)
                for seed, (user, steps) in enumerate(
                    [(ada, 30), (ada, 8), (ada, 8), (bo, 30), (bo, 8), (cy, 8)]
                )
            ]
            for handle in handles:
                await handle.wait_for_message(lambda m: "Queued" in m.content)
            await bot.scheduler.resume()

            async def first_job_painting() -> bool:
                return 1 in painting

            await eventually(first_job_painting, RESULT_TIMEOUT)
            (killed,) = [r.ready.pid for r in engine._replicas if r.batch and 1 in r.batch]
            os.kill(killed, signal.SIGKILL)

            for handle in handles:
                await handle.wait_for_message(has_png, timeout=2 * RESULT_TIMEOUT)

            # Serve replaced the killed replica.
            async def replaced() -> bool:
                pids = engine.replica_pids
                return all(pids) and killed not in pids

            await eventually(replaced, START_TIMEOUT)
            assert engine.restarts == 1

            # Round-robin: ada, bo, cy, ada, bo, ada; job 1 sent again after the crash.
            first_sends = list(dict.fromkeys(sent))
            assert first_sends == [1, 4, 6, 2, 5, 3]
            assert sent.count(1) == 2 and len(sent) == 7
            for job_id in range(1, 7):
                job = await bot.repo.get_job(job_id)
                assert job.status is JobStatus.DONE, (job_id, job.status, job.error)
                assert len(job.images) == 1  # made and kept once
                assert job.attempts == (2 if job_id == 1 else 1)
            # Each result went into its own message; nothing was posted twice in the channel.
            assert not [m for m in stub.channel_messages(CHANNEL) if m.png_attachments]
    finally:
        await asyncio.wait_for(engine.stop(), 60)  # stopped by the bot already: a no-op

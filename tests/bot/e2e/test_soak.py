"""The soak run at a size CI can afford (bench/bench_soak.py runs it at full size)."""

from tests.bot.e2e.soak import SoakPlan, run_soak


async def test_soak_nothing_lost_or_duplicated_under_faults(harness):
    plan = SoakPlan(
        users=5,
        jobs=16,
        engine_kills=1,
        bot_restarts=1,
        fault_rate=0.05,
        drop_rate=0.1,
        disk_full_s=3,
        db_locked_s=5,
        slow_jpegs=1,
        timeout=400,
    )
    report = await run_soak(harness, plan)
    print("\n".join(report.lines()))
    assert report.commands == report.jobs == 16
    assert report.done + report.failed == 16
    assert report.lost == [] and report.duplicated == [] and report.inconsistent == []
    assert report.engine_kills == 1 and report.bot_restarts == 1
    assert report.discord_faults > 0 and report.dropped_connections > 0
    assert report.slow_jpegs_refused == 1
    assert report.failed > 0  # what the full disk refused, each failed with a message
    assert report.disk_full_s == 3 and report.db_locked_s == 5

"""/history entries say what each job was, so alike prompts can be told apart."""

from datetime import UTC, datetime

from bot.features.history._cog import history_entry
from bot.store.models import Job, JobStatus
from engine.protocol import JobKind


def job(**fields) -> Job:
    base = dict(
        id=5,
        kind=JobKind.TEXT_TO_IMAGE,
        status=JobStatus.DONE,
        prompt="a fox",
        seeds=[42],
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        channel_id=2,
        guild_id=1,
        result_message_id=3,
        parent_job_id=None,
        comparison=None,
        error=None,
    )
    base.update(fields)
    return Job(**base)


def test_entries_name_rerolls_comparisons_and_inpaintings():
    assert history_entry(job()).startswith("✅ **#5** `a fox` · seed 42 · <t:1767225600:R>")
    assert "[result](https://discord.com/channels/1/2/3)" in history_entry(job())
    assert "**#5** · reroll of #1 `a fox`" in history_entry(job(parent_job_id=1))
    assert "· guidance comparison of #1" in history_entry(
        job(parent_job_id=1, comparison="guidance")
    )
    grid = [{"axis": "guidance", "values": [3.0, 7.5]}, {"axis": "scheduler", "values": ["ddim"]}]
    assert "· X/Y grid: guidance 3, 7.5 × scheduler DDIM `a fox`" in history_entry(
        job(comparison="xy", comparison_values=grid)
    )
    assert "**#5** · inpaint `a fox`" in history_entry(job(kind=JobKind.INPAINT))
    upscale = job(kind=JobKind.UPSCALE, parent_job_id=1)
    assert "**#5** · ×4 upscale of #1 `a fox`" in history_entry(upscale)
    failed = history_entry(job(status=JobStatus.FAILED, error="ran out of GPU memory"))
    assert failed.startswith("❌") and "↳ ran out of GPU memory" in failed

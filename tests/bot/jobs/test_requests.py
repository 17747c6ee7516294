"""Copies of a stored job: rerolls and comparisons (``derived_job``) and the engine's spec.

Both copy every declared generation parameter by name, so a new parameter reaches them with
no edit here; these tests set every one away from its default and check that it arrives.
"""

from __future__ import annotations

import discord

from bot.jobs.requests import derived_job
from bot.jobs.scheduler import spec_for
from engine.protocol import GENERATION_PARAMS, JobKind, ModelRef
from tests.bot.doubles import interaction_by, member
from tests.bot.store.test_job_parameters import UNLIMITED, asked


async def test_a_derived_job_copies_every_parameter_for_whoever_asks(repo) -> None:
    parent = await repo.create_job(asked(model_revision="main"), UNLIMITED)
    parent.model_revision_used = "abc123"

    clicker = interaction_by(member(2, "bo"), channel_id=7, locale=discord.Locale.chinese)
    child = derived_job(parent, clicker, steps=3)

    for name in GENERATION_PARAMS:
        expected = 3 if name == "steps" else getattr(asked(), name)
        assert getattr(child, name) == expected, name
    assert (child.user_id, child.user_name, child.user_locale) == (2, "bo", "zh-CN")
    assert (child.channel_id, child.guild_id, child.parent_job_id) == (7, 10, parent.id)
    assert (child.kind, child.model_revision, child.image_ref) == (
        JobKind.INPAINT,
        "abc123",  # the revision the parent really ran
        "ab/cd.png",
    )
    assert child.comparison is None  # a reroll of a comparison is a plain job


async def test_the_spec_carries_every_parameter_and_the_inputs_paths(repo) -> None:
    job = await repo.create_job(asked(mask_ref="ef/gh.png"), UNLIMITED)

    spec = spec_for(job, "/inputs")

    for name in GENERATION_PARAMS:
        assert getattr(spec, name) == getattr(asked(), name), name
    assert (spec.job_id, spec.kind, spec.model) == (
        job.id,
        JobKind.INPAINT,
        ModelRef("m", "/models/m"),
    )
    assert (spec.image_path, spec.mask_path) == ("/inputs/ab/cd.png", "/inputs/ef/gh.png")
    assert (spec.variants, spec.decode_steps) == ((), ())

"""/reroll's job option: picked from a list searchable by prompt words, or typed as a number."""

from __future__ import annotations

import pytest
from discord import AppCommandOptionType

from bot.features.reroll._cog import RerollCog, job_id_from, matching_jobs
from bot.store.models import Job
from bot.ui.errors import UserInputError


def jobs(*prompts: str) -> list[Job]:
    """Jobs numbered from 1, newest last."""
    return [Job(id=i, prompt=prompt, seeds=[i]) for i, prompt in enumerate(prompts, start=1)]


def test_the_option_is_text_so_prompt_words_can_be_typed():
    (parameter,) = [p for p in RerollCog.reroll.parameters if p.name == "job"]
    assert parameter.type is AppCommandOptionType.string and parameter.autocomplete
    assert parameter.max_value == 100  # a string option's max_length


def test_prompt_words_find_jobs_in_any_order_and_numbers_find_ids():
    recent = jobs("a watercolor fox in the snow", "a lighthouse at dusk", "snow on a red fox")
    assert [j.id for j in matching_jobs(recent, "fox snow")] == [1, 3]
    assert [j.id for j in matching_jobs(recent, "  WATERCOLOR ")] == [1]
    assert [j.id for j in matching_jobs(recent, "#2")] == [2]
    assert [j.id for j in matching_jobs(recent, "")] == [1, 2, 3]
    assert matching_jobs(recent, "fox dusk") == []


@pytest.mark.parametrize(("typed", "job_id"), [("12", 12), ("#12", 12), (" # 7 ", 7)])
def test_a_number_is_a_job_id(typed, job_id):
    assert job_id_from(typed) == job_id


@pytest.mark.parametrize("typed", ["xyz", "a fox", "0", "-3", "1.5", "١٢", str(2**53), "#"])
def test_anything_else_is_refused_in_the_users_terms(typed):
    with pytest.raises(UserInputError) as refused:
        job_id_from(typed)
    assert str(refused.value) == (
        f"Job “{typed.strip()}” not found: pick one from the list or give its number."
    )

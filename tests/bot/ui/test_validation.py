"""The validators accept exactly what the bot can run, and refuse the rest in user terms."""

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.ui import validation
from bot.ui.errors import UserInputError
from engine.protocol import BOUNDS, MAX_SEED, SCHEDULERS, SIZES

NARROW = BOUNDS.narrowed(steps=50, guidance=12.0, count=2)

CONTROL = [chr(c) for c in [*range(0x00, 0x20), *range(0x7F, 0xA0)]]


@given(st.text(max_size=300))
def test_clean_prompt_never_keeps_control_characters_and_is_idempotent(text):
    try:
        cleaned = validation.clean_prompt(text, what="prompt", max_chars=200, required=True)
    except UserInputError as error:
        assert "prompt" in str(error)
        return
    assert cleaned and len(cleaned) <= 200
    assert not any(c in cleaned for c in CONTROL)
    assert cleaned == cleaned.strip() and "  " not in cleaned
    again = validation.clean_prompt(cleaned, what="prompt", max_chars=200, required=True)
    assert again == cleaned


def test_clean_prompt_messages():
    with pytest.raises(UserInputError, match="The prompt is empty"):
        validation.clean_prompt(" \x00\t\n ", what="prompt", max_chars=10, required=True)
    assert validation.clean_prompt(None, what="negative prompt", max_chars=10, required=False) == ""
    with pytest.raises(UserInputError, match="11 characters long; the most is 10"):
        validation.clean_prompt("x" * 11, what="prompt", max_chars=10, required=True)
    assert validation.clean_prompt("a\x07cat", what="p", max_chars=10, required=True) == "a cat"


@given(st.integers(-(10**6), 10**6))
def test_steps_accepts_exactly_1_to_100(steps):
    if 1 <= steps <= 100:
        assert validation.check_steps(steps) == steps
    else:
        with pytest.raises(UserInputError, match="steps must be between 1 and 100"):
            validation.check_steps(steps)


def test_narrowed_bounds_refuse_more_and_keep_their_defaults_inside():
    assert validation.check_steps(50, NARROW) == 50
    with pytest.raises(UserInputError, match=r"^steps must be between 1 and 50 \(you gave 51\)\.$"):
        validation.check_steps(51, NARROW)
    with pytest.raises(UserInputError, match="guidance must be a number between 0 and 12"):
        validation.check_guidance(12.5, NARROW)
    with pytest.raises(UserInputError, match="count must be between 1 and 2"):
        validation.check_count(3, NARROW)
    low = BOUNDS.narrowed(steps=10, guidance=5.0)
    assert (validation.check_steps(None, low), validation.check_guidance(None, low)) == (10, 5.0)


def test_defaults_are_the_protocols():
    assert validation.check_steps(None) == BOUNDS.steps.default == 30
    assert validation.check_guidance(None) == BOUNDS.guidance.default == 7.5
    assert validation.check_count(None) == BOUNDS.count.default
    assert validation.check_strength(None) == BOUNDS.strength.default
    assert validation.check_size(None) == SIZES[BOUNDS.size]
    assert validation.check_scheduler(None) == BOUNDS.scheduler
    assert validation.check_seed(None) is None


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_strength_accepts_finite_bounded_values_only(strength):
    if math.isfinite(strength) and 0.01 <= strength <= 1:
        assert validation.check_strength(strength) == strength
    else:
        with pytest.raises(UserInputError, match=r"strength must be a number between 0\.01 and 1"):
            validation.check_strength(strength)


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_guidance_accepts_finite_0_to_30_only(guidance):
    if math.isfinite(guidance) and 0 <= guidance <= 30:
        assert validation.check_guidance(guidance) == guidance
    else:
        with pytest.raises(UserInputError, match="guidance must be a number between 0 and 30"):
            validation.check_guidance(guidance)


@given(st.integers(-(2**40), 2**40), st.integers(1, 4))
def test_seeds_are_in_range_and_consecutive(seed, count):
    if not 0 <= seed <= MAX_SEED:
        with pytest.raises(UserInputError, match=f"seed must be between 0 and {MAX_SEED}"):
            validation.seeds_for(seed, count)
        return
    seeds = validation.seeds_for(seed, count)
    assert len(seeds) == count and seeds[0] == seed
    assert all(0 <= s <= MAX_SEED for s in seeds)
    assert all((b - a) % (MAX_SEED + 1) == 1 for a, b in itertools.pairwise(seeds))


@given(st.integers(1, 4))
def test_random_seeds_are_in_range(count):
    seeds = validation.seeds_for(None, count)
    assert len(seeds) == count and all(0 <= s <= MAX_SEED for s in seeds)


def test_counts_sizes_and_schedulers():
    assert validation.check_count(None) == 1
    with pytest.raises(UserInputError, match="count must be between 1 and 4"):
        validation.check_count(5)
    assert validation.check_size("wide") == SIZES["wide"]
    with pytest.raises(UserInputError, match="size must be one of"):
        validation.check_size("huge")
    assert validation.check_scheduler(None) == "euler"
    assert all(validation.check_scheduler(name) == name for name in SCHEDULERS)
    with pytest.raises(UserInputError, match="scheduler must be one of"):
        validation.check_scheduler("heun")


# Bidirectional controls: marks, embeddings and overrides, isolates.
BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
# Zero-width space, non-joiner, joiner, word joiner, byte order mark, and the bidi controls.
INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff" + BIDI


@pytest.mark.parametrize("text", [INVISIBLE, " \u200b \u202e\u2066 ", "\u3164\u2800\u200d"])
def test_a_prompt_of_invisible_characters_is_empty(text):
    with pytest.raises(UserInputError, match="The prompt is empty"):
        validation.clean_prompt(text, what="prompt", max_chars=200, required=True)
    assert validation.clean_prompt(text, what="n", max_chars=200, required=False) == ""


def test_bidi_controls_and_zero_width_spaces_are_dropped_and_joiners_kept():
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # one emoji, held by its joiners
    cleaned = validation.clean_prompt(
        f"a \u202ecat\u2069 on a\u200b mat {family}", what="p", max_chars=200, required=True
    )
    assert cleaned == f"a cat on a mat {family}"


@given(st.text(alphabet=st.sampled_from([*BIDI, "a", "e", "\u0301", " ", "\u200b"]), max_size=40))
def test_cleaned_prompts_hold_no_bidi_control(text):
    cleaned = validation.clean_prompt(text, what="p", max_chars=200, required=False)
    assert not any(c in BIDI for c in cleaned)
    assert validation.clean_prompt(cleaned, what="p", max_chars=200, required=False) == cleaned


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_image_strength_has_its_own_bound(strength):
    if math.isfinite(strength) and 0.05 <= strength <= 1:
        assert validation.check_image_strength(strength) == strength
    else:
        with pytest.raises(UserInputError, match=r"strength must be a number between 0\.05 and 1"):
            validation.check_image_strength(strength)


def test_image_strength_default_and_the_vary_strengths_lie_in_its_bound():
    assert validation.check_image_strength(None) == BOUNDS.image_strength.default == 0.6
    assert (
        BOUNDS.vary_subtle in BOUNDS.image_strength and BOUNDS.vary_strong in BOUNDS.image_strength
    )
    assert BOUNDS.vary_subtle < BOUNDS.vary_strong


def test_a_vary_keeps_the_steps_unless_none_would_be_left():
    assert validation.steps_with_one_left(30, 0.35) == 30
    assert validation.steps_with_one_left(1, 0.35) == 3  # int(3 × 0.35) = 1
    assert validation.steps_with_one_left(1, 0.7) == 2
    assert validation.steps_with_one_left(1, BOUNDS.image_strength.min) == 20

"""The second opinion: the real open_nsfw model loads and scores, the policy decides what is
blurred from both verdicts, and a second classifier that fails counts as flagging."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
import torch
from PIL import Image

from engine.images.safety import SafetyChecker
from engine.images.second_opinion import SecondOpinion, open_nsfw_scorer
from engine.protocol import ModelRef
from engine.run.pipeline_call import check
from tests.engine.helpers import engine_settings, job, pixels
from tests.fixtures.tiny_models import TinyModels


def generated_pictures() -> list[Image.Image]:
    """Pictures anyone would call safe: a flat colour, noise, a gradient."""
    flat = Image.new("RGB", (256, 256), (70, 130, 180))
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8))
    ramp = np.linspace(0, 255, 256, dtype=np.uint8)
    gradient = Image.fromarray(np.stack([np.tile(ramp, (256, 1))] * 3, axis=-1))
    return [flat, noise, gradient]


def test_the_real_open_nsfw_model_loads_and_finds_generated_pictures_safe() -> None:
    scores = list(open_nsfw_scorer()(generated_pictures()))
    assert len(scores) == 3
    assert all(0.0 <= score < 0.5 for score in scores), scores


def _scorer(answer: str):
    """A second classifier that always flags, never flags, or raises."""

    def score(images: Sequence[Image.Image]) -> list[float]:
        if answer == "raises":
            raise RuntimeError("classifier exploded")
        return [0.97 if answer == "flags" else 0.02] * len(images)

    return lambda: score


def _cannot_load():
    raise OSError("no weights")


# (policy, first checker flags, second classifier) -> blurred
MATRIX = [
    ("either", False, "flags", False),  # the second is asked only about what the first flags
    ("either", True, "flags", True),
    ("either", True, "clears", True),
    ("both", False, "flags", False),
    ("both", True, "flags", True),
    ("both", True, "clears", False),  # a false positive of the first is let through
    ("both", True, "raises", True),  # fail closed
    ("both", True, "cannot load", True),
    ("first", True, "clears", True),
    ("first", False, "flags", False),
]


@pytest.mark.parametrize(("policy", "first_flags", "second", "expected"), MATRIX)
def test_the_policy_decides_from_both_verdicts(
    tiny_models: TinyModels, policy: str, first_flags: bool, second: str, expected: bool
) -> None:
    tiny = tiny_models
    checker_path = tiny.safety_checker_always if first_flags else tiny.safety_checker_never
    settings = engine_settings(tiny_models, safety_checker=str(checker_path), second_opinion=policy)
    load = _cannot_load if second == "cannot load" else _scorer(second)
    safety = SafetyChecker(settings, SecondOpinion(settings, load))
    spec = job(ModelRef("tiny", "tiny"), seeds=(3,))
    picture = torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8, generator=torch.Generator())
    made = [(spec, 3, picture)]

    (image,) = check(safety, made).encode(None, 1)

    assert image.nsfw is expected
    assert image.verdict is not None and image.verdict.first is first_flags
    assert image.verdict.first_score is not None  # the checker's margin, caught on the way
    assert (image.verdict.first_score > 0) is first_flags
    asked = first_flags and policy != "first"
    assert (image.verdict.second is not None) is asked
    if asked and second in ("flags", "clears"):
        assert image.verdict.second_score == (0.97 if second == "flags" else 0.02)
    if asked and second in ("raises", "cannot load"):
        assert (image.verdict.second, image.verdict.second_score) == (True, None)
    # The unblurred original travels beside a blurred image, and only then.
    if expected:
        assert image.original_png is not None
        np.testing.assert_array_equal(pixels(image.original_png), picture.permute(1, 2, 0))
        assert not np.array_equal(pixels(image.png), pixels(image.original_png))
    else:
        assert image.original_png is None

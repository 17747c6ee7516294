"""The safety gate: the real checker class decides, flagged images lose all detail, and any
failure counts as flagged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.images.safety import SafetyChecker, obscure
from tests.engine.helpers import engine_settings, shuffle_within_blocks
from tests.fixtures.pickled import pickled_copy
from tests.fixtures.tiny_models import TinyModels


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.mark.parametrize(("width", "height"), [(64, 64), (512, 512), (768, 512)])
def test_obscure_leaves_a_smooth_blur(width: int, height: int) -> None:
    original = noise(width, height)
    # A sharp pattern: the hardest case for a blur.
    original.paste((255, 255, 255), (width // 4, height // 4, width // 2, height // 2))
    result = np.asarray(obscure(original)).astype(int)
    assert result.shape == (height, width, 3)
    # No edges are left: neighbouring pixels differ by a little at most.
    assert np.abs(np.diff(result, axis=0)).max() <= 16
    assert np.abs(np.diff(result, axis=1)).max() <= 16
    residual = np.asarray(original).astype(int) - result
    assert np.abs(residual).mean() > 40


@pytest.mark.parametrize("side", [64, 512])
def test_obscure_keeps_nothing_finer_than_an_eighth_of_the_image(side: int) -> None:
    """Rearranging pixels within each 1/8 x 1/8 block changes nothing in the result."""
    original = np.asarray(noise(side, side))
    shuffled = shuffle_within_blocks(original, side // 8)
    assert not np.array_equal(shuffled, original)
    np.testing.assert_array_equal(
        np.asarray(obscure(Image.fromarray(shuffled))),
        np.asarray(obscure(Image.fromarray(original))),
    )


def test_the_checker_decides_with_its_thresholds(tiny_models: TinyModels) -> None:
    images = [noise(64, 64, seed) for seed in range(3)]
    never = SafetyChecker(engine_settings(tiny_models))
    always = SafetyChecker(
        engine_settings(tiny_models, safety_checker=str(tiny_models.safety_checker_always))
    )
    assert never.flags(images) == [False, False, False]
    assert always.flags(images) == [True, True, True]


def test_a_failing_checker_flags_everything(
    tiny_models: TinyModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    checker = SafetyChecker(engine_settings(tiny_models))

    def broken(images: object) -> list[bool]:
        raise RuntimeError("checker exploded")

    monkeypatch.setattr(checker, "_run", broken)
    assert checker.flags([noise(64, 64)]) == [True]


class _Verdicts(torch.nn.Module):
    """A checker that answers fixed flags, as StableDiffusionSafetyChecker's forward does."""

    def __init__(self, verdicts: list[object]) -> None:
        super().__init__()
        self.verdicts = verdicts

    def forward(self, clip_input: torch.Tensor, images: np.ndarray) -> tuple[object, list]:
        return images, self.verdicts


def test_only_a_definite_false_clears_an_image(tiny_models: TinyModels) -> None:
    """A flag of None (or any other non-answer) counts as flagged: fail closed per image."""
    verdicts = [False, None, True, np.False_, np.True_, torch.tensor(False), 0, "no"]
    checker = SafetyChecker(engine_settings(tiny_models))
    assert checker.load()
    checker._model = _Verdicts(verdicts)
    images = [noise(64, 64, seed) for seed in range(len(verdicts))]
    assert checker.flags(images) == [False, True, True, False, True, False, True, True]


def test_a_checker_that_cannot_load_flags_everything(tiny_models: TinyModels) -> None:
    checker = SafetyChecker(engine_settings(tiny_models, safety_checker="nobody/missing-checker"))
    assert checker.load() is False
    assert checker.flags([noise(64, 64), noise(64, 64, 1)]) == [True, True]


def test_a_pickled_checker_is_not_loaded_and_flags_everything(
    tiny_models: TinyModels, tmp_path: Path
) -> None:
    pickled = pickled_copy(tiny_models.safety_checker_never, tmp_path / "pickled-checker")
    checker = SafetyChecker(engine_settings(tiny_models, safety_checker=str(pickled)))
    assert checker.load() is False
    assert checker.flags([noise(64, 64)]) == [True]


def test_only_an_explicit_setting_turns_it_off(tiny_models: TinyModels) -> None:
    assert engine_settings(tiny_models).safety_enabled
    off = SafetyChecker(
        engine_settings(tiny_models, safety_enabled=False, safety_checker="nobody/missing")
    )
    assert off.flags([noise(64, 64)]) == [False]

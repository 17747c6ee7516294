"""The safety gate: the real checker class decides, flagged images lose all detail, and any
failure counts as flagged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from engine.images.safety import SafetyChecker, decide, obscure
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


def _cosines(checker: SafetyChecker, images: list[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
    """Each image's float32 cosines to the checker's special-care and concept embeddings."""
    from diffusers.pipelines.stable_diffusion.safety_checker import cosine_distance

    model: Any = checker._model
    with torch.inference_mode():
        embeds = model.visual_projection(model.vision_model(checker.clip_input(images))[1])
        special = cosine_distance(embeds, model.special_care_embeds).float().numpy()
        concepts = cosine_distance(embeds, model.concept_embeds).float().numpy()
    return special, concepts


def test_the_decision_is_the_checkers_own(tiny_models: TinyModels, tmp_path: Path) -> None:
    """Flags match StableDiffusionSafetyChecker.forward's, image by image, with thresholds
    set where its arithmetic matters: a score that rounds to 0 (not flagged), and a score
    that only a special-care match (+0.01) lifts over 0."""
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPImageProcessor

    images = [photo_like(64, 64, seed) for seed in range(16)]
    base = SafetyChecker(engine_settings(tiny_models))
    assert base.load()
    special, concepts = _cosines(base, images)
    model = StableDiffusionSafetyChecker.from_pretrained(str(tiny_models.safety_checker_never))
    # Image k gets special care; image m (below k on that concept and on concept 0) does not.
    # Thresholds of 2 never fire (cosines lie in [-1, 1]).
    k = int(np.argmax(special[:, 0]))
    m = next(
        i
        for i in range(len(images))
        if special[i, 0] < special[k, 0] - 0.002
        and concepts[i, 0] < concepts[k, 0]
        and concepts[k, 1] < concepts[i, 1] - 0.002  # k stays under m's concept 1
    )
    with torch.no_grad():
        special_t, concept_t = model.special_care_embeds_weights, model.concept_embeds_weights
        special_t.fill_(2.0)
        special_t[0] = float(special[k, 0] + special[m, 0]) / 2
        concept_t.fill_(2.0)
        concept_t[0] = float(concepts[k, 0]) + 0.005  # k's score is -0.005 + 0.01 with care
        concept_t[1] = float(concepts[m, 1]) - 0.0004  # m's score rounds to 0.0: not flagged
    folder = tmp_path / "checker"
    model.save_pretrained(folder)
    CLIPImageProcessor.from_pretrained(str(tiny_models.safety_checker_never)).save_pretrained(
        folder
    )
    checker = SafetyChecker(engine_settings(tiny_models, safety_checker=str(folder)))
    assert checker.load()
    with torch.inference_mode():
        placeholders = np.zeros((len(images), 1, 1, 3), dtype=np.float32)
        _, want = model.eval()(clip_input=checker.clip_input(images), images=placeholders)
    got = checker.flags(images)
    assert got == [bool(flag) for flag in want]
    assert got[k] and not got[m]
    # Without the special-care match image k would be clear: the test reaches that rule.
    row = _cosines(checker, [images[k]])
    assert not decide(row[0][0], row[1][0], [2.0] * 3, concept_t.tolist())


def test_a_cosine_that_is_not_a_number_flags_the_image(tiny_models: TinyModels) -> None:
    """The checker's own rule clears a NaN score (``nan > 0`` is false); the gate fails closed."""
    nan = np.array([np.nan, 0.0, 0.0], dtype=np.float32)
    clear = np.zeros(17, dtype=np.float32)
    assert decide(nan, clear, [2.0] * 3, [2.0] * 17)
    assert decide(np.zeros(3, dtype=np.float32), clear + np.inf, [2.0] * 3, [2.0] * 17)
    assert not decide(np.zeros(3, dtype=np.float32), clear, [2.0] * 3, [2.0] * 17)
    checker = SafetyChecker(engine_settings(tiny_models))
    assert checker.load()
    model: Any = checker._model
    with torch.no_grad():
        model.visual_projection.weight.fill_(float("nan"))
    assert checker.flags([noise(64, 64), noise(64, 64, 1)]) == [True, True]


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


# --- the checker's input, made on the device from decoded pixels ---------------------------


def photo_like(width: int, height: int, seed: int) -> Image.Image:
    """Smooth shapes with a little noise: what decoded pictures look like to a resize."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    waves = [np.sin(x / rng.uniform(8, 40) + p) * np.cos(y / rng.uniform(8, 40)) for p in (0, 1, 2)]
    pixels = (np.stack(waves, axis=-1) + 1) * 110 + rng.normal(0, 4, (height, width, 3))
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))


def as_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)


def embeddings(checker: SafetyChecker, pixel_values: torch.Tensor) -> torch.Tensor:
    model = checker._model
    assert model is not None
    pooled = model.vision_model(pixel_values)[1]
    return torch.nn.functional.normalize(model.visual_projection(pooled), dim=-1)


@pytest.mark.parametrize(
    "extractor",
    [
        {"size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32}},  # the tiny one
        {},  # CLIP's own: 224
    ],
)
@pytest.mark.parametrize(("width", "height"), [(512, 512), (768, 512), (512, 896), (256, 256)])
def test_the_device_input_matches_the_extractor(
    tiny_models: TinyModels, extractor: dict[str, object], width: int, height: int
) -> None:
    """The torch preprocessing differs from the PIL extractor only by resampling arithmetic:
    a level or two of 255 here and there, which moves CLIP's embedding by a hair."""
    from transformers import CLIPImageProcessor

    from engine.images.clip_input import ClipInput

    processor = CLIPImageProcessor(**extractor)
    device_input = ClipInput.from_processor(processor)
    assert device_input is not None
    images = [photo_like(width, height, seed) for seed in range(4)]
    want = processor(images=images, return_tensors="pt")["pixel_values"]
    got = device_input([as_tensor(image) for image in images])
    assert got.shape == want.shape
    difference = (got - want).abs()
    level = 1 / 255 / 0.2613  # one 8-bit level, normalised by CLIP's smallest std
    assert difference.mean() < 0.5 * level and difference.max() < 5 * level
    if extractor:  # the tiny checker's own extractor: compare what it sees
        checker = SafetyChecker(engine_settings(tiny_models))
        assert checker.load()
        with torch.inference_mode():
            cosine = (embeddings(checker, got) * embeddings(checker, want)).sum(dim=-1)
        assert cosine.min() > 0.999


def test_pixels_and_pil_images_get_the_same_verdicts(tiny_models: TinyModels) -> None:
    images = [photo_like(64, 64, seed) for seed in range(3)]
    for source in (tiny_models.safety_checker_never, tiny_models.safety_checker_always):
        checker = SafetyChecker(engine_settings(tiny_models, safety_checker=str(source)))
        from_pil = checker.flags(images)
        assert checker.flags([as_tensor(image) for image in images]) == from_pil
        mixed = [as_tensor(images[0]), images[1], as_tensor(images[2])]
        assert checker.flags(mixed) == from_pil
        assert len(set(from_pil)) == 1  # never or always


def test_pixels_of_different_sizes_are_checked_together(tiny_models: TinyModels) -> None:
    checker = SafetyChecker(engine_settings(tiny_models))
    assert checker.load()
    pictures = [as_tensor(photo_like(64, 64, 0)), as_tensor(photo_like(96, 64, 1))]
    together = checker.clip_input(pictures)
    alone = torch.cat([checker.clip_input([picture]) for picture in pictures])
    torch.testing.assert_close(together, alone)


def test_an_unusual_extractor_is_used_as_it_is(tiny_models: TinyModels, tmp_path: Path) -> None:
    """An extractor that resizes to a fixed size (no shortest side, no crop) is not what the
    torch path reproduces: the checker falls back to the extractor's own PIL path."""
    import shutil

    from transformers import CLIPImageProcessor

    folder = tmp_path / "fixed-size-checker"
    shutil.copytree(tiny_models.safety_checker_always, folder)
    CLIPImageProcessor(size={"height": 32, "width": 32}, do_center_crop=False).save_pretrained(
        folder
    )
    checker = SafetyChecker(engine_settings(tiny_models, safety_checker=str(folder)))
    assert checker.load() and checker._clip_input is None
    assert checker.flags([as_tensor(photo_like(64, 64, 0)), noise(64, 64)]) == [True, True]

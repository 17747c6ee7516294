"""The safety gate every image passes before it leaves the engine process.

The checker is diffusers' ``StableDiffusionSafetyChecker`` with its CLIP feature extractor,
loaded once from the configured source; pipelines are loaded without one so that every model
and task is checked the same way. It fails closed: when the checker cannot load or raises, the
images count as flagged. Flagged images are obscured by ``obscure``. Progress previews are too
small for the checker to judge; they are always obscured instead (``engine.preview``).

The checker's model is run step by step here (``SafetyChecker._run``) so that its decision
reads the thresholds once instead of with a device sync per concept and image; ``decide`` is
its rule, tested against the checker's own ``forward``.

The checker takes decoded pixels where they are (on the GPU, straight from the VAE) and makes
its CLIP input there (``engine.images.clip_input``), so no picture goes to the host and back
for it; PIL images are accepted too (an inpainting job's outlined input).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageFilter

from engine.images.clip_input import ClipInput
from engine.images.pixels import Picture, as_image, as_pixels
from engine.images.second_opinion import SecondOpinion
from engine.settings import EngineSettings

log = logging.getLogger(__name__)

# What remains of a flagged image: this many pixels along its longer side, then blurred.
_OBSCURED_SIDE = 8
_RETRY_LOAD_AFTER_S = 300.0


def obscure(image: Image.Image, blocks: int = _OBSCURED_SIDE) -> Image.Image:
    """Destroy all detail: average into ``blocks`` blocks along the longer side, scale back up,
    and blur the blocks away.

    Each block is the exact mean of its pixels, so nothing finer than a block can survive.
    """
    width, height = image.size
    scale = blocks / max(width, height)
    rows = min(height, max(1, round(height * scale)))
    cols = min(width, max(1, round(width * scale)))
    pixels = np.asarray(image.convert("RGB"), dtype=np.float64)
    means = np.array(
        [
            [cell.mean(axis=(0, 1)) for cell in np.array_split(band, cols, axis=1)]
            for band in np.array_split(pixels, rows, axis=0)
        ]
    )
    small = Image.fromarray(np.rint(means).astype(np.uint8))
    large = small.resize((width, height), Image.Resampling.BILINEAR)
    return large.filter(ImageFilter.GaussianBlur(radius=max(width, height) / (2 * blocks)))


class SafetyChecker:
    """Flags images; loads its model on first use (or at ``load``) and fails closed.

    ``second_opinion`` judges again what this one flags (``engine.images.second_opinion``).
    """

    def __init__(self, settings: EngineSettings, second_opinion: SecondOpinion | None = None):
        self._settings = settings
        self.second_opinion = second_opinion or SecondOpinion(settings)
        self._device = settings.torch_device()
        self._dtype = settings.torch_dtype()
        self._model: torch.nn.Module | None = None
        self._extractor: Any = None
        self._clip_input: ClipInput | None = None  # None: the extractor's own (PIL) path
        # The checker's thresholds (special care, concepts), read once from its weights.
        self._thresholds: tuple[list[float], list[float]] | None = None
        self._load_failed_at: float | None = None

    @property
    def enabled(self) -> bool:
        return self._settings.safety_enabled

    def load(self) -> bool:
        """Load the checker now; True when it is ready. Failures are logged, not raised."""
        if not self.enabled or self._model is not None:
            return True
        failed_at = self._load_failed_at
        if failed_at is not None and time.monotonic() - failed_at < _RETRY_LOAD_AFTER_S:
            return False
        from diffusers.pipelines.stable_diffusion.safety_checker import (
            StableDiffusionSafetyChecker,
        )
        from transformers import CLIPImageProcessor

        source = self._settings.safety_checker
        options = self._settings.hub_options(self._settings.safety_checker_revision)
        try:
            extractor = CLIPImageProcessor.from_pretrained(source, **options)
            model = StableDiffusionSafetyChecker.from_pretrained(
                source, dtype=self._dtype, **options
            )
            self._thresholds = (
                model.special_care_embeds_weights.tolist(),
                model.concept_embeds_weights.tolist(),
            )
            self._model = model.to(self._device).eval()
            self._extractor = extractor
            self._clip_input = ClipInput.from_processor(extractor)
            if self._clip_input is None:
                log.warning("the safety checker's extractor is unusual; preprocessing with PIL")
        except Exception:
            self._load_failed_at = time.monotonic()
            log.exception(
                "could not load the safety checker %r; every image counts as flagged", source
            )
            return False
        log.info("safety checker %r loaded", source)
        return True

    def flags(self, images: Sequence[Picture]) -> list[bool]:
        """One flag per image (PIL, or uint8 pixels ``(3, h, w)`` on any device): True when it
        must be obscured, including when checking failed."""
        return self.judge(images)[0]

    def judge(self, images: Sequence[Picture]) -> tuple[list[bool], list[float | None]]:
        """``flags``, and each image's score: the margin of its nearest concept over that
        concept's threshold (above 0 flags it); None where no score was made."""
        if not images:
            return [], []
        unscored: list[float | None] = [None] * len(images)
        if not self.enabled:
            return [False] * len(images), unscored
        if not self.load():
            return [True] * len(images), unscored
        try:
            return self._run(images)
        except Exception:
            log.exception("the safety checker failed; treating %d image(s) as flagged", len(images))
            return [True] * len(images), unscored

    def clip_input(self, images: Sequence[Picture]) -> torch.Tensor:
        """The checker's input for ``images``, on its device in its dtype."""
        assert self._extractor is not None
        if self._clip_input is not None:
            pixels = self._clip_input([as_pixels(image, self._device) for image in images])
        else:
            converted = [as_image(image) for image in images]
            pixels = self._extractor(images=converted, return_tensors="pt")["pixel_values"]
        return pixels.to(self._device, self._dtype)

    def _run(self, images: Sequence[Picture]) -> tuple[list[bool], list[float | None]]:
        """The checker's own steps (its CLIP embedding, the cosine to each concept), with its
        decision (``decide``) made from one copy of the cosines to the host.

        ``StableDiffusionSafetyChecker.forward`` reads each concept's threshold with
        ``.item()``: twenty device syncs per image on a GPU. The thresholds are read once,
        when the checker loads; the decision is the same, step for step.
        """
        from diffusers.pipelines.stable_diffusion.safety_checker import cosine_distance

        # diffusers' StableDiffusionSafetyChecker, whose submodules nn.Module's typing hides.
        model: Any = self._model
        assert model is not None and self._thresholds is not None
        clip_input = self.clip_input(images)
        with torch.inference_mode():
            pooled = model.vision_model(clip_input)[1]
            embeds = model.visual_projection(pooled)
            special = cosine_distance(embeds, model.special_care_embeds)
            concepts = cosine_distance(embeds, model.concept_embeds)
            # float32 as the checker makes them, then one transfer for both.
            cosines = torch.cat([special.float(), concepts.float()], dim=1).cpu().numpy()
        special_thresholds, concept_thresholds = self._thresholds
        split = len(special_thresholds)
        flags = [
            decide(row[:split], row[split:], special_thresholds, concept_thresholds)
            for row in cosines
        ]
        return flags, self._scores(embeds)

    def _scores(self, embeds: torch.Tensor) -> list[float | None]:
        """Per image, the largest of (similarity to a concept - that concept's threshold), as
        the checker computes them before its special-care adjustment."""
        model: Any = self._model
        assert model is not None
        with torch.inference_mode():
            image = torch.nn.functional.normalize(embeds.float(), dim=-1)
            concept = torch.nn.functional.normalize(model.concept_embeds.float(), dim=-1)
            margins = image @ concept.T - model.concept_embeds_weights.float()
            return [round(float(row.max()), 3) for row in margins.cpu()]


def decide(
    special: np.ndarray,
    concepts: np.ndarray,
    special_thresholds: Sequence[float],
    concept_thresholds: Sequence[float],
) -> bool:
    """Whether one image is flagged, from its float32 cosines to the checker's special-care
    and concept embeddings: ``StableDiffusionSafetyChecker.forward``'s rule, in its own
    arithmetic (a float32 cosine minus a threshold read as a Python float, rounded to three
    decimals; a special-care match adds 0.01 to every later score). A cosine that is not a
    number flags the image (the checker's rule would clear it: ``nan > 0`` is false).
    """
    if not (np.isfinite(special).all() and np.isfinite(concepts).all()):
        return True
    adjustment = 0.0
    for cosine, threshold in zip(special, special_thresholds, strict=True):
        if round(cosine - threshold + adjustment, 3) > 0:
            adjustment = 0.01
    return any(
        round(cosine - threshold + adjustment, 3) > 0
        for cosine, threshold in zip(concepts, concept_thresholds, strict=True)
    )

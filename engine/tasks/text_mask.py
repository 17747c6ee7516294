"""Masks from words: CLIPSeg turns "the dog" into the area of a picture to repaint.

The model (``CIDAS/clipseg-rd64-refined`` by default) loads through ``from_pretrained`` like
every other model, on first use, and stays loaded: it is small next to a diffusion model, and
only ``/inpaint`` jobs with ``mask_prompt`` need it. Its per-pixel probabilities are scaled to
the picture, thresholded, and grown by a little: CLIPSeg's masks are coarse (22×22 patches
upsampled) and hug the object's core, and inpainting blends better when the seam lies just
outside the object rather than on its edge.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from engine.models.registry import ModelUnavailable
from engine.settings import EngineSettings
from engine.tasks.checks import BadInput

log = logging.getLogger(__name__)

# How far the thresholded area is grown, as a share of the picture's longer side (8 px at 512).
GROW_FRACTION = 1 / 64
UNAVAILABLE = "could not load the model that makes masks from words"


def grow_radius(size: tuple[int, int]) -> int:
    """Pixels the mask grows by on every side for a picture of ``size``."""
    return max(1, round(max(size) * GROW_FRACTION))


def nothing_matched(words: str) -> str:
    """What the user reads when the words found nothing to repaint."""
    return (
        f"the mask words “{words}” matched nothing in the image; try other words "
        "(“the sky”, “the dog”) or attach a mask"
    )


class TextMasker:
    """Makes inpainting masks from words; loads CLIPSeg on first use and keeps it."""

    def __init__(self, settings: EngineSettings) -> None:
        self._settings = settings
        self._device = settings.torch_device()
        self._dtype = settings.torch_dtype()
        self._processor: Any = None
        self._model: torch.nn.Module | None = None

    def load(self) -> None:
        """Load the processor and model now; ``ModelUnavailable`` when they cannot be."""
        if self._model is not None:
            return
        from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

        source = self._settings.text_mask_model
        options = self._settings.hub_options(self._settings.text_mask_revision)
        try:
            processor = CLIPSegProcessor.from_pretrained(source, **options)
            model = CLIPSegForImageSegmentation.from_pretrained(
                source, dtype=self._dtype, **options
            )
            self._model = model.to(self._device).eval()
            self._processor = processor
        except Exception as error:
            log.exception("could not load the text-mask model %r", source)
            raise ModelUnavailable(UNAVAILABLE) from error
        log.info("text-mask model %r loaded", source)

    def probabilities(self, image: Image.Image, words: str) -> torch.Tensor:
        """CLIPSeg's probability that each pixel of ``image`` shows ``words`` (H×W, float32)."""
        self.load()
        assert self._model is not None
        inputs = self._processor(
            text=[words],
            images=[image.convert("RGB")],
            padding=True,
            truncation=True,
            return_tensors="pt",
        )
        inputs = {
            name: value.to(self._device, self._dtype)
            if value.is_floating_point()
            else value.to(self._device)
            for name, value in inputs.items()
        }
        with torch.inference_mode():
            logits = self._model(**inputs).logits
        # One picture: (h, w) or (1, h, w) depending on the transformers version.
        small = torch.sigmoid(logits.float()).reshape(1, 1, *logits.shape[-2:])
        # The processor squashed the picture to a square; scaling back restores its shape.
        width, height = image.size
        return F.interpolate(small, size=(height, width), mode="bilinear", align_corners=False)[
            0, 0
        ].cpu()

    def mask(self, image: Image.Image, words: str) -> Image.Image:
        """The area showing ``words``, grown a little: white = repaint, same size as ``image``.

        Raises ``BadInput`` when no pixel reaches the threshold.
        """
        area = self.probabilities(image, words) >= self._settings.text_mask_threshold
        if not bool(area.any()):
            raise BadInput(nothing_matched(words))
        radius = grow_radius(image.size)
        # A max-pool of a 0/1 map is a dilation with a square of side 2r+1.
        grown = F.max_pool2d(area[None, None].float(), 2 * radius + 1, stride=1, padding=radius)
        pixels = (grown[0, 0].numpy() > 0).astype(np.uint8) * 255
        return Image.fromarray(pixels)  # 2-D uint8: mode L

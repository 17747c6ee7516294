"""The safety checker's CLIP input, made on the device from decoded pixels.

The checker's feature extractor (``CLIPImageProcessor``) takes PIL images: on a GPU that means
copying every decoded picture to the host, converting it to PIL, resizing it there and copying
the result back. ``ClipInput`` does the same steps with torch ops where the pixels already are:
resize the shortest side (bicubic, antialiased), centre crop, rescale and normalise with the
extractor's mean and std.

It follows transformers' own tensor backend for CLIP (``TorchvisionBackend``: the same output
size rule, the same crop offsets, the resized picture rounded back to whole 0-255 values).
Against the PIL backend the one difference is the resampling arithmetic: PIL resamples 8-bit
pixels in fixed point, rounding between its horizontal and vertical passes, where torch keeps
floats until the end, so a pixel may differ by one or two levels of 255 after the resize. The
checker's verdict is a threshold on a cosine similarity of CLIP embeddings, which such a
difference moves by far less than it moves between two crops of a picture; the tests compare
embeddings and verdicts of both paths. An extractor configured in a way this does not
reproduce (a fixed resize, no crop, another resampling) is used as it is, through PIL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

# PIL's resampling numbers, as transformers stores them, and torch's name for each.
_MODES = {2: "bilinear", 3: "bicubic"}


def resized_size(height: int, width: int, shortest_edge: int) -> tuple[int, int]:
    """The size a CLIP processor resizes to: the shortest side becomes ``shortest_edge`` and
    the other keeps the aspect ratio, rounded down (transformers' rule)."""
    if width <= height:
        return int(shortest_edge * height / width), shortest_edge
    return shortest_edge, int(shortest_edge * width / height)


@dataclass(frozen=True)
class ClipInput:
    """A CLIP processor's preprocessing as torch ops; ``from_processor`` reads its settings."""

    shortest_edge: int
    crop: tuple[int, int]  # height, width
    mode: str  # torch's interpolation mode
    rescale: float
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def from_processor(cls, processor: Any) -> ClipInput | None:
        """The processor's steps, or None when they are not the ones this reproduces."""
        try:
            return cls._read(processor)
        except (AttributeError, KeyError, TypeError, ValueError):
            return None  # a processor shaped otherwise: its own path is the safe one

    @classmethod
    def _read(cls, processor: Any) -> ClipInput | None:
        size = dict(getattr(processor, "size", None) or {})
        crop = dict(getattr(processor, "crop_size", None) or {})
        resample = getattr(processor, "resample", None)
        steps = ("do_resize", "do_center_crop", "do_rescale", "do_normalize")
        if not all(getattr(processor, step, False) for step in steps):
            return None
        shortest = size.get("shortest_edge")
        if set(k for k, v in size.items() if v) != {"shortest_edge"} or not shortest:
            return None
        height, width = crop.get("height"), crop.get("width")
        if not height or not width or max(height, width) > shortest:
            return None  # a crop larger than the picture pads it; not reproduced here
        mode = _MODES.get(int(resample)) if resample is not None else None
        if mode is None:
            return None
        mean, std = processor.image_mean, processor.image_std
        if len(mean) != 3 or len(std) != 3:
            return None
        return cls(
            shortest_edge=int(shortest),
            crop=(int(height), int(width)),
            mode=mode,
            rescale=float(processor.rescale_factor),
            mean=tuple(float(m) for m in mean),
            std=tuple(float(s) for s in std),
        )

    def __call__(self, pictures: Sequence[torch.Tensor]) -> torch.Tensor:
        """``pixel_values`` (float32, ``(n, 3, crop height, crop width)``) for uint8 pictures
        ``(3, h, w)`` on one device; pictures of equal size are resized together."""
        if not pictures:
            raise ValueError("no pictures")
        if all(picture.shape == pictures[0].shape for picture in pictures):  # a batch's are
            return self._batch(torch.stack(list(pictures)))
        by_size: dict[tuple[int, int], list[int]] = {}
        for index, picture in enumerate(pictures):
            by_size.setdefault((picture.shape[-2], picture.shape[-1]), []).append(index)
        device = pictures[0].device
        out = torch.empty(len(pictures), 3, *self.crop, dtype=torch.float32, device=device)
        for indices in by_size.values():
            batch = torch.stack([pictures[i] for i in indices])
            out[torch.tensor(indices, device=device)] = self._batch(batch)
        return out

    def _batch(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.float()
        height, width = x.shape[-2:]
        new_height, new_width = resized_size(height, width, self.shortest_edge)
        if (new_height, new_width) != (height, width):
            x = F.interpolate(
                x, size=(new_height, new_width), mode=self.mode, antialias=True, align_corners=False
            )
            x = x.clamp(0, 255).round()  # the 8-bit picture both processors resize to
        top = int((new_height - self.crop[0]) / 2.0)
        left = int((new_width - self.crop[1]) / 2.0)
        x = x[..., top : top + self.crop[0], left : left + self.crop[1]]
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return (x * self.rescale - mean) / std

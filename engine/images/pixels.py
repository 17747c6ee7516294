"""Pictures as the engine holds them between the VAE and the PNG: 8-bit pixels on the device.

A pipeline decodes to floats in [0, 1] on the GPU; ``to_pixels`` rounds them to uint8 there,
exactly as diffusers does for its PIL output, so the safety checker can judge them in place
and the batch crosses to the host in one small copy (a byte per value, not four). PIL images
appear only where a picture comes from the user (an inpainting input) and at the very end,
in a finishing thread (``engine.run.finishing``).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

Picture = Image.Image | torch.Tensor  # PIL, or uint8 pixels (3, height, width) on any device


def to_pixels(decoded: torch.Tensor) -> torch.Tensor:
    """Decoded pictures (floats in [0, 1], channels first) as uint8, rounded exactly as
    diffusers' ``numpy_to_pil`` rounds them: float32 times 255, round half to even."""
    return (decoded.float() * 255).round().to(torch.uint8)


def as_pixels(picture: Picture, device: torch.device) -> torch.Tensor:
    """A picture as uint8 pixels ``(3, height, width)`` on ``device``."""
    if isinstance(picture, torch.Tensor):
        if picture.dtype != torch.uint8 or picture.dim() != 3 or picture.shape[0] != 3:
            shape = tuple(picture.shape)
            raise ValueError(f"expected uint8 pixels (3, h, w), got {picture.dtype} {shape}")
        return picture.to(device)
    array = np.asarray(picture.convert("RGB"))
    return torch.from_numpy(array.copy()).permute(2, 0, 1).to(device)


def as_image(picture: Picture) -> Image.Image:
    """A picture as an RGB PIL image."""
    if isinstance(picture, Image.Image):
        return picture.convert("RGB")
    return Image.fromarray(picture.permute(1, 2, 0).contiguous().cpu().numpy())

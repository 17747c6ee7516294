"""Cheap previews: latents to RGB by one linear map, no VAE.

The factors are the least-squares fit of SD 1.x/2.x VAE latents to their decoded colours that
the AUTOMATIC1111 web UI and ComfyUI use for their "cheap" previews. The result is as small as
the latents (1/8 of the image side) and costs a 4x3 matrix product.
"""

from __future__ import annotations

import io

import torch
from PIL import Image

_LATENT_RGB = torch.tensor(
    [
        #   R        G        B
        [0.3512, 0.2297, 0.3227],
        [0.3250, 0.4974, 0.2350],
        [-0.2829, 0.1762, 0.2721],
        [-0.2120, -0.2616, -0.7177],
    ]
)


def latents_to_image(latents: torch.Tensor, max_side: int) -> Image.Image:
    """One image's latents ``(4, h, w)`` as an RGB picture no larger than ``max_side``."""
    if latents.dim() != 3 or latents.shape[0] != _LATENT_RGB.shape[0]:
        raise ValueError(f"expected latents of shape (4, h, w), got {tuple(latents.shape)}")
    rgb = torch.einsum("chw,cr->hwr", latents.detach().float().cpu(), _LATENT_RGB)
    pixels = ((rgb + 1) * 127.5).clamp(0, 255).to(torch.uint8).numpy()
    image = Image.fromarray(pixels)
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    return image


def png_bytes(image: Image.Image) -> bytes:
    """Small PNG bytes for a preview (no metadata: it is not a result)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()

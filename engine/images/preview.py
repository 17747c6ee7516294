"""Cheap previews: latents to RGB by one linear map, no VAE, always obscured.

The factors are the least-squares fit of SD 1.x/2.x VAE latents to their decoded colours that
the AUTOMATIC1111 web UI and ComfyUI use for their "cheap" previews. The result is as small as
the latents (1/8 of the image side) and costs a 4x3 matrix product.

Every preview leaves the engine obscured (``obscured``), whatever the picture shows. The safety
checker cannot vouch for a preview: it is a CLIP model that judges a 224-pixel view of a
decoded image, and a preview is a 64-pixel approximation of the latents' colours, which it
would have to upscale and guess at; decoding every preview at full size to check it would cost
a VAE pass and a checker pass per step. So a preview shows where things are and what colour
they are, in ``PREVIEW_BLOCKS`` blocks along its longer side, and no detail; the final image is
decoded at full size and checked before anyone sees it.
"""

from __future__ import annotations

import functools
import io

import torch
from PIL import Image

from engine.images.safety import obscure

# How many blocks a preview keeps along its longer side: enough to follow the picture's layout
# and colours as it forms, too few for any shape in it (1/8 is what a flagged result keeps).
PREVIEW_BLOCKS = 16
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
    if latents.dim() != 3:
        raise ValueError(f"expected latents of shape (4, h, w), got {tuple(latents.shape)}")
    return latents_to_images(latents[None], max_side)[0]


def latents_to_images(latents: torch.Tensor, max_side: int) -> list[Image.Image]:
    """Latents ``(n, 4, h, w)`` as RGB pictures no larger than ``max_side``.

    The colour map runs where the latents are, for all of them at once, and the 8-bit result
    comes to the host in one copy: one device synchronisation per preview step, whatever the
    number of jobs in the batch.
    """
    if latents.dim() != 4 or latents.shape[1] != _LATENT_RGB.shape[0]:
        raise ValueError(f"expected latents of shape (n, 4, h, w), got {tuple(latents.shape)}")
    rgb = torch.einsum("nchw,cr->nhwr", latents.detach().float(), _latent_rgb(latents.device))
    batch = ((rgb + 1) * 127.5).clamp(0, 255).to(torch.uint8).cpu().numpy()
    images = []
    for pixels in batch:
        image = Image.fromarray(pixels)
        if max(image.size) > max_side:
            image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
        images.append(image)
    return images


@functools.cache
def _latent_rgb(device: torch.device) -> torch.Tensor:
    # Kept per device: copying it there for every preview would be a synchronisation too.
    return _LATENT_RGB.to(device)


def png_bytes(image: Image.Image, compress_level: int = 6) -> bytes:
    """Small PNG bytes for a preview or an overlay (no metadata: not a result)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def obscured(image: Image.Image) -> Image.Image:
    """What a preview may show of ``image``: its layout and colours, blurred, no detail."""
    return obscure(image, blocks=PREVIEW_BLOCKS)

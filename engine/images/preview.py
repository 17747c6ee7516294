"""Cheap previews: latents to RGB by one linear map, no VAE, always obscured.

The factors are the least-squares fits of each family's VAE latents to their decoded colours
that the AUTOMATIC1111 web UI and ComfyUI use for their "cheap" previews: SD 1.x/2.x's and
SDXL's 4 latent channels, FLUX.1's 16 (with a bias). FLUX.1 pipelines hold their latents packed,
2x2 patches of 16 channels as one token (``unpack_flux``). The result is as small as the latents
(1/8 of the image side) and costs a Cx3 matrix product. A tiny decoder (TAESD/TAEF1) would show
more, but it is another download; these need nothing.

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
from engine.protocol import Family

# How many blocks a preview keeps along its longer side: enough to follow the picture's layout
# and colours as it forms, too few for any shape in it (1/8 is what a flagged result keeps).
PREVIEW_BLOCKS = 16
_SD_RGB = (
    #   R        G        B
    (0.3512, 0.2297, 0.3227),
    (0.3250, 0.4974, 0.2350),
    (-0.2829, 0.1762, 0.2721),
    (-0.2120, -0.2616, -0.7177),
)
_SDXL_RGB = (
    (0.3651, 0.4232, 0.4341),
    (-0.2533, -0.0042, 0.1068),
    (0.1076, 0.1111, -0.0362),
    (-0.3165, -0.2492, -0.2188),
)
_SDXL_BIAS = (0.1084, -0.0175, -0.0011)
_FLUX_RGB = (
    (-0.0346, 0.0244, 0.0681),
    (0.0034, 0.0210, 0.0687),
    (0.0275, -0.0668, -0.0433),
    (-0.0174, 0.0160, 0.0617),
    (0.0859, 0.0721, 0.0329),
    (0.0004, 0.0383, 0.0115),
    (0.0405, 0.0861, 0.0915),
    (-0.0236, -0.0185, -0.0259),
    (-0.0245, 0.0250, 0.1180),
    (0.1008, 0.0755, -0.0421),
    (-0.0515, 0.0201, 0.0011),
    (0.0428, -0.0012, -0.0036),
    (0.0817, 0.0765, 0.0749),
    (-0.1264, -0.0522, -0.1103),
    (-0.0280, -0.0881, -0.0499),
    (-0.1262, -0.0982, -0.0778),
)
_FLUX_BIAS = (-0.0329, -0.0718, -0.0851)
# Per family: (latent channels x RGB factors, RGB bias).
_FACTORS: dict[Family, tuple[tuple[tuple[float, ...], ...], tuple[float, ...]]] = {
    Family.SD: (_SD_RGB, (0.0, 0.0, 0.0)),
    Family.SDXL: (_SDXL_RGB, _SDXL_BIAS),
    Family.FLUX: (_FLUX_RGB, _FLUX_BIAS),
}
_VAE_FACTOR = 8  # every family's VAE downscales by 8


def unpack_flux(latents: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """FLUX.1's packed latents ``(n, tokens, 64)`` as ``(n, 16, h, w)``: each token is a 2x2
    patch of 16 channels, tokens row by row (diffusers' ``FluxPipeline._unpack_latents``)."""
    n, tokens, packed = latents.shape
    rows, columns = height // (_VAE_FACTOR * 2), width // (_VAE_FACTOR * 2)
    if tokens != rows * columns or packed % 4:
        raise ValueError(f"packed latents {tuple(latents.shape)} do not fit {width}x{height}")
    patches = latents.view(n, rows, columns, packed // 4, 2, 2)
    return patches.permute(0, 3, 1, 4, 2, 5).reshape(n, packed // 4, rows * 2, columns * 2)


def latents_to_image(
    latents: torch.Tensor, max_side: int, family: Family = Family.SD
) -> Image.Image:
    """One image's latents ``(c, h, w)`` as an RGB picture no larger than ``max_side``."""
    if latents.dim() != 3:
        raise ValueError(f"expected latents of shape (c, h, w), got {tuple(latents.shape)}")
    return latents_to_images(latents[None], max_side, family)[0]


def latents_to_images(
    latents: torch.Tensor, max_side: int, family: Family = Family.SD
) -> list[Image.Image]:
    """Latents ``(n, c, h, w)`` of ``family`` as RGB pictures no larger than ``max_side``.

    The colour map runs where the latents are, for all of them at once, and the 8-bit result
    comes to the host in one copy: one device synchronisation per preview step, whatever the
    number of jobs in the batch.
    """
    factors, bias = _latent_rgb(family, latents.device)
    channels = factors.shape[0]
    if latents.dim() != 4 or latents.shape[1] != channels:
        raise ValueError(
            f"expected latents of shape (n, {channels}, h, w), got {tuple(latents.shape)}"
        )
    rgb = torch.einsum("nchw,cr->nhwr", latents.detach().float(), factors) + bias
    batch = ((rgb + 1) * 127.5).clamp(0, 255).to(torch.uint8).cpu().numpy()
    images = []
    for pixels in batch:
        image = Image.fromarray(pixels)
        if max(image.size) > max_side:
            image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
        images.append(image)
    return images


@functools.cache
def _latent_rgb(family: Family, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    # Kept per device: copying them there for every preview would be a synchronisation too.
    factors, bias = _FACTORS[family]
    return torch.tensor(factors, device=device), torch.tensor(bias, device=device)


def png_bytes(image: Image.Image, compress_level: int = 6) -> bytes:
    """Small PNG bytes for a preview or an overlay (no metadata: not a result)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def obscured(image: Image.Image) -> Image.Image:
    """What a preview may show of ``image``: its layout and colours, blurred, no detail."""
    return obscure(image, blocks=PREVIEW_BLOCKS)

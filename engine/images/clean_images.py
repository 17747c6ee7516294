"""The model's guess of the finished image at a step: the denoising strip's panels.

At every step the scheduler predicts the clean latents (x0) on its way to the next, less noisy
sample. ``CleanImageCapture`` keeps that prediction at chosen steps of one pipeline call, by
wrapping the fresh scheduler's ``step``; ``decode_latents`` turns kept latents into pictures the
way the pipeline decodes its own result. ``/recipe`` scripts do the same in plain diffusers
(``bot/recipe/_script.py``); ``tests/bot/test_recipe_script.py`` checks they agree to the pixel.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch

from engine.images.pixels import to_pixels
from engine.images.preview import unpack_flux
from engine.protocol import Family, family_of_pipeline


def predicted_clean_latents(
    scheduler: Any, output: Any, model_output: torch.Tensor, timestep: Any, sample: torch.Tensor
) -> torch.Tensor:
    """The scheduler's prediction of the clean latents (x0) at the step it just took.

    Euler, Euler a, LMS and DDIM return it (``pred_original_sample``). DPM-Solver++ keeps it
    as its converted model output. PNDM says nothing, so x0 comes from the noise prediction
    and the variance-preserving forward process: x_t = √ᾱ_t·x0 + √(1-ᾱ_t)·ε.
    """
    if isinstance(output, tuple):
        clean = output[1] if len(output) > 1 else None
    else:
        clean = getattr(output, "pred_original_sample", None)
    if clean is not None:
        return clean
    if getattr(scheduler, "alphas_cumprod", None) is None:
        # Flow matching (FLUX.1's sampler) has no noise schedule of ᾱ: x_t = (1-σ)·x0 + σ·noise
        # and the model predicts the velocity v = noise - x0, so x0 = x_t - σ·v, at the σ of the
        # step just taken (the step has moved ``step_index`` on by one).
        sigma = scheduler.sigmas[scheduler.step_index - 1].to(sample.device, torch.float32)
        clean = sample.float() - sigma * model_output.float()
        return clean.to(sample.dtype)
    algorithm = getattr(scheduler.config, "algorithm_type", "")
    history = getattr(scheduler, "model_outputs", None)
    if algorithm in ("dpmsolver++", "sde-dpmsolver++") and history and history[-1] is not None:
        return history[-1]
    alpha = scheduler.alphas_cumprod[int(timestep)].to(sample.device, torch.float32)
    clean = (sample.float() - (1 - alpha).sqrt() * model_output.float()) / alpha.sqrt()
    return clean.to(sample.dtype)


class CleanImageCapture:
    """Keeps the predicted clean latents at chosen steps of one pipeline call."""

    def __init__(self, scheduler: Any, steps: Sequence[int]) -> None:
        self._steps = set(steps)
        self._latest: torch.Tensor | None = None
        self.kept: dict[int, torch.Tensor] = {}  # 1-based step -> x0 of every image in the call
        original = scheduler.step

        # wraps: the pipeline reads step's signature to decide whether to pass the generator
        # (Euler a draws noise from it); a bare wrapper would make it use the global RNG.
        @functools.wraps(original)
        def step(
            model_output: torch.Tensor, timestep: Any, sample: torch.Tensor, *args: Any, **kw: Any
        ) -> Any:
            output = original(model_output, timestep, sample, *args, **kw)
            self._latest = predicted_clean_latents(
                scheduler, output, model_output, timestep, sample
            )
            return output

        # On this instance only: before the next call the engine's SchedulerStore puts the
        # scheduler back as it was built, without this attribute.
        scheduler.step = step

    def after_step(self, step: int) -> None:
        """Called once the pipeline finished its 1-based ``step``."""
        if step in self._steps and self._latest is not None:
            self.kept[step] = self._latest.detach().clone()


def decode_latents(
    pipeline: Any, latents: torch.Tensor, width: int | None = None, height: int | None = None
) -> torch.Tensor:
    """Clean latents to pictures, the way the pipeline decodes its own result: uint8 pixels
    ``(n, 3, h, w)`` on the device, as ``engine.images.pixels.to_pixels`` rounds them.

    FLUX.1's latents come packed in 2x2 patches (``width``/``height``: the picture's, to unpack
    them). SDXL's pipeline decodes a float16 VAE whose config says ``force_upcast`` in float32
    (its VAE overflows in float16), and applies its invisible watermark when it has one.
    """
    vae = pipeline.vae
    if latents.dim() == 3:  # (n, tokens, 64): FLUX.1's packed latents
        if width is None or height is None:
            raise ValueError("packed latents need the picture's width and height")
        latents = unpack_flux(latents, width, height)
    config = vae.config
    sdxl = family_of_pipeline(type(pipeline).__name__) is Family.SDXL
    mean, std = getattr(config, "latents_mean", None), getattr(config, "latents_std", None)
    if sdxl and mean is not None and std is not None:  # SDXL's rule for VAEs that name them
        channels = latents.shape[1]
        mean_t = torch.tensor(mean).view(1, channels, 1, 1).to(latents.device, latents.dtype)
        std_t = torch.tensor(std).view(1, channels, 1, 1).to(latents.device, latents.dtype)
        scaled = latents * std_t / config.scaling_factor + mean_t
    else:
        scaled = latents / config.scaling_factor
    shift = getattr(config, "shift_factor", None)
    if shift:
        scaled = scaled + shift
    upcast = sdxl and vae.dtype == torch.float16 and getattr(config, "force_upcast", False)
    if upcast:
        vae.to(dtype=torch.float32)
    try:
        pixels = vae.decode(scaled.to(vae.dtype), return_dict=False)[0]
    finally:
        if upcast:
            vae.to(dtype=torch.float16)
    watermark = getattr(pipeline, "watermark", None) if sdxl else None
    if watermark is not None:
        pixels = watermark.apply_watermark(pixels)
    return to_pixels(pipeline.image_processor.postprocess(pixels, output_type="pt"))

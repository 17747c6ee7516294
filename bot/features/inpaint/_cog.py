"""The /inpaint command: check the pictures, store them, write the job, queue it.

What can be checked without downloading anything (options, the attachments' declared sizes)
is checked in the command body, so those refusals are instant and private. Downloading,
decoding and fitting the pictures happen in ``JobService.submit`` (``bot.jobs.uploads``), under
its acknowledgement deadline; nothing is stored unless every check passed.
"""

from __future__ import annotations

import math

import discord
from discord import app_commands
from discord.ext import commands

from bot.jobs import inputs, validation
from bot.jobs.job_request import NewImages, Uploads
from bot.services import Services
from bot.ui.checks import require_channel
from bot.ui.errors import UserInputError
from bot.ui.model_options import autocomplete_models
from engine.protocol import MAX_SEED, JobKind

DEFAULT_STRENGTH = 1.0  # repaint the area from scratch, as inpainting checkpoints expect
MIN_STRENGTH = 0.01
MAX_MASK_PROMPT_CHARS = 200  # a few words; CLIPSeg reads at most 77 tokens


def check_strength(strength: float | None, steps: int) -> float:
    """The strength to use; at least one denoising step must remain (steps × strength ≥ 1)."""
    if strength is None:
        return DEFAULT_STRENGTH
    if not math.isfinite(strength) or not MIN_STRENGTH <= strength <= 1:
        raise UserInputError(
            f"strength must be between {MIN_STRENGTH:g} and 1 (you gave {strength:g}); 1 "
            "repaints the area from scratch, lower keeps more of what is there."
        )
    if int(steps * strength) < 1:
        raise UserInputError(
            f"With strength {strength:g} and {steps} step{'s' if steps != 1 else ''}, no "
            "denoising step is left (steps × strength must be at least 1); raise steps or "
            "strength."
        )
    return float(strength)


class InpaintCog(commands.Cog):
    """/inpaint, and where its inputs are stored (by content hash, under STORAGE_INPUT_DIR)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    @app_commands.command(name="inpaint", description="Repaint part of an image from a prompt")
    @app_commands.guild_only()
    @app_commands.describe(
        image=f"The picture to change ({inputs.ALLOWED}); transparent areas are repainted",
        prompt="What to paint in the area, e.g. “a red umbrella”",
        mask="A black-and-white picture of the same shape: white = repaint, black = keep",
        mask_prompt="Or name the area in words, e.g. “the background”, “the dog”",
        negative_prompt="What to steer away from, e.g. “blurry, text”",
        seed="Same seed + same settings = same image (random when empty)",
        steps=f"Denoising steps, {validation.MIN_STEPS}-{validation.MAX_STEPS} "
        f"(default {validation.DEFAULT_STEPS})",
        guidance="Classifier-free guidance: how closely to follow the prompt "
        f"(default {validation.DEFAULT_GUIDANCE})",
        strength="How much of the area to change, up to 1 (default: 1, repaint from scratch)",
        model="Which inpainting model to use (default: the server's default)",
    )
    async def inpaint(
        self,
        interaction: discord.Interaction,
        image: discord.Attachment,
        prompt: app_commands.Range[str, 1, 1000],
        mask: discord.Attachment | None = None,
        mask_prompt: app_commands.Range[str, 1, MAX_MASK_PROMPT_CHARS] | None = None,
        negative_prompt: app_commands.Range[str, 0, 1000] | None = None,
        seed: app_commands.Range[int, 0, MAX_SEED] | None = None,
        steps: app_commands.Range[int, validation.MIN_STEPS, validation.MAX_STEPS] | None = None,
        guidance: app_commands.Range[float, validation.MIN_GUIDANCE, validation.MAX_GUIDANCE]
        | None = None,
        strength: app_commands.Range[float, MIN_STRENGTH, 1.0] | None = None,
        model: str | None = None,
    ) -> None:
        settings = self.services.settings
        require_channel(interaction, settings.discord)
        max_chars = settings.limits.max_prompt_chars
        prompt = validation.clean_prompt(prompt, what="prompt", max_chars=max_chars, required=True)
        negative = validation.clean_prompt(
            negative_prompt, what="negative prompt", max_chars=max_chars, required=False
        )
        words = validation.clean_prompt(
            mask_prompt, what="mask prompt", max_chars=MAX_MASK_PROMPT_CHARS, required=False
        )
        if mask is not None and words:
            raise UserInputError(inputs.more_than_one_mask(["a mask picture", "mask_prompt words"]))
        inputs.check_declared_size(image.size, "image")
        if mask is not None:
            inputs.check_declared_size(mask.size, "mask")
        seeds = validation.seeds_for(seed, 1)
        steps = validation.check_steps(steps)
        guidance = validation.check_guidance(guidance)
        strength = check_strength(strength, steps)

        settings = dict(
            prompt=prompt,
            negative_prompt=negative,
            seeds=seeds,
            steps=steps,
            guidance=guidance,
            scheduler=validation.DEFAULT_SCHEDULER,
            strength=strength,
        )
        uploads = Uploads(image, mask, words or None)
        request = NewImages(JobKind.INPAINT, model, settings, uploads)
        await self.services.jobs.submit(interaction, request)

    @inpaint.autocomplete("model")
    async def _model_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return await autocomplete_models(self.services.repo, JobKind.INPAINT, current)

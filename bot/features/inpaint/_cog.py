"""The /inpaint command: check the pictures, store them, write the job, queue it.

What can be checked without downloading anything (options, the attachments' declared sizes)
is checked in the command body, so those refusals are instant and private. Downloading,
decoding and fitting the pictures happen in ``JobService.submit`` (``bot.jobs.uploads``), under
its acknowledgement deadline; nothing is stored unless every check passed.
"""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.jobs import inputs
from bot.jobs.job_request import NewImages, Uploads
from bot.services import Services
from bot.ui import options, validation
from bot.ui.checks import require_channel
from bot.ui.errors import UserInputError
from bot.ui.model_options import ModelName, autocomplete_models
from engine.protocol import BOUNDS, JobKind


class InpaintCog(commands.Cog):
    """/inpaint: checks what can be checked without downloading, then asks the job service."""

    def __init__(self, services: Services) -> None:
        self.services = services

    @app_commands.command(name="inpaint", description="Repaint part of an image from a prompt")
    @app_commands.guild_only()
    @options.describe(
        "negative_prompt",
        "seed",
        "steps",
        "guidance",
        image=f"The picture to change ({inputs.ALLOWED}); transparent areas are repainted",
        prompt="What to paint in the area, e.g. “a red umbrella”",
        mask="A black-and-white picture of the same shape: white = repaint, black = keep",
        mask_prompt="Or name the area in words, e.g. “the background”, “the dog”",
        # {min}, {max} and {default}: filled from the bounds in force (bot.ui.options).
        strength="How much of the area to change, up to {max} (default: {default}, repaint "
        "from scratch)",
        model=options.model_help("inpainting"),
    )
    async def inpaint(
        self,
        interaction: discord.Interaction,
        image: discord.Attachment,
        prompt: options.Prompt,
        mask: discord.Attachment | None = None,
        mask_prompt: options.MaskPrompt = "",
        negative_prompt: options.NegativePrompt = "",
        seed: options.Seed | None = None,
        steps: options.Steps = BOUNDS.steps.default,
        guidance: options.Guidance = BOUNDS.guidance.default,
        strength: options.Strength = BOUNDS.strength.default,
        model: ModelName | None = None,
    ) -> None:
        settings = self.services.settings
        require_channel(interaction, settings.discord)
        words = mask_prompt
        if mask is not None and words:
            raise UserInputError(inputs.more_than_one_mask(["a mask picture", "mask_prompt words"]))
        inputs.check_declared_size(image.size, "image")
        if mask is not None:
            inputs.check_declared_size(mask.size, "mask")
        seeds = validation.seeds_for(seed, 1)
        validation.check_denoising_left(steps, strength)

        params = dict(
            prompt=prompt,
            negative_prompt=negative_prompt,
            seeds=seeds,
            steps=steps,
            guidance=guidance,
            scheduler=BOUNDS.scheduler,
            strength=strength,
            mask_blend=self.services.settings.models.inpaint_mask_blend,
        )
        uploads = Uploads(image, mask, words or None)
        request = NewImages(
            JobKind.INPAINT, model, params, uploads, given=options.typed_options(interaction)
        )
        await self.services.jobs.submit(interaction, request)

    @inpaint.autocomplete("model")
    async def _model_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return await autocomplete_models(self.services.repo, JobKind.INPAINT, current)

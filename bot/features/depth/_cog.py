"""The /depth command: check what can be checked at once, then ask the job service.

Depth-to-image (Stable Diffusion 2 depth) starts from the picture as image-to-image does, and
also conditions every step on the picture's depth as a depth estimator sees it, so the new
image keeps the picture's layout while the prompt changes what is in it. The picture goes
through /inpaint's checks (type, bytes, pixels) and is fitted the same way, in
``JobService.submit``; the result comes with the depth map beside it (``bot.jobs.depth_map``).
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
from bot.ui.model_options import ModelName, autocomplete_models
from engine.protocol import BOUNDS, JobKind, number_text


class DepthCog(commands.Cog):
    """/depth: checks what can be checked without downloading, then asks the job service."""

    def __init__(self, services: Services) -> None:
        self.services = services

    @app_commands.command(
        name="depth", description="Make a new image with the shape of a picture (its depth)"
    )
    @app_commands.guild_only()
    @options.describe(
        "negative_prompt",
        "seed",
        "steps",
        "guidance",
        image=f"The picture whose depth to keep ({inputs.ALLOWED}); its shape decides the size",
        prompt="What to make of it, e.g. “a marble statue in a museum”",
        # {min}, {max} and {default}: filled from the bounds in force (bot.ui.options).
        strength="How far from the picture's colours to go, {min}-{max} "
        f"(default {number_text(BOUNDS.image_strength.default)}); the depth is kept at any",
        model=options.model_help("depth"),
    )
    async def depth(
        self,
        interaction: discord.Interaction,
        image: discord.Attachment,
        prompt: options.Prompt,
        negative_prompt: options.NegativePrompt = "",
        strength: options.ImageStrength | None = None,
        seed: options.Seed | None = None,
        steps: options.Steps = BOUNDS.steps.default,
        guidance: options.Guidance = BOUNDS.guidance.default,
        model: ModelName | None = None,
    ) -> None:
        require_channel(interaction, self.services.settings.discord)
        inputs.check_declared_size(image.size, "image")
        strength = validation.check_image_strength(strength)
        validation.check_denoising_left(steps, strength)
        params = dict(
            prompt=prompt,
            negative_prompt=negative_prompt,
            seeds=validation.seeds_for(seed, 1),
            steps=steps,
            guidance=guidance,
            scheduler=BOUNDS.scheduler,
            strength=strength,
        )
        # The whole picture is the starting point: no area to repaint.
        uploads = Uploads(image, repaint_area=False)
        request = NewImages(JobKind.DEPTH_TO_IMAGE, model, params, uploads)
        await self.services.jobs.submit(interaction, request)

    @depth.autocomplete("model")
    async def _model_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return await autocomplete_models(self.services.repo, JobKind.DEPTH_TO_IMAGE, current)

"""The /imagine command: validate, write the job, queue it; delivery does the rest.

With an ``image`` attached it is image-to-image: the picture (checked and fitted like
/inpaint's, in ``JobService.submit``) is the starting point, and ``strength`` says how far
from it to go. The picture's own shape then decides the size.
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
from bot.ui.model_options import ModelName, autocomplete_loras, autocomplete_models
from engine.protocol import BOUNDS, FAMILIES, SCHEDULERS, SIZES, Family, JobKind, number_text

_FLUX = FAMILIES[Family.FLUX]  # its steps differ most from the others'
_FLUX_STEPS = f"{_FLUX.label} {_FLUX.steps.min}-{_FLUX.steps.max}, default {_FLUX.steps.default}"
_MEGAPIXEL = FAMILIES[Family.SDXL].sizes[BOUNDS.size]  # FLUX.1's too
_MEGAPIXEL_SIZES = (
    f"SDXL and FLUX.1 models: the same shape at about {_MEGAPIXEL.width}×{_MEGAPIXEL.height}"
)

NO_IMAGE_FOR_STRENGTH = (
    "strength says how far to go from a picture: attach one as `image`, or leave strength out."
)


class ImagineCog(commands.Cog):
    def __init__(self, services: Services) -> None:
        self.services = services

    @app_commands.command(
        name="imagine",
        description="Make an image from a text prompt, or from a picture and a prompt",
    )
    @app_commands.guild_only()
    @options.describe(
        "prompt",
        "negative_prompt",
        "seed",
        "model",
        # What /imagine says beyond the shared help: it runs every family.
        steps=options.with_note("steps", _FLUX_STEPS) + "; more is slower",
        guidance=options.with_note("guidance", "7-8.5 is typical"),
        size=options.with_note("size", _MEGAPIXEL_SIZES),
        scheduler="The sampler that takes the denoising steps "
        f"(default {SCHEDULERS[BOUNDS.scheduler]})",
        # {min}, {max} and {default}: filled from the bounds in force (bot.ui.options).
        count="How many images, {min}-{max}, with consecutive seeds",
        image=f"A picture to start from ({inputs.ALLOWED}); its shape decides the size",
        strength="With an image: how far from it to go, {min}-{max} "
        f"(default {number_text(BOUNDS.image_strength.default)}); low keeps it close",
        loras="LoRAs to apply: name:0.8, other:0.5 (or write <lora:name:0.8> in the prompt)",
    )
    async def imagine(
        self,
        interaction: discord.Interaction,
        prompt: options.Prompt,
        negative_prompt: options.NegativePrompt = "",
        seed: options.Seed | None = None,
        steps: options.Steps = BOUNDS.steps.default,
        guidance: options.Guidance = BOUNDS.guidance.default,
        size: options.ImageSize = SIZES[BOUNDS.size],
        scheduler: options.Scheduler = BOUNDS.scheduler,
        model: ModelName | None = None,
        count: options.Count = BOUNDS.count.default,
        image: discord.Attachment | None = None,
        strength: options.ImageStrength | None = None,
        loras: app_commands.Range[str, 1, 200] | None = None,
    ) -> None:
        settings = self.services.settings
        require_channel(interaction, settings.discord)
        prompt = validation.with_loras(prompt, loras, settings.limits.bounds().prompt_chars.max)
        seeds = validation.seeds_for(seed, count)
        if image is None and strength is not None:
            raise UserInputError(NO_IMAGE_FOR_STRENGTH)
        if image is not None:
            inputs.check_declared_size(image.size, "image")
            strength = validation.check_image_strength(strength)
            validation.check_denoising_left(steps, strength)

        params = dict(
            prompt=prompt,
            negative_prompt=negative_prompt,
            seeds=seeds,
            steps=steps,
            guidance=guidance,
            width=size.width,
            height=size.height,
            scheduler=scheduler,
        )
        # The model's family replaces the defaults of what was not typed (bot.jobs.families).
        given = options.typed_options(interaction)
        if image is None:
            request = NewImages(JobKind.TEXT_TO_IMAGE, model, params, given=given)
        else:
            params["strength"] = strength
            uploads = Uploads(image, repaint_area=False)
            request = NewImages(JobKind.IMAGE_TO_IMAGE, model, params, uploads, given=given)
        await self.services.jobs.submit(interaction, request)

    @imagine.autocomplete("loras")
    async def _loras_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return await autocomplete_loras(self.services.repo, current)

    @imagine.autocomplete("model")
    async def _model_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return await autocomplete_models(self.services.repo, JobKind.TEXT_TO_IMAGE, current)

"""The /imagine command: validate, write the job, queue it; delivery does the rest."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.jobs import validation
from bot.jobs.job_request import NewImages
from bot.services import Services
from bot.ui.checks import require_channel
from bot.ui.model_options import autocomplete_models
from engine.protocol import MAX_SEED, SCHEDULERS, JobKind

SIZE_CHOICES = [app_commands.Choice(name=s.label, value=key) for key, s in validation.SIZES.items()]
SCHEDULER_CHOICES = [
    app_commands.Choice(name=label, value=key) for key, label in SCHEDULERS.items()
]


class ImagineCog(commands.Cog):
    def __init__(self, services: Services) -> None:
        self.services = services

    @app_commands.command(name="imagine", description="Make an image from a text prompt")
    @app_commands.guild_only()
    @app_commands.describe(
        prompt="What to draw, e.g. “a watercolor fox in the snow”",
        negative_prompt="What to steer away from, e.g. “blurry, text”",
        seed="Same seed + same settings = same image (random when empty)",
        steps=f"Denoising steps, {validation.MIN_STEPS}-{validation.MAX_STEPS} "
        f"(default {validation.DEFAULT_STEPS}); more is slower, not always better",
        guidance="Classifier-free guidance: how closely to follow the prompt "
        f"(default {validation.DEFAULT_GUIDANCE}; 7-8.5 is typical)",
        size="Image size and shape",
        scheduler="The sampler that takes the denoising steps (default Euler)",
        model="Which model to use (default: the server's default)",
        count=f"How many images, 1-{validation.MAX_COUNT}, with consecutive seeds",
    )
    @app_commands.choices(size=SIZE_CHOICES, scheduler=SCHEDULER_CHOICES)
    async def imagine(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, 1000],
        negative_prompt: app_commands.Range[str, 0, 1000] | None = None,
        seed: app_commands.Range[int, 0, MAX_SEED] | None = None,
        steps: app_commands.Range[int, validation.MIN_STEPS, validation.MAX_STEPS] | None = None,
        guidance: app_commands.Range[float, validation.MIN_GUIDANCE, validation.MAX_GUIDANCE]
        | None = None,
        size: str | None = None,
        scheduler: str | None = None,
        model: str | None = None,
        count: app_commands.Range[int, 1, validation.MAX_COUNT] | None = None,
    ) -> None:
        settings = self.services.settings
        require_channel(interaction, settings.discord)
        max_chars = settings.limits.max_prompt_chars
        prompt = validation.clean_prompt(prompt, what="prompt", max_chars=max_chars, required=True)
        negative = validation.clean_prompt(
            negative_prompt, what="negative prompt", max_chars=max_chars, required=False
        )
        shape = validation.check_size(size)
        seeds = validation.seeds_for(seed, validation.check_count(count))
        steps = validation.check_steps(steps)
        guidance = validation.check_guidance(guidance)
        scheduler = validation.check_scheduler(scheduler)

        settings = dict(
            prompt=prompt,
            negative_prompt=negative,
            seeds=seeds,
            steps=steps,
            guidance=guidance,
            width=shape.width,
            height=shape.height,
            scheduler=scheduler,
        )
        request = NewImages(JobKind.TEXT_TO_IMAGE, model, settings)
        await self.services.jobs.submit(interaction, request)

    @imagine.autocomplete("model")
    async def _model_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return await autocomplete_models(self.services.repo, JobKind.TEXT_TO_IMAGE, current)

"""The /compare command: two axes typed as comma lists become one grid job.

The values are checked here (``bot.jobs.xy_values``) against the bounds in force, before
anything is written; the job service looks up a model axis's names and counts every panel
against the hourly limit. The settings not on an axis are the options, with /imagine's
defaults (the model family's, as /imagine fills them), so the panel whose axis values are
those defaults is /imagine's very picture. The service checks each axis against the model's
family once the model is known (``bot.jobs.xy_families``).
"""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.jobs import inputs
from bot.jobs.job_request import NewImages, Uploads
from bot.jobs.xy_values import AXES, Axis, check_grid, parse_axis
from bot.services import Services
from bot.ui import options, validation
from bot.ui.checks import require_channel
from bot.ui.errors import UserInputError
from bot.ui.model_options import ModelName, autocomplete_models
from engine.protocol import BOUNDS, SIZES, Bounds, JobKind, number_text

AXIS_CHOICES = [app_commands.Choice(name=axis, value=axis) for axis in AXES]
# A comma list of values: room for 16 model names, not for an essay.
AxisValues = app_commands.Range[str, 1, 900]


class CompareCog(commands.Cog):
    def __init__(self, services: Services) -> None:
        self.services = services

    @app_commands.command(
        name="compare",
        description="An X/Y grid: one prompt across several values of one or two settings",
    )
    @app_commands.guild_only()
    # The settings that can be an axis say so: their help is /compare's own.
    @options.describe(
        "prompt",
        "negative_prompt",
        "size",
        x="The setting that changes across the grid",
        x_values="Its values, separated by commas, e.g. “3, 7.5, 12” or “Euler, DDIM”",
        y="A second setting, changing down the grid",
        y_values="Its values, separated by commas",
        seed="The seed of every panel (random when empty), unless the seed is an axis",
        steps="Denoising steps, {min}-{max}, when steps is not an axis (default: /imagine's)",
        guidance="Guidance scale when guidance is not an axis (default: /imagine's)",
        scheduler="The sampler when the scheduler is not an axis (default: /imagine's)",
        model="The model when the model is not an axis (default: the server's default)",
        image=f"A picture to start from ({inputs.ALLOWED}): image-to-image panels",
        strength="With an image, when strength is not an axis: how far from it to go "
        f"(default {number_text(BOUNDS.image_strength.default)})",
    )
    @app_commands.choices(x=AXIS_CHOICES, y=AXIS_CHOICES)
    async def compare(
        self,
        interaction: discord.Interaction,
        prompt: options.Prompt,
        x: str,
        x_values: AxisValues,
        y: str | None = None,
        y_values: AxisValues | None = None,
        negative_prompt: options.NegativePrompt = "",
        seed: options.Seed | None = None,
        steps: options.OptionalSteps | None = None,
        guidance: options.OptionalGuidance | None = None,
        size: options.ImageSize = SIZES[BOUNDS.size],
        scheduler: options.OptionalScheduler | None = None,
        model: ModelName | None = None,
        image: discord.Attachment | None = None,
        strength: options.ImageStrength | None = None,
    ) -> None:
        settings = self.services.settings
        require_channel(interaction, settings.discord)
        bounds = settings.limits.bounds()
        axes = _axes(x, x_values, y, y_values, bounds)
        given = {
            "seed": seed,
            "steps": steps,
            "guidance": guidance,
            "scheduler": scheduler,
            "model": model,
            "strength": strength,
        }
        for axis in axes:
            if given[axis.kind] is not None:
                raise UserInputError(
                    f"{axis.kind} is an axis of the grid; leave the `{axis.kind}` option out "
                    "(its values are the axis's)."
                )
        kinds = {axis.kind for axis in axes}
        if image is None and ("strength" in kinds or strength is not None):
            raise UserInputError(
                "strength says how far to go from a picture: attach one as `image` to compare "
                "strengths (image-to-image), or leave strength out."
            )
        seeds = (
            (int(next(a for a in axes if a.kind == "seed").values[0]),)
            if "seed" in kinds
            else validation.seeds_for(seed, 1, bounds)
        )
        params: dict[str, Any] = dict(
            prompt=prompt,
            negative_prompt=negative_prompt,
            seeds=seeds,
            steps=steps if steps is not None else bounds.steps.default,
            guidance=guidance if guidance is not None else bounds.guidance.default,
            width=size.width,
            height=size.height,
            scheduler=scheduler or bounds.scheduler,
        )
        # The options not typed take the model's family's defaults (bot.jobs.families).
        typed = options.typed_options(interaction)
        if image is None:
            request = NewImages(JobKind.TEXT_TO_IMAGE, model, params, axes=axes, given=typed)
        else:
            inputs.check_declared_size(image.size, "image")
            # Whether every panel keeps a denoising step is checked at the family's steps
            # (bot.jobs.xy_families.check_denoising_left_on_axes).
            params["strength"] = validation.check_image_strength(strength, bounds)
            uploads = Uploads(image, repaint_area=False)
            request = NewImages(
                JobKind.IMAGE_TO_IMAGE, model, params, uploads, axes=axes, given=typed
            )
        await self.services.jobs.submit(interaction, request)

    @compare.autocomplete("model")
    async def _model_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return await autocomplete_models(self.services.repo, JobKind.TEXT_TO_IMAGE, current)


def _axes(
    x: str, x_values: str, y: str | None, y_values: str | None, bounds: Bounds
) -> tuple[Axis, ...]:
    """The grid's checked axes, x first; refusals name the option and the value."""
    if (y is None) != (y_values is None):
        raise UserInputError("y and y_values go together: give both for a second axis, or neither.")
    axes = [parse_axis(x, x_values, "x_values", bounds)]
    if y is not None and y_values is not None:
        axes.append(parse_axis(y, y_values, "y_values", bounds))
    check_grid(axes[0], axes[1] if len(axes) > 1 else None, bounds)
    return tuple(axes)

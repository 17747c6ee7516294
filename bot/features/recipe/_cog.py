"""/recipe: a job as a Python script that makes its images again with diffusers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import discord
from discord import app_commands
from discord.ext import commands

from bot.features.recipe._script import input_names, render_script, script_name
from bot.services import Services
from bot.store.models import Job
from bot.ui import render
from bot.ui.attachments import InMemoryFiles
from bot.ui.checks import is_admin, require_channel
from bot.ui.errors import NotAllowed, UserInputError
from bot.ui.i18n import t
from engine.protocol import Family

MAX_JOB_ID = 2**53 - 1  # Discord's integer options stop here


class RecipeCog(commands.Cog):
    def __init__(self, services: Services) -> None:
        self.services = services

    @app_commands.command(
        name="recipe", description="A Python script that makes a job's images again with diffusers"
    )
    @app_commands.guild_only()
    @app_commands.describe(job="The job number (the # under a result)")
    async def recipe(
        self, interaction: discord.Interaction, job: app_commands.Range[int, 1, MAX_JOB_ID]
    ) -> None:
        require_channel(interaction, self.services.settings.discord)
        if await self.services.repo.get_job(job) is None:
            raise UserInputError(t(interaction, "recipe.no_job", job_id=job))
        # The same rule as /reroll: your own jobs, the jobs made here, or any job for an admin.
        stored = await self.services.jobs.get_visible(job, interaction, doing="have the recipes of")
        admin = is_admin(interaction.user, self.services.settings.discord)
        owner = stored.user_id == interaction.user.id
        flagged = any(image.nsfw for image in stored.images)
        if flagged and not (owner or admin):
            raise NotAllowed(t(interaction, "recipe.flagged", job_id=stored.id))
        # Uploads are their owner's: only the owner and admins get them, and only privately.
        inputs = await self._inputs(stored) if owner or admin else []
        ready = getattr(self.services.engine, "last_ready", None)  # what the engine runs on
        gpu_dtype = (
            ready.dtype if ready is not None and ready.device.startswith("cuda") else "float16"
        )
        device = f"{ready.device}, {ready.dtype}" if ready is not None else None
        # Jobs copy their model by name; a model removed since is taken for SD 1.x/2.x.
        model = await self.services.repo.get_model(stored.model_name)
        script = render_script(
            stored,
            engine_device=device,
            gpu_dtype=gpu_dtype,
            show_folder=admin,
            family=model.family if model is not None else Family.SD,
        )
        lines = [t(interaction, "recipe.posted", job_id=stored.id, script=script_name(stored))]
        lines.append(render.quote_prompt(stored.prompt, 200))
        wanted = ", ".join(f"`{name}`" for name in input_names(stored) if name)
        if inputs:
            names = ", ".join(f"`{name}`" for name, _ in inputs)
            lines.append(t(interaction, "recipe.inputs", files=names))
        elif wanted and (owner or admin):
            # Gone from the bot's disk: the script is still the recipe, for the owner's copy.
            days = self.services.settings.storage.retention_days
            key = "recipe.inputs_expired" if days else "recipe.inputs_gone"
            lines.append(t(interaction, key, files=wanted, days=days))
        elif wanted:
            lines.append(t(interaction, "recipe.inputs_withheld", files=wanted))
        # A flagged job's recipe, and anything carrying uploads, is for the asker's eyes only.
        private = flagged or bool(inputs)
        with InMemoryFiles() as uploads:
            files = [uploads.file(script.encode(), script_name(stored))]
            files += [uploads.file(data, name) for name, data in inputs]
            await interaction.response.send_message(
                "\n".join(lines), files=files, ephemeral=private
            )

    async def _inputs(self, job: Job) -> list[tuple[str, bytes]]:
        """An inpainting job's picture and mask, named as its script expects them; none when
        either is no longer stored (retention deletes uploads; ``bot.jobs.retention``)."""
        root = self.services.settings.storage.input_dir.resolve()
        found = []
        for ref, name in zip((job.image_ref, job.mask_ref), input_names(job), strict=True):
            if ref is None or name is None:
                continue
            path = (root / ref).resolve()
            if not path.is_relative_to(root):
                return []
            try:
                found.append((name, await asyncio.to_thread(Path.read_bytes, path)))
            except FileNotFoundError:
                return []
        return found

    @recipe.autocomplete("job")
    async def _job_autocomplete(
        self, interaction: discord.Interaction, current: int | str
    ) -> list[app_commands.Choice[int]]:
        """The caller's latest jobs, newest first."""
        typed = str(current or "")
        jobs = await self.services.repo.history(interaction.user.id, limit=25)
        return [
            app_commands.Choice(name=f"#{j.id} {render.short(j.prompt, 80)}", value=j.id)
            for j in jobs
            if str(j.id).startswith(typed)
        ]

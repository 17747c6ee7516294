"""The `model` option shared by the image commands: autocomplete and lookup."""

from __future__ import annotations

import discord
from discord import app_commands

from bot.store.models import Model
from bot.store.repository import Repository
from bot.ui import render
from bot.ui.errors import UserInputError
from engine.protocol import AdapterKind, JobKind

# The kinds a model can be (what admins choose from), and every kind a job can be.
KIND_LABEL = {
    JobKind.TEXT_TO_IMAGE: "text-to-image",
    JobKind.INPAINT: "inpainting",
    JobKind.DEPTH_TO_IMAGE: "depth-to-image",
    JobKind.UPSCALE: "upscaler",
}
JOB_KIND_LABEL = {**KIND_LABEL, JobKind.IMAGE_TO_IMAGE: "image-to-image"}
MAX_NAME_CHARS = 50  # a model's name in the bot (what `/models add` accepts)
# The option a model is picked by: Discord's client stops at the length a name can have, so a
# paste of a whole paragraph never becomes a refusal that quotes it back.
ModelName = app_commands.Range[str, 1, MAX_NAME_CHARS]


async def resolve_model(repo: Repository, name: str | None, kind: JobKind) -> Model:
    """The named enabled model of ``kind``, or the default; a clear refusal otherwise."""
    if not name:
        model = await repo.default_model(kind)
        if model is None:
            raise UserInputError(
                f"No {KIND_LABEL[kind]} model is set up yet; ask an admin to add one."
            )
        return model
    model = await repo.get_model(name)
    if model is None or not model.enabled or model.kind != kind:
        usable = [m.name for m in await repo.list_models(kind=kind, enabled_only=True)]
        # A client can send any length, and a server can offer many models: both are cut.
        listing = render.name_list(usable) if usable else "none yet"
        raise UserInputError(
            f"There is no {KIND_LABEL[kind]} model called “{render.short(name, MAX_NAME_CHARS)}”. "
            f"You can use: {listing}."
        )
    return model


async def autocomplete_models(
    repo: Repository, kind: JobKind, current: str
) -> list[app_commands.Choice[str]]:
    current = current.casefold()
    models = await repo.list_models(kind=kind, enabled_only=True)
    choices = [
        app_commands.Choice(
            name=f"{m.name}{' (default)' if m.is_default else ''}"[:100], value=m.name
        )
        for m in models
        if current in m.name.casefold()
    ]
    return choices[:25]  # Discord shows at most 25


async def autocomplete_loras(repo: Repository, current: str) -> list[app_commands.Choice[str]]:
    """The ``loras`` option: the items typed so far, then each enabled LoRA whose name holds
    what is being typed after the last comma (at full weight, to be edited)."""
    done, _, typing = current.rpartition(",")
    typed = typing.split(":")[0].strip().casefold()
    before = f"{done}, " if done else ""
    choices = [
        app_commands.Choice(name=f"{before}{a.name}:1"[:100], value=f"{before}{a.name}:1"[:100])
        for a in await repo.list_adapters(enabled_only=True)
        if a.kind is AdapterKind.LORA and typed in a.name.casefold()
    ]
    return choices[:25]  # Discord shows at most 25


def interaction_locale(interaction: discord.Interaction) -> str:
    return str(interaction.locale)

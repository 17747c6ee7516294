"""/models-suggest for everyone, and the admins' Approve / Reject card it posts.

A top-level command, as /models-list is: the /models group is hidden from members by Discord's
default permission. The source is checked first (``_checks``); only a model that passes reaches
the admins, as a card in the ``MODELS_SUGGESTIONS_CHANNEL`` channel. Its buttons carry the
suggestion's id, so they work after a restart; who may press them is decided in code on every
press (``admin_action``, which also writes the audit entry). Approving offers the model at
once, credited to the student; either way the student is told, with a mention in the channel
they suggested from.
"""

from __future__ import annotations

import re
from typing import cast

import discord
from discord import app_commands
from discord.ext import commands

from bot.features.admin._access import admin_action
from bot.features.admin._render import human_bytes
from bot.features.admin._sources import check_name
from bot.features.suggest._checks import check_suggestion
from bot.services import HasServices, Services
from bot.store.models import Suggestion, SuggestionStatus
from bot.store.repository import StoreError
from bot.ui.checks import require_channel
from bot.ui.errors import UserInputError, report
from bot.ui.model_options import KIND_LABEL

_GB = 1024**3
NOT_OPEN = "Model suggestions are not open on this server (no admin channel is set up for them)."
_STUDENT_ONLY = discord.AllowedMentions(users=True, roles=False, everyone=False)


def card_text(suggestion: Suggestion, pipeline: str, size: int) -> str:
    licence = suggestion.licence or "not stated in the model card"
    return (
        f"📬 Suggestion #{suggestion.id} from <@{suggestion.user_id}>: **{suggestion.name}** "
        f"(`{suggestion.source}`)\n{KIND_LABEL[suggestion.kind]} · `{pipeline}` · "
        f"{human_bytes(size)} · licence: {licence}\n"
        "Approve offers it at once, credited to them; Reject tells them it was not taken."
    )


class SuggestionButton(
    discord.ui.DynamicItem[discord.ui.Button],
    template=r"suggest:(?P<action>approve|reject):(?P<id>[0-9]{1,19})",
):
    def __init__(self, action: str, suggestion_id: int) -> None:
        approve = action == "approve"
        super().__init__(
            discord.ui.Button(
                label="Approve" if approve else "Reject",
                style=discord.ButtonStyle.success if approve else discord.ButtonStyle.danger,
                custom_id=f"suggest:{action}:{suggestion_id}",
            )
        )
        self.action = action
        self.suggestion_id = suggestion_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item, match: re.Match[str]
    ) -> SuggestionButton:
        return cls(match["action"], int(match["id"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        services = cast(HasServices, interaction.client).services
        try:
            await decide(interaction, services, self.suggestion_id, self.action == "approve")
        except Exception as error:
            await report(interaction, error)


def card_view(suggestion_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(SuggestionButton("approve", suggestion_id))
    view.add_item(SuggestionButton("reject", suggestion_id))
    return view


async def decide(
    interaction: discord.Interaction, services: Services, suggestion_id: int, approve: bool
) -> None:
    """An admin's press on a card: record the decision, close the card, tell the student."""
    action = "models.suggestion." + ("approve" if approve else "reject")
    async with admin_action(
        interaction, services.settings.discord, services.repo, action, f"#{suggestion_id}"
    ) as audited:
        try:
            suggestion = await services.repo.decide_suggestion(
                suggestion_id, approve, interaction.user.id
            )
        except StoreError as error:
            raise UserInputError(str(error)) from None
        approved = suggestion.status is SuggestionStatus.APPROVED
        audited.succeeded(
            f"{'approved' if approved else 'rejected'} {suggestion.name} from {suggestion.source}"
            f", suggested by {suggestion.user_name}"
        )
        done = "✅ Approved" if approved else "❌ Rejected"
        card = interaction.message.content if interaction.message else ""
        await interaction.response.edit_message(
            content=f"{card}\n{done} by {interaction.user.mention}.", view=None
        )
        if approved:
            told = (
                f"<@{suggestion.user_id}> your suggested model **{suggestion.name}** was approved "
                f"by {interaction.user.mention}: pick it with `/imagine model:{suggestion.name}`."
            )
        else:
            told = (
                f"<@{suggestion.user_id}> your suggested model **{suggestion.name}** was not "
                f"taken this time ({interaction.user.mention} decided)."
            )
        channel = interaction.client.get_channel(suggestion.channel_id)
        if isinstance(channel, discord.abc.Messageable):
            await channel.send(told, allowed_mentions=_STUDENT_ONLY)


class SuggestCog(commands.Cog):
    """`/models-suggest`: a student's model, checked, then an approval card for the admins."""

    def __init__(self, services: Services) -> None:
        self.services = services

    @app_commands.command(
        name="models-suggest", description="Suggest a model (e.g. your DreamBooth) for the bot"
    )
    @app_commands.guild_only()
    @app_commands.describe(
        source="A Hugging Face id (org/name) of a diffusers pipeline, or a folder on the bot's "
        "machine",
        name="The short name people would pick it by (default: the source's last part)",
    )
    async def suggest(
        self,
        interaction: discord.Interaction,
        source: app_commands.Range[str, 1, 500],
        name: app_commands.Range[str, 1, 50] | None = None,
    ) -> None:
        settings = self.services.settings
        require_channel(interaction, settings.discord)
        models = settings.models
        admins = (
            discord.utils.get(interaction.guild.text_channels, name=models.suggestions_channel)
            if interaction.guild is not None and models.suggestions_channel
            else None
        )
        if admins is None:
            raise UserInputError(NOT_OPEN)
        name = check_name(name or source.strip().rstrip("/").rsplit("/", 1)[-1])
        if await self.services.repo.get_model(name) is not None:
            raise UserInputError(
                f"A model is already called {name}; suggest it under another name."
            )
        await interaction.response.defer(ephemeral=True, thinking=True)
        checked = await check_suggestion(
            source, int(models.suggestion_max_gb * _GB), models.suggestions_folder
        )
        suggestion = await self.services.repo.add_suggestion(
            user_id=interaction.user.id,
            user_name=interaction.user.display_name[:100],
            channel_id=interaction.channel_id or 0,
            name=name,
            source=checked.source,
            kind=checked.kind,
            licence=checked.licence[:100],
        )
        await admins.send(
            card_text(suggestion, checked.pipeline, checked.bytes),
            view=card_view(suggestion.id),
            allowed_mentions=discord.AllowedMentions.none(),
        )
        await interaction.edit_original_response(
            content=f"📬 Thanks! Suggestion #{suggestion.id} (**{name}**) passed the checks and "
            "went to the admins; you will be told here when they decide."
        )

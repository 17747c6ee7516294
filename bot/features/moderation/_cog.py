"""/moderation: the review queue and a user's record for moderators, pardons for admins.

Checked in code on every call (moderators: ``MODERATION_ROLES`` or Manage Messages; a pardon:
the admin check), hidden by default from members without Manage Messages. Answers are
private, and a pardon is in the audit log.
"""

from __future__ import annotations

from collections.abc import Sequence

import discord
from discord import app_commands
from discord.ext import commands

from bot.features.moderation._access import require_moderator
from bot.jobs.reviews import picture_name
from bot.services import Services
from bot.store.models import Job, Review, ReviewState
from bot.ui.checks import require_admin

MODERATOR_DEFAULT = discord.Permissions(manage_messages=True)


def review_line(
    review: Review, guild_id: int | None, channel_id: int | None, job: Job | None = None
) -> str:
    """One review in a list: its state, whose, and a link to its card; a comparison's panel
    named by its axis values when its ``job`` is given."""
    where = ""
    if review.card_message_id is not None and guild_id and channel_id:
        where = f" · https://discord.com/channels/{guild_id}/{channel_id}/{review.card_message_id}"
    stamp = int(review.created_at.timestamp())
    return (
        f"• review #{review.id} · job #{review.job_id}, {picture_name(review, job)} · "
        f"<@{review.user_id}> · {review.state.value} · <t:{stamp}:R>{where}"
    )


class ModerationCog(commands.Cog):
    """The `/moderation` command group."""

    moderation = app_commands.Group(
        name="moderation",
        description="Moderators: flagged images, strikes and pauses",
        guild_only=True,
        allowed_contexts=app_commands.AppCommandContext(guild=True),
        default_permissions=MODERATOR_DEFAULT,
    )

    def __init__(self, services: Services) -> None:
        self.services = services

    async def _lines(
        self, interaction: discord.Interaction, reviews: Sequence[Review]
    ) -> list[str]:
        channel = self.services.settings.moderation.channel_id
        # The jobs name a grid's panels by their axis values; a list holds at most 20 reviews.
        jobs = {
            job_id: await self.services.repo.get_job(job_id)
            for job_id in {r.job_id for r in reviews}
        }
        return [review_line(r, interaction.guild_id, channel, jobs[r.job_id]) for r in reviews]

    @moderation.command(name="queue", description="Flagged images waiting for a moderator")
    async def queue(self, interaction: discord.Interaction) -> None:
        require_moderator(interaction, self.services.settings.moderation)
        await interaction.response.defer(ephemeral=True, thinking=True)
        pending = await self.services.repo.moderation.pending()
        if not pending:
            text = "No flagged image is waiting for review."
        else:
            lines = await self._lines(interaction, pending)
            text = "\n".join(["**Waiting for review** (oldest first):", *lines])
        await interaction.edit_original_response(content=text[:2000])

    @moderation.command(name="user", description="A user's strikes and flagged images")
    @app_commands.describe(user="Whose record to show")
    async def user(self, interaction: discord.Interaction, user: discord.Member) -> None:
        require_moderator(interaction, self.services.settings.moderation)
        await interaction.response.defer(ephemeral=True, thinking=True)
        settings = self.services.settings.moderation
        strikes = await self.services.strikes.in_window(user.id)
        paused = await self.services.strikes.recount(user.id)
        reviews = await self.services.repo.moderation.reviews_of_user(user.id)
        lines = [
            f"**{user.display_name}**: {strikes} strike{'s' if strikes != 1 else ''} in the last "
            f"{settings.strike_window_days:g} days ({settings.strikes_to_pause} pause them for "
            f"{settings.pause_hours:g} h).",
            f"Paused until <t:{int(paused.until.timestamp())}:f>." if paused else "Not paused.",
        ]
        struck = sum(r.state is ReviewState.STRUCK for r in reviews)
        lines.append(f"Flagged images: {len(reviews)} (recent first; {struck} with a strike).")
        lines += await self._lines(interaction, reviews)
        await interaction.edit_original_response(content="\n".join(lines)[:2000])

    @moderation.command(name="pardon", description="Admins: lift a user's strikes and pause")
    @app_commands.describe(user="Whose strikes to lift")
    async def pardon(self, interaction: discord.Interaction, user: discord.Member) -> None:
        repo = self.services.repo
        actor = interaction.user
        try:
            require_admin(interaction, self.services.settings.discord)
        except Exception:
            await repo.audit(
                actor.id,
                actor.display_name[:100],
                "moderation.pardon",
                str(user.id),
                False,
                "refused: not an admin",
            )
            raise
        await interaction.response.defer(ephemeral=True, thinking=True)
        lifted = await self.services.strikes.pardon(user.id)
        outcome = f"lifted {lifted} strike{'s' if lifted != 1 else ''} and any pause"
        await repo.audit(
            actor.id, actor.display_name[:100], "moderation.pardon", str(user.id), True, outcome
        )
        await interaction.edit_original_response(
            content=f"Pardoned {user.mention}: {outcome}. They can make images again."
        )

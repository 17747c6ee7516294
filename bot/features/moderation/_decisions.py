"""Release, Confirm and Strike: the buttons on a moderators' card.

Each checks the moderator in code, then defers privately before reading or changing anything;
the decision is written first (so two moderators clicking at once cannot both decide), then
carried out (``bot.jobs.reviews``), then shown on the card, and always put in the audit log.
"""

from __future__ import annotations

import functools
import logging

import discord

from bot.features.moderation._access import is_moderator, require_moderator
from bot.jobs.reviews import picture_name
from bot.services import Services
from bot.store.models import Review, ReviewState
from bot.store.moderation import AlreadyDecided
from bot.ui.errors import UserFacingError

log = logging.getLogger(__name__)

_STATES = {
    "release": ReviewState.RELEASED,
    "confirm": ReviewState.CONFIRMED,
    "strike": ReviewState.STRUCK,
}


class ReviewDecisions:
    """What the review buttons do; registered with the shared button actions."""

    def __init__(self, services: Services) -> None:
        self._services = services

    def register(self) -> None:
        for action, state in _STATES.items():
            self._services.buttons.register(action, functools.partial(self.decide, state=state))

    async def decide(
        self, interaction: discord.Interaction, review_id: int, *, state: ReviewState
    ) -> None:
        services = self._services
        settings = services.settings.moderation
        if not is_moderator(interaction, settings):
            await self._audit(interaction, state, review_id, ok=False, outcome="refused")
            require_moderator(interaction, settings)  # raises the refusal the user reads
        await interaction.response.defer(ephemeral=True, thinking=True)
        reviews = services.reviews
        try:
            review = await services.repo.moderation.decide(
                review_id, reviews.decision(state, interaction.user)
            )
        except AlreadyDecided as error:
            done = error.review
            raise UserFacingError(
                f"Review #{review_id} was already decided ({done.state.value}) by "
                f"{done.decided_by_name}. Nothing was changed."
            ) from None
        except LookupError:
            raise UserFacingError(f"Review #{review_id} no longer exists.") from None
        answer = await self._carry_out(review, state)
        await self._audit(interaction, state, review_id, ok=True, outcome=answer)
        try:
            await reviews.show_decision(review)
        except Exception:
            log.exception("review %s: its card could not show the decision", review_id)
        await interaction.edit_original_response(content=answer)

    async def _carry_out(self, review: Review, state: ReviewState) -> str:
        services = self._services
        job = await services.repo.get_job(review.job_id)
        target = f"job #{review.job_id}, {picture_name(review, job)}"
        if state is ReviewState.RELEASED:
            try:
                await services.reviews.release(review)
            except Exception:
                log.exception("review %s: the release could not be shown", review.id)
                return (
                    f"Released {target}, but its message could not be updated (details in the "
                    "bot's log)."
                )
            return f"Released {target}: the unblurred image is now in its message."
        hours = services.settings.moderation.delete_original_after_hours
        answer = f"Confirmed {target}: it stays blurred; the original is deleted in {hours:g} h."
        if state is ReviewState.STRUCK:
            strikes = services.strikes
            paused = await strikes.recount(review.user_id)
            count = await strikes.in_window(review.user_id)
            answer += f" <@{review.user_id}> now has {count} strike{'s' if count != 1 else ''}"
            answer += f"; paused until <t:{int(paused.until.timestamp())}:f>." if paused else "."
        return answer

    async def _audit(
        self,
        interaction: discord.Interaction,
        state: ReviewState,
        review_id: int,
        *,
        ok: bool,
        outcome: str,
    ) -> None:
        user = interaction.user
        await self._services.repo.audit(
            actor_id=user.id,
            actor_name=user.display_name[:100],
            action=f"moderation.{state.value}",
            target=f"review #{review_id}",
            ok=ok,
            outcome=outcome,
        )


__all__ = ["ReviewDecisions"]

"""The moderation queries: reviews of flagged images, and strikes.

Kept beside ``bot.store.repository`` (which creates a review per flagged image in the same
transaction that marks its job done) and reached as ``repo.moderation``; writes go through the
store's one writer like every other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.store.models import Image, Job, Review, ReviewState, Strike, utcnow
from bot.store.writer import Writer


class AlreadyDecided(Exception):
    """Another moderator decided the review first."""

    def __init__(self, review: Review) -> None:
        super().__init__(f"review {review.id} is already {review.state.value}")
        self.review = review


@dataclass(frozen=True)
class Decision:
    """What a moderator decided about one review."""

    state: ReviewState
    moderator_id: int
    moderator_name: str
    delete_original_after: datetime | None  # None: now (a release posts it, no copy is kept)


class ModerationStore:
    """Reviews and strikes; see the module's docstring."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], writer: Writer) -> None:
        self._sessions = sessions
        self._writer = writer

    # --- reviews -----------------------------------------------------------------------

    async def get_review(self, review_id: int) -> Review | None:
        async with self._sessions() as session:
            return await session.get(Review, review_id)

    async def reviews_of_job(self, job_id: int) -> Sequence[Review]:
        async with self._sessions() as session:
            rows = await session.scalars(
                select(Review).where(Review.job_id == job_id).order_by(Review.image_index)
            )
            return rows.all()

    async def pending(self, limit: int = 20) -> Sequence[Review]:
        """Reviews no moderator has decided, oldest first."""
        async with self._sessions() as session:
            rows = await session.scalars(
                select(Review)
                .where(Review.state == ReviewState.PENDING)
                .order_by(Review.id)
                .limit(limit)
            )
            return rows.all()

    async def reviews_of_user(self, user_id: int, limit: int = 20) -> Sequence[Review]:
        """A user's flagged images, newest first."""
        async with self._sessions() as session:
            rows = await session.scalars(
                select(Review)
                .where(Review.user_id == user_id)
                .order_by(Review.id.desc())
                .limit(limit)
            )
            return rows.all()

    async def set_card(self, review_id: int, message_id: int) -> None:
        async def change(session: AsyncSession) -> None:
            await session.execute(
                update(Review).where(Review.id == review_id).values(card_message_id=message_id)
            )

        await self._writer.run(change)

    async def decide(self, review_id: int, decision: Decision) -> Review:
        """Record ``decision`` on a pending review (AlreadyDecided otherwise); a released image
        is no longer blurred in the image's row, and a strike is written with a strike."""

        async def change(session: AsyncSession) -> Review:
            review = await session.get(Review, review_id)
            if review is None:
                raise LookupError(f"review {review_id} does not exist")
            if review.state.decided:
                raise AlreadyDecided(review)
            now = utcnow()
            review.state = decision.state
            review.decided_by = decision.moderator_id
            review.decided_by_name = decision.moderator_name[:100]
            review.decided_at = now
            review.delete_original_after = decision.delete_original_after or now
            if decision.state is ReviewState.RELEASED:
                await session.execute(
                    update(Image)
                    .where(Image.job_id == review.job_id, Image.index == review.image_index)
                    .values(nsfw=False)
                )
            if decision.state is ReviewState.STRUCK:
                session.add(
                    Strike(
                        user_id=review.user_id,
                        review_id=review.id,
                        moderator_id=decision.moderator_id,
                        at=now,
                    )
                )
            await session.flush()
            return review

        return await self._writer.run(change)

    async def originals_due(
        self, now: datetime, ended_before: datetime | None
    ) -> Sequence[tuple[int, str]]:
        """(review id, original path) of the originals to delete: decided and past their
        time, or (when ``ended_before`` is given) of jobs that ended before it, decided or not:
        their retention is over."""
        due = and_(Review.delete_original_after.is_not(None), Review.delete_original_after <= now)
        if ended_before is not None:
            due = or_(due, Job.finished_at < ended_before)
        async with self._sessions() as session:
            rows = await session.execute(
                select(Review.id, Review.original_path)
                .join(Job, Job.id == Review.job_id)
                .where(Review.original_path.is_not(None), due)
            )
            return [(review_id, path) for review_id, path in rows.all() if path]

    async def forget_originals(self, review_ids: Sequence[int]) -> None:
        """The originals of ``review_ids`` are deleted from disk."""

        async def change(session: AsyncSession) -> None:
            await session.execute(
                update(Review).where(Review.id.in_(review_ids)).values(original_path=None)
            )

        if review_ids:
            await self._writer.run(change)

    # --- strikes -----------------------------------------------------------------------

    async def strike_times(
        self, since: datetime, user_id: int | None = None
    ) -> list[tuple[int, datetime]]:
        """(user id, when) of the strikes not pardoned since ``since``, oldest first."""
        query = select(Strike.user_id, Strike.at).where(
            Strike.at > since, Strike.pardoned_at.is_(None)
        )
        if user_id is not None:
            query = query.where(Strike.user_id == user_id)
        async with self._sessions() as session:
            rows = await session.execute(query.order_by(Strike.at))
            return [(uid, at) for uid, at in rows.all()]

    async def pardon(self, user_id: int) -> int:
        """Lift every strike of ``user_id``; how many there were."""

        async def change(session: AsyncSession) -> int:
            result = await session.execute(
                update(Strike)
                .where(Strike.user_id == user_id, Strike.pardoned_at.is_(None))
                .values(pardoned_at=utcnow())
            )
            return int(getattr(result, "rowcount", 0) or 0)

        return await self._writer.run(change)

"""The queries the bot needs, each one a transaction.

Callers get detached ORM objects (``expire_on_commit=False``) with what they need eagerly
loaded; nothing here holds a session open across an ``await`` elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from bot.store.models import (
    AuditEntry,
    Image,
    Job,
    JobKind,
    JobStatus,
    Model,
    RateLimitUsage,
    User,
    parameter_columns,
    utcnow,
)
from engine.protocol import GenerationParams

RATE_WINDOW = timedelta(hours=1)
ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)

# queued -> running -> done | failed | cancelled; running -> queued when the bot restarts or
# the engine crashes and the job is retried.
_TRANSITIONS: dict[JobStatus, set[JobStatus]] = {
    JobStatus.QUEUED: {JobStatus.RUNNING, JobStatus.FAILED, JobStatus.CANCELLED},
    JobStatus.RUNNING: {JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.QUEUED},
    JobStatus.DONE: set(),
    JobStatus.FAILED: set(),
    JobStatus.CANCELLED: set(),
}


class StoreError(Exception):
    """A refusal with a message that can be shown to the user as it is."""


class TooManyQueued(StoreError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            f"You already have {limit} job{'s' if limit != 1 else ''} waiting; "
            "wait for one to finish (or cancel one) before asking for more."
        )
        self.limit = limit


class RateLimited(StoreError):
    def __init__(self, limit: int, retry_at: datetime) -> None:
        super().__init__(f"You have made {limit} images in the last hour, the most allowed.")
        self.limit = limit
        self.retry_at = retry_at


class InvalidTransition(StoreError):
    def __init__(self, job_id: int, current: JobStatus, wanted: JobStatus) -> None:
        super().__init__(f"Job {job_id} is {current.value}; it cannot become {wanted.value}.")
        self.current = current


class NotFound(StoreError):
    pass


@dataclass(frozen=True, kw_only=True)
class NewJob(GenerationParams):
    """What a command asks for; the repository adds status and timestamps.

    The generation parameters (prompt, seeds, steps, ...) come from ``GenerationParams``.
    """

    user_id: int
    user_name: str
    kind: JobKind
    model_name: str
    model_source: str
    model_revision: str | None
    channel_id: int
    guild_id: int | None = None
    image_ref: str | None = None  # inpainting inputs, by content hash
    mask_ref: str | None = None
    parent_job_id: int | None = None
    user_locale: str | None = None
    comparison: str | None = None  # a course comparison (bot.course), with its panels' values
    comparison_values: tuple[float | str, ...] = ()

    @property
    def image_count(self) -> int:
        """Images it makes, as the rate limit counts them: a comparison's every panel."""
        return len(self.seeds) * (len(self.comparison_values) if self.comparison else 1)


@dataclass(frozen=True)
class Limits:
    """The caller's limits; None means exempt (admins)."""

    max_queued_jobs: int | None
    images_per_hour: int | None


@dataclass(frozen=True)
class NewImage:
    index: int
    seed: int
    nsfw: bool
    path: str


class Repository:
    """Every query the bot makes, over one session factory."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    # --- users -------------------------------------------------------------------------

    async def upsert_user(self, user_id: int, name: str, locale: str | None = None) -> User:
        async with self._sessions.begin() as session:
            return await _upsert_user(session, user_id, name, locale)

    # --- jobs --------------------------------------------------------------------------

    async def create_job(self, new: NewJob, limits: Limits) -> Job:
        """Check the caller's limits and write the job, in one transaction.

        Raises TooManyQueued or RateLimited (and writes nothing) when a limit is reached.
        """
        now = utcnow()
        async with self._sessions.begin() as session:
            await _upsert_user(session, new.user_id, new.user_name, new.user_locale)
            if limits.max_queued_jobs is not None:
                active = await session.scalar(
                    select(func.count(Job.id)).where(
                        Job.user_id == new.user_id, Job.status.in_(ACTIVE)
                    )
                )
                if (active or 0) >= limits.max_queued_jobs:
                    raise TooManyQueued(limits.max_queued_jobs)
            if limits.images_per_hour is not None:
                await _consume(session, new.user_id, new.image_count, limits.images_per_hour, now)
            job = Job(
                **parameter_columns(new),
                user_id=new.user_id,
                kind=new.kind,
                status=JobStatus.QUEUED,
                model_name=new.model_name,
                model_source=new.model_source,
                model_revision=new.model_revision,
                image_ref=new.image_ref,
                mask_ref=new.mask_ref,
                parent_job_id=new.parent_job_id,
                comparison=new.comparison,
                comparison_values=list(new.comparison_values) if new.comparison else None,
                guild_id=new.guild_id,
                channel_id=new.channel_id,
                created_at=now,
                images=[],
            )
            session.add(job)
            await session.flush()
            return job

    async def get_job(self, job_id: int) -> Job | None:
        async with self._sessions() as session:
            return await session.scalar(
                select(Job).where(Job.id == job_id).options(selectinload(Job.images))
            )

    async def list_active(self) -> Sequence[Job]:
        """Jobs queued or running, oldest first: what a starting bot must pick up."""
        async with self._sessions() as session:
            result = await session.scalars(
                select(Job).where(Job.status.in_(ACTIVE)).order_by(Job.id)
            )
            return result.all()

    async def requeue_interrupted(self) -> Sequence[Job]:
        """Put jobs left running by a stopped bot back in the queue; returns all queued jobs."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(Job)
                .where(Job.status == JobStatus.RUNNING)
                .values(status=JobStatus.QUEUED, started_at=None)
            )
            result = await session.scalars(
                select(Job).where(Job.status == JobStatus.QUEUED).order_by(Job.id)
            )
            return result.all()

    async def list_undelivered(self, since: datetime) -> Sequence[Job]:
        """Jobs done since ``since`` whose result never reached Discord (no result message)."""
        async with self._sessions() as session:
            result = await session.scalars(
                select(Job)
                .where(
                    Job.status == JobStatus.DONE,
                    Job.result_message_id.is_(None),
                    Job.finished_at > since,
                )
                .order_by(Job.id)
                .options(selectinload(Job.images))
            )
            return result.all()

    async def latest_job(self, user_id: int) -> Job | None:
        async with self._sessions() as session:
            return await session.scalar(
                select(Job)
                .where(Job.user_id == user_id)
                .order_by(Job.id.desc())
                .limit(1)
                .options(selectinload(Job.images))
            )

    async def history(self, user_id: int, limit: int = 10, offset: int = 0) -> Sequence[Job]:
        """A user's jobs, newest first, with their images."""
        async with self._sessions() as session:
            result = await session.scalars(
                select(Job)
                .where(Job.user_id == user_id)
                .order_by(Job.id.desc())
                .limit(limit)
                .offset(offset)
                .options(selectinload(Job.images))
            )
            return result.all()

    async def count_jobs(self, user_id: int) -> int:
        async with self._sessions() as session:
            return await session.scalar(select(func.count(Job.id)).where(Job.user_id == user_id))

    async def mark_running(self, job_id: int) -> Job:
        async with self._sessions.begin() as session:
            job = await _transition(session, job_id, JobStatus.RUNNING)
            job.started_at = utcnow()
            job.attempts += 1
            return job

    async def mark_done(
        self, job_id: int, images: Sequence[NewImage], model_revision_used: str | None
    ) -> Job:
        async with self._sessions.begin() as session:
            job = await _transition(session, job_id, JobStatus.DONE)
            job.finished_at = utcnow()
            job.model_revision_used = model_revision_used
            job.images.extend(
                Image(index=i.index, seed=i.seed, nsfw=i.nsfw, path=i.path) for i in images
            )
            await session.flush()
            return job

    async def mark_failed(self, job_id: int, error: str) -> Job:
        async with self._sessions.begin() as session:
            job = await _transition(session, job_id, JobStatus.FAILED)
            job.finished_at = utcnow()
            job.error = error
            return job

    async def mark_cancelled(self, job_id: int) -> Job:
        async with self._sessions.begin() as session:
            job = await _transition(session, job_id, JobStatus.CANCELLED)
            job.finished_at = utcnow()
            job.error = "Cancelled."
            return job

    async def mark_requeued(self, job_id: int) -> Job:
        """A running job goes back to the queue (the engine crashed under it)."""
        async with self._sessions.begin() as session:
            job = await _transition(session, job_id, JobStatus.QUEUED)
            job.started_at = None
            return job

    async def set_status_message(self, job_id: int, message_id: int) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                update(Job).where(Job.id == job_id).values(status_message_id=message_id)
            )

    async def set_result_message(self, job_id: int, message_id: int) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                update(Job).where(Job.id == job_id).values(result_message_id=message_id)
            )

    async def delete_job(self, job_id: int) -> Job:
        """Remove a finished job and its image rows; returns it so files can be removed."""
        async with self._sessions.begin() as session:
            job = await session.scalar(
                select(Job).where(Job.id == job_id).options(selectinload(Job.images))
            )
            if job is None:
                raise NotFound(f"Job {job_id} does not exist.")
            if not job.status.is_final:
                raise InvalidTransition(job_id, job.status, JobStatus.CANCELLED)
            # Rerolls keep their own settings; only the link to the deleted job goes.
            await session.execute(
                update(Job).where(Job.parent_job_id == job_id).values(parent_job_id=None)
            )
            await session.delete(job)
            return job

    # --- rate limits -------------------------------------------------------------------

    async def consume_images(self, user_id: int, amount: int, limit: int) -> None:
        """Count ``amount`` images against a rolling hour, or raise RateLimited."""
        async with self._sessions.begin() as session:
            await _consume(session, user_id, amount, limit, utcnow())

    async def images_in_window(self, user_id: int | None = None) -> int:
        """Images counted in the last hour, for one user or everyone."""
        async with self._sessions() as session:
            query = select(func.coalesce(func.sum(RateLimitUsage.amount), 0)).where(
                RateLimitUsage.at > utcnow() - RATE_WINDOW
            )
            if user_id is not None:
                query = query.where(RateLimitUsage.user_id == user_id)
            return await session.scalar(query)

    async def prune_rate_limits(self) -> int:
        """Drop usage rows older than the window; they can never matter again."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                delete(RateLimitUsage).where(RateLimitUsage.at <= utcnow() - RATE_WINDOW)
            )
            return result.rowcount

    # --- models ------------------------------------------------------------------------

    async def list_models(
        self, kind: JobKind | None = None, enabled_only: bool = False
    ) -> Sequence[Model]:
        async with self._sessions() as session:
            query = select(Model).order_by(Model.kind, Model.name)
            if kind is not None:
                query = query.where(Model.kind == kind)
            if enabled_only:
                query = query.where(Model.enabled.is_(True))
            return (await session.scalars(query)).all()

    async def get_model(self, name: str) -> Model | None:
        async with self._sessions() as session:
            return await session.scalar(select(Model).where(Model.name == name))

    async def default_model(self, kind: JobKind) -> Model | None:
        async with self._sessions() as session:
            return await session.scalar(
                select(Model).where(Model.kind == kind, Model.is_default.is_(True))
            )

    async def add_model(
        self, name: str, source: str, kind: JobKind, revision: str | None = None
    ) -> Model:
        async with self._sessions.begin() as session:
            if await session.scalar(select(Model.id).where(Model.name == name)) is not None:
                raise StoreError(f"A model named {name!r} already exists.")
            has_default = await session.scalar(
                select(Model.id).where(Model.kind == kind, Model.is_default.is_(True))
            )
            model = Model(
                name=name,
                source=source,
                kind=kind,
                revision=revision,
                enabled=True,
                # The first model of a kind becomes its default, so the kind is usable at once.
                is_default=has_default is None,
            )
            session.add(model)
            await session.flush()
            return model

    async def set_default_model(self, name: str) -> Model:
        async with self._sessions.begin() as session:
            model = await _model(session, name)
            if not model.enabled:
                raise StoreError(f"{name} is disabled; enable it before making it the default.")
            await session.execute(
                update(Model).where(Model.kind == model.kind).values(is_default=False)
            )
            model.is_default = True
            return model

    async def set_model_enabled(self, name: str, enabled: bool) -> Model:
        async with self._sessions.begin() as session:
            model = await _model(session, name)
            if not enabled and model.is_default:
                raise StoreError(
                    f"{name} is the default for {model.kind.value}; "
                    "make another model the default first."
                )
            model.enabled = enabled
            return model

    async def remove_model(self, name: str) -> Model:
        async with self._sessions.begin() as session:
            model = await _model(session, name)
            if model.is_default:
                raise StoreError(f"{name} is a default; make another model the default first.")
            await session.delete(model)
            return model

    async def ensure_default_models(self, defaults: dict[JobKind, str]) -> None:
        """On first start, offer the configured models, named after their last path part."""
        for kind, source in defaults.items():
            name = source.rstrip("/").rsplit("/", 1)[-1]
            if await self.default_model(kind) is None and await self.get_model(name) is None:
                await self.add_model(name, source, kind)

    # --- audit log ---------------------------------------------------------------------

    async def audit(
        self, actor_id: int, actor_name: str, action: str, target: str, ok: bool, outcome: str
    ) -> AuditEntry:
        async with self._sessions.begin() as session:
            entry = AuditEntry(
                actor_id=actor_id,
                actor_name=actor_name,
                action=action,
                target=target,
                ok=ok,
                outcome=outcome,
            )
            session.add(entry)
            await session.flush()
            return entry

    async def latest_audit(self, limit: int = 20) -> Sequence[AuditEntry]:
        async with self._sessions() as session:
            result = await session.scalars(
                select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
            )
            return result.all()

    # --- status ------------------------------------------------------------------------

    async def count_active_for_model(self, name: str) -> int:
        """Jobs queued or running on the model named ``name`` (jobs copy the model by value)."""
        async with self._sessions() as session:
            return await session.scalar(
                select(func.count(Job.id)).where(Job.model_name == name, Job.status.in_(ACTIVE))
            )

    async def count_images_since(self, since: datetime) -> int:
        """Images made since ``since`` by everyone, admins included (the rate limits skip them)."""
        async with self._sessions() as session:
            return await session.scalar(
                select(func.count(Image.id)).where(Image.created_at > since)
            )

    async def count_by_status(self) -> dict[JobStatus, int]:
        async with self._sessions() as session:
            rows = await session.execute(
                select(Job.status, func.count(Job.id)).group_by(Job.status)
            )
            counts = dict.fromkeys(JobStatus, 0)
            counts.update({status: n for status, n in rows.all()})
            return counts


async def _upsert_user(session: AsyncSession, user_id: int, name: str, locale: str | None) -> User:
    user = await session.get(User, user_id)
    if user is None:
        user = User(id=user_id, name=name, locale=locale)
        session.add(user)
    else:
        user.name = name
        user.locale = locale or user.locale
    await session.flush()
    return user


async def _consume(
    session: AsyncSession, user_id: int, amount: int, limit: int, now: datetime
) -> None:
    """Rolling-window check-and-consume. Runs inside the caller's (write-locked) transaction."""
    if amount > limit:
        raise StoreError(f"You can make at most {limit} images an hour; ask for fewer.")
    since = now - RATE_WINDOW
    rows = (
        await session.execute(
            select(RateLimitUsage.at, RateLimitUsage.amount)
            .where(RateLimitUsage.user_id == user_id, RateLimitUsage.at > since)
            .order_by(RateLimitUsage.at)
        )
    ).all()
    used = sum(amount_ for _, amount_ in rows)
    if used + amount > limit:
        # Free enough room: the moment the oldest rows holding the excess leave the window.
        excess = used + amount - limit
        freed = 0
        retry_at = now + RATE_WINDOW
        for at, amount_ in rows:
            freed += amount_
            if freed >= excess:
                retry_at = at + RATE_WINDOW
                break
        raise RateLimited(limit, retry_at)
    session.add(RateLimitUsage(user_id=user_id, amount=amount, at=now))


async def _transition(session: AsyncSession, job_id: int, wanted: JobStatus) -> Job:
    job = await session.scalar(
        select(Job).where(Job.id == job_id).options(selectinload(Job.images))
    )
    if job is None:
        raise NotFound(f"Job {job_id} does not exist.")
    if wanted not in _TRANSITIONS[job.status]:
        raise InvalidTransition(job_id, job.status, wanted)
    job.status = wanted
    return job


async def _model(session: AsyncSession, name: str) -> Model:
    model = await session.scalar(select(Model).where(Model.name == name))
    if model is None:
        raise NotFound(f"There is no model named {name!r}.")
    return model

"""The queries the bot needs.

Writes go through the store's one writer (``bot.store.writer``), which commits whatever has
queued up meanwhile in one transaction; each write method returns once its change has
committed. Reads run on their own connections, in plain transactions that take no write lock
and, in WAL mode, never wait for the writer. Callers get detached ORM objects
(``expire_on_commit=False``) with what they need eagerly loaded; nothing here holds a session
open across an ``await`` elsewhere.

One bot process owns the store: the models table and the users already stored are kept in
memory, and the bot's limits are checked in memory (``bot.jobs.limits``), which is exact
within that one process. ``create_job`` with ``Limits`` checks them against the rows instead,
which holds across processes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

from sqlalchemy import CursorResult, and_, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.attributes import set_committed_value

from bot.store.models import (
    OUTLINE_INDEX,
    Adapter,
    AuditEntry,
    Image,
    Job,
    JobStatus,
    Model,
    RateLimitUsage,
    Review,
    Suggestion,
    SuggestionStatus,
    User,
    adapter_columns,
    parameter_columns,
    utcnow,
)
from bot.store.moderation import ModerationStore
from bot.store.writer import Change, Writer
from engine.protocol import AdapterKind, AdapterRef, Family, GenerationParams, JobKind

log = logging.getLogger(__name__)
T = TypeVar("T")

RATE_WINDOW = timedelta(hours=1)
ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)
_IN_CHUNK = 500  # ids per IN (...): well under SQLite's limit on bound parameters

# A job found running when the bot starts has been interrupted; it runs again unless it has been
# started this often already (the engine's crash retry is one more start than a plain run).
MAX_RUNS = 3
RAN_TOO_OFTEN = (
    "This job was started several times without finishing (the bot stopped while making it), "
    "so it will not be tried again. Try again, or tell an admin."
)

# queued -> running -> done | failed | cancelled; running -> queued when the bot restarts or
# the engine crashes and the job is retried.
_TRANSITIONS: dict[JobStatus, set[JobStatus]] = {
    JobStatus.QUEUED: {JobStatus.RUNNING, JobStatus.FAILED, JobStatus.CANCELLED},
    JobStatus.RUNNING: {JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.QUEUED},
    JobStatus.DONE: set(),
    JobStatus.FAILED: set(),
    JobStatus.CANCELLED: set(),
}


@dataclass(frozen=True)
class OfferedModel:
    """A text-to-image model of another family, offered on first start (``MODELS_*``)."""

    source: str
    revision: str | None
    family: Family


def _name_of(source: str) -> str:
    """A model's name from its source: the last part of its id or path."""
    return source.rstrip("/").rsplit("/", 1)[-1]


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
    """The hour's images are used up, or ``asked`` more would go past ``limit``: the message
    says what was made, what is left, and that fewer would fit when they would."""

    def __init__(self, limit: int, retry_at: datetime, used: int, asked: int) -> None:
        left = max(limit - used, 0)
        if left == 0:
            text = f"You have made {used} images in the last hour, the most allowed."
        else:
            fewer = "1 more image" if left == 1 else f"{left} more images"
            text = (
                f"You have made {used} of the {limit} images allowed in an hour, and this asks "
                f"for {asked}: {fewer} would fit now (a smaller count)."
            )
        super().__init__(text)
        self.limit = limit
        self.retry_at = retry_at
        self.used = used
        self.asked = asked


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
    # A course comparison (bot.course), with its panels' values; or a /compare grid ("xy"),
    # with its axes (bot.jobs.xy_plot).
    comparison: str | None = None
    comparison_values: tuple[Any, ...] = ()
    adapters: tuple[AdapterRef, ...] = ()  # LoRAs and embeddings, resolved from the prompt

    @property
    def image_count(self) -> int:
        """Images it makes, as the rate limit counts them: a comparison's every panel."""
        if self.comparison == "xy":  # one seed; the axes' values multiply
            panels = 1
            for axis in self.comparison_values:
                panels *= len(axis["values"])
            return panels
        return len(self.seeds) * (len(self.comparison_values) if self.comparison else 1)


@dataclass(frozen=True)
class Limits:
    """The caller's limits; None means exempt (admins)."""

    max_queued_jobs: int | None
    images_per_hour: int | None


NO_LIMITS = Limits(max_queued_jobs=None, images_per_hour=None)


@dataclass(frozen=True)
class NewImage:
    index: int
    seed: int
    nsfw: bool
    path: str
    # The safety gate's verdicts (engine.protocol.SafetyVerdict), and where the unblurred
    # original of a blurred image waits for a moderator (a review is written for it).
    first_flag: bool | None = None
    first_score: float | None = None
    second_flag: bool | None = None
    second_score: float | None = None
    original_path: str | None = None


@dataclass(frozen=True)
class Finished:
    """A job the engine finished: its images, and the model revision that made them."""

    job_id: int
    images: Sequence[NewImage]
    model_revision_used: str | None
    # An inpainting's blurred mask outline: its original, waiting for a moderator like a
    # flagged image's (a review is written for it, at ``OUTLINE_INDEX``).
    outline_original_path: str | None = None


JobEndedListener = Callable[[Job], None]


class Repository:
    """Every query the bot makes: writes through the store's one writer, reads beside it.

    One bot process owns the store. It keeps the models table in memory (read once, read
    again after every change made here) and the users it has stored, so a command needs no
    query for either.
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._writer = Writer(sessions)
        self._models: list[Model] | None = None
        self._models_version = 0  # bumped by every change, so a read begun before is not kept
        self._models_loading = asyncio.Lock()
        self._stored_users: dict[int, tuple[str, str | None]] = {}  # id -> (name, locale)
        self._job_ended: list[JobEndedListener] = []
        self.moderation = ModerationStore(sessions, self._writer)

    @property
    def writer(self) -> Writer:
        """The store's one writer (tests and benchmarks read its transaction count)."""
        return self._writer

    def on_job_ended(self, listener: JobEndedListener) -> None:
        """Call ``listener`` with every job that becomes done, failed or cancelled here,
        once that is committed."""
        self._job_ended.append(listener)

    def _ended(self, jobs: Sequence[Job]) -> None:
        for job in jobs:
            for listener in self._job_ended:
                try:
                    listener(job)
                except Exception:
                    log.exception("a listener failed on the end of job %s", job.id)

    # --- users -------------------------------------------------------------------------

    async def upsert_user(self, user_id: int, name: str, locale: str | None = None) -> User:
        user = await self._writer.run(lambda session: _upsert_user(session, user_id, name, locale))
        self._stored_users[user.id] = (user.name, user.locale)
        return user

    def _user_is_stored(self, new: NewJob) -> bool:
        """Whether the user row already says what ``new`` would write into it."""
        stored = self._stored_users.get(new.user_id)
        return (
            stored is not None
            and stored[0] == new.user_name
            and new.user_locale
            in (
                None,
                stored[1],
            )
        )

    # --- jobs --------------------------------------------------------------------------

    async def create_job(
        self, new: NewJob, limits: Limits = NO_LIMITS, *, counted_at: datetime | None = None
    ) -> Job:
        """Write the job, queued.

        ``limits`` are checked against the stored rows in the same transaction: TooManyQueued
        or RateLimited, and nothing written, when one is reached; this holds across processes.
        The bot checks its users' limits in memory instead (``bot.jobs.limits``) and passes
        ``counted_at``: when its images were counted, the time of the usage row written here.
        """
        user_is_stored = self._user_is_stored(new)

        async def change(session: AsyncSession) -> tuple[Job, User | None]:
            now = utcnow()
            if limits.max_queued_jobs is not None:
                active = await session.scalar(
                    select(func.count(Job.id)).where(
                        Job.user_id == new.user_id, Job.status.in_(ACTIVE)
                    )
                )
                if (active or 0) >= limits.max_queued_jobs:
                    raise TooManyQueued(limits.max_queued_jobs)
            user = None if user_is_stored else await _store_user(session, new)
            if limits.images_per_hour is not None:
                await _consume(session, new.user_id, new.image_count, limits.images_per_hour, now)
            elif counted_at is not None:
                session.add(
                    RateLimitUsage(user_id=new.user_id, amount=new.image_count, at=counted_at)
                )
            job = _job_row(new, now)
            session.add(job)
            return job, user

        job, user = await self._writer.run(change)
        if user is not None:
            self._stored_users[user.id] = (user.name, user.locale)
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

    async def requeue_interrupted(self, max_runs: int = MAX_RUNS) -> Sequence[Job]:
        """Put jobs left running by a stopped bot back in the queue; returns all queued jobs.

        A job already started ``max_runs`` times fails instead (``RAN_TOO_OFTEN``): one that
        stops the bot, or whose ending could never be stored, is not run at every start
        forever. The job-ended listeners hear of those.
        """

        async def change(session: AsyncSession) -> tuple[Sequence[Job], Sequence[Job]]:
            worn_out = await session.scalars(
                select(Job.id).where(Job.status == JobStatus.RUNNING, Job.attempts >= max_runs)
            )
            failed = await _transition(
                session, worn_out.all(), JobStatus.FAILED, finished_at=utcnow(), error=RAN_TOO_OFTEN
            )
            await session.execute(
                update(Job)
                .where(Job.status == JobStatus.RUNNING)
                .values(status=JobStatus.QUEUED, started_at=None)
            )
            result = await session.scalars(
                select(Job).where(Job.status == JobStatus.QUEUED).order_by(Job.id)
            )
            return failed, result.all()

        failed, queued = await self._writer.run(change)
        for job in failed:
            log.warning("job %s was started %d times without ending; failed", job.id, job.attempts)
        self._ended(failed)
        return queued

    async def list_undelivered(self, since: datetime) -> Sequence[Job]:
        """Jobs ended since ``since`` whose end never reached Discord (no result message):
        every result, and the failures and cancellations of jobs that had a message (a job
        refused as it was made never had one: its owner was told in the command's answer)."""
        async with self._sessions() as session:
            result = await session.scalars(
                select(Job)
                .where(
                    Job.result_message_id.is_(None),
                    Job.finished_at > since,
                    (Job.status == JobStatus.DONE)
                    | (
                        Job.status.in_([JobStatus.FAILED, JobStatus.CANCELLED])
                        & Job.status_message_id.is_not(None)
                    ),
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
            count = select(func.count(Job.id)).where(Job.user_id == user_id)
            return await session.scalar(count) or 0  # a count is never NULL

    async def mark_running(self, job_id: int) -> Job:
        return await self._writer.run(
            lambda session: _transition_one(session, job_id, JobStatus.RUNNING, **_starting())
        )

    async def mark_running_many(self, job_ids: Sequence[int]) -> set[int]:
        """Start a batch, in one statement: returns the ids that were queued and now run (the
        others were cancelled or deleted meanwhile)."""
        moved = await self._writer.run(
            lambda session: _transition(session, job_ids, JobStatus.RUNNING, **_starting())
        )
        return {job.id for job in moved}

    async def mark_done(
        self, job_id: int, images: Sequence[NewImage], model_revision_used: str | None
    ) -> Job:
        (job,) = await self._writer.run(
            lambda session: _finish(session, [Finished(job_id, images, model_revision_used)])
        )
        self._ended([job])
        return job

    async def mark_done_many(self, finished: Sequence[Finished]) -> list[Job]:
        """A batch's results, in one transaction: the jobs now done, in the order given.
        A job that was not running is left out (the caller says so)."""
        jobs = await self._writer.run(lambda session: _finish(session, finished, missing_ok=True))
        self._ended(jobs)
        return jobs

    async def mark_failed(self, job_id: int, error: str) -> Job:
        return await self._end(job_id, JobStatus.FAILED, error)

    async def mark_cancelled(self, job_id: int) -> Job:
        return await self._end(job_id, JobStatus.CANCELLED, "Cancelled.")

    async def _end(self, job_id: int, wanted: JobStatus, error: str) -> Job:
        job = await self._writer.run(
            lambda session: _transition_one(
                session, job_id, wanted, finished_at=utcnow(), error=error
            )
        )
        self._ended([job])
        return job

    async def mark_requeued(self, job_id: int) -> Job:
        """A running job goes back to the queue (the engine crashed under it)."""
        return await self._writer.run(
            lambda session: _transition_one(session, job_id, JobStatus.QUEUED, started_at=None)
        )

    async def set_status_message(self, job_id: int, message_id: int) -> None:
        await self._set_job_column(job_id, status_message_id=message_id)

    async def set_result_message(self, job_id: int, message_id: int) -> None:
        await self._set_job_column(job_id, result_message_id=message_id)

    async def _set_job_column(self, job_id: int, **values: int) -> None:
        async def change(session: AsyncSession) -> None:
            await session.execute(update(Job).where(Job.id == job_id).values(**values))

        await self._writer.run(change)

    async def delete_job(self, job_id: int) -> Job:
        """Remove a finished job and its image rows; returns it so files can be removed."""

        async def change(session: AsyncSession) -> Job:
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

        return await self._writer.run(change)

    async def jobs_keeping_files(
        self, job_ids: Collection[int], *, ended_before: datetime, redeliver_since: datetime
    ) -> set[int]:
        """Of ``job_ids``, the jobs whose result files must stay: those not ended (queued or
        running), ended at or after ``ended_before``, or done but never posted since
        ``redeliver_since`` (the next start posts them from the files). Ids with no row are
        left out: their files belong to no job."""
        kept: set[int] = set()
        ids = sorted(set(job_ids))
        async with self._sessions() as session:
            for start in range(0, len(ids), _IN_CHUNK):
                rows = await session.scalars(
                    select(Job.id).where(
                        Job.id.in_(ids[start : start + _IN_CHUNK]),
                        or_(
                            Job.finished_at.is_(None),
                            Job.status.in_(ACTIVE),
                            Job.finished_at >= ended_before,
                            and_(
                                Job.result_message_id.is_(None),
                                Job.finished_at > redeliver_since,
                            ),
                        ),
                    )
                )
                kept.update(rows.all())
        return kept

    async def referenced_inputs(
        self, *, since: datetime | None = None, among: Collection[str] | None = None
    ) -> set[str]:
        """The uploads (``image_ref``, ``mask_ref``) that jobs refer to: any job, or with
        ``since`` only jobs queued, running, or made or ended after it; ``among`` narrows the
        answer to those references."""
        query = select(Job.image_ref, Job.mask_ref).where(
            or_(Job.image_ref.is_not(None), Job.mask_ref.is_not(None))
        )
        if since is not None:
            query = query.where(
                or_(Job.status.in_(ACTIVE), Job.created_at > since, Job.finished_at > since)
            )
        if among is not None:
            wanted = list(among)
            query = query.where(or_(Job.image_ref.in_(wanted), Job.mask_ref.in_(wanted)))
        async with self._sessions() as session:
            rows = (await session.execute(query)).all()
        refs = {ref for row in rows for ref in row if ref is not None}
        return refs if among is None else refs & set(among)

    async def active_job_owners(self) -> list[tuple[int, int]]:
        """(job id, user id) of every job queued or running: what the limits start from."""
        async with self._sessions() as session:
            rows = await session.execute(select(Job.id, Job.user_id).where(Job.status.in_(ACTIVE)))
            return [(job_id, user_id) for job_id, user_id in rows.all()]

    # --- rate limits -------------------------------------------------------------------

    async def consume_images(self, user_id: int, amount: int, limit: int) -> None:
        """Count ``amount`` images against a rolling hour, or raise RateLimited."""
        await self._writer.run(lambda session: _consume(session, user_id, amount, limit, utcnow()))

    async def images_in_window(self, user_id: int | None = None) -> int:
        """Images counted in the last hour, for one user or everyone."""
        async with self._sessions() as session:
            query = select(func.coalesce(func.sum(RateLimitUsage.amount), 0)).where(
                RateLimitUsage.at > utcnow() - RATE_WINDOW
            )
            if user_id is not None:
                query = query.where(RateLimitUsage.user_id == user_id)
            return await session.scalar(query) or 0  # coalesced: never NULL

    async def usage_in_window(self) -> list[tuple[int, datetime, int]]:
        """(user id, when, images) of every usage row in the last hour, oldest first."""
        async with self._sessions() as session:
            rows = await session.execute(
                select(RateLimitUsage.user_id, RateLimitUsage.at, RateLimitUsage.amount)
                .where(RateLimitUsage.at > utcnow() - RATE_WINDOW)
                .order_by(RateLimitUsage.at, RateLimitUsage.id)
            )
            return [(user_id, at, amount) for user_id, at, amount in rows.all()]

    async def prune_rate_limits(self) -> int:
        """Drop usage rows older than the window; they can never matter again."""

        async def change(session: AsyncSession) -> int:
            result = await session.execute(
                delete(RateLimitUsage).where(RateLimitUsage.at <= utcnow() - RATE_WINDOW)
            )
            return cast("CursorResult[Any]", result).rowcount  # a DELETE's result is a cursor's

        return await self._writer.run(change)

    # --- models (from memory) ----------------------------------------------------------

    async def _model_table(self) -> list[Model]:
        """Every model, by kind then name: read once, and again after a change. The objects
        are shared: callers only read them."""
        if self._models is not None:
            return self._models
        async with self._models_loading:  # one read for a burst of first commands
            if self._models is not None:
                return self._models
            version = self._models_version
            async with self._sessions() as session:
                query = select(Model).order_by(Model.kind, Model.name)
                models = list((await session.scalars(query)).all())
            if version == self._models_version:
                self._models = models
            return models

    async def _change_models(self, change: Change[T]) -> T:
        """Run a change to the models table, then read the table again, so that no command
        has to."""
        result = await self._writer.run(change)
        self._models = None
        self._models_version += 1
        await self._model_table()
        return result

    async def list_models(
        self, kind: JobKind | None = None, enabled_only: bool = False
    ) -> Sequence[Model]:
        return [
            model
            for model in await self._model_table()
            if (kind is None or model.kind == kind) and (model.enabled or not enabled_only)
        ]

    async def get_model(self, name: str) -> Model | None:
        return next((m for m in await self._model_table() if m.name == name), None)

    async def default_model(self, kind: JobKind) -> Model | None:
        return next((m for m in await self._model_table() if m.kind == kind and m.is_default), None)

    async def add_model(
        self,
        name: str,
        source: str,
        kind: JobKind,
        revision: str | None = None,
        family: Family = Family.SD,
    ) -> Model:
        async def change(session: AsyncSession) -> Model:
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
                family=family,
                enabled=True,
                # The first model of a kind becomes its default, so the kind is usable at once.
                is_default=has_default is None,
            )
            session.add(model)
            return model

        return await self._change_models(change)

    async def set_default_model(self, name: str) -> Model:
        async def change(session: AsyncSession) -> Model:
            model = await _model(session, name)
            if not model.enabled:
                raise StoreError(f"{name} is disabled; enable it before making it the default.")
            await session.execute(
                update(Model).where(Model.kind == model.kind).values(is_default=False)
            )
            model.is_default = True
            return model

        return await self._change_models(change)

    async def set_model_enabled(self, name: str, enabled: bool) -> Model:
        async def change(session: AsyncSession) -> Model:
            model = await _model(session, name)
            if not enabled and model.is_default:
                raise StoreError(
                    f"{name} is the default for {model.kind.value}; "
                    "make another model the default first."
                )
            model.enabled = enabled
            return model

        return await self._change_models(change)

    async def remove_model(self, name: str) -> Model:
        async def change(session: AsyncSession) -> Model:
            model = await _model(session, name)
            if model.is_default:
                raise StoreError(f"{name} is a default; make another model the default first.")
            await session.delete(model)
            return model

        return await self._change_models(change)

    async def ensure_default_models(
        self,
        defaults: Mapping[JobKind, str],
        revisions: Mapping[JobKind, str | None] | None = None,
        offered: Sequence[OfferedModel] = (),
    ) -> None:
        """Offer the configured models (pinned to ``revisions`` where given), named after their
        last path part, for each kind that has no default yet: on first start, and when a new
        kind appears. An empty source offers none of its kind.

        ``offered`` (other families' models) are added only on the very first start, when the
        table is empty, so that one an admin removed stays removed.
        """
        first_start = not await self.list_models(enabled_only=False)
        for kind, source in defaults.items():
            if not source.strip():
                continue
            name = _name_of(source)
            if await self.default_model(kind) is None and await self.get_model(name) is None:
                await self.add_model(name, source, kind, (revisions or {}).get(kind))
        for model in offered if first_start else ():
            if await self.get_model(_name_of(model.source)) is None:
                await self.add_model(
                    _name_of(model.source),
                    model.source,
                    JobKind.TEXT_TO_IMAGE,
                    model.revision,
                    model.family,
                )

    # --- students' suggestions --------------------------------------------------------

    async def add_suggestion(self, **fields: Any) -> Suggestion:
        async def change(session: AsyncSession) -> Suggestion:
            suggestion = Suggestion(status=SuggestionStatus.PENDING, **fields)
            session.add(suggestion)
            return suggestion

        return await self._writer.run(change)

    async def decide_suggestion(
        self, suggestion_id: int, approve: bool, admin_id: int
    ) -> Suggestion:
        """Approve (the model is offered at once, credited to the student) or reject a pending
        suggestion; ``StoreError`` when it is gone, decided already, or its name is taken."""

        async def change(session: AsyncSession) -> Suggestion:
            suggestion = await session.get(Suggestion, suggestion_id)
            if suggestion is None:
                raise StoreError(f"Suggestion #{suggestion_id} no longer exists.")
            if suggestion.status is not SuggestionStatus.PENDING:
                raise StoreError(
                    f"Suggestion #{suggestion_id} was {suggestion.status.value} already."
                )
            if approve:
                taken = select(Model.id).where(Model.name == suggestion.name)
                if await session.scalar(taken) is not None:
                    raise StoreError(f"A model named {suggestion.name!r} already exists.")
                has_default = await session.scalar(
                    select(Model.id).where(
                        Model.kind == suggestion.kind, Model.is_default.is_(True)
                    )
                )
                session.add(
                    Model(
                        name=suggestion.name,
                        source=suggestion.source,
                        kind=suggestion.kind,
                        enabled=True,
                        is_default=has_default is None,
                        suggested_by=suggestion.user_id,
                    )
                )
            suggestion.status = SuggestionStatus.APPROVED if approve else SuggestionStatus.REJECTED
            suggestion.decided_by = admin_id
            return suggestion

        return await self._change_models(change)

    # --- adapters ----------------------------------------------------------------------

    async def list_adapters(self, enabled_only: bool = False) -> Sequence[Adapter]:
        async with self._sessions() as session:
            query = select(Adapter).order_by(Adapter.name)
            if enabled_only:
                query = query.where(Adapter.enabled.is_(True))
            return (await session.scalars(query)).all()

    async def get_adapter(self, name: str) -> Adapter | None:
        async with self._sessions() as session:
            return await session.scalar(select(Adapter).where(Adapter.name == name))

    async def add_adapter(
        self, name: str, kind: AdapterKind, source: str, family: str, token: str = ""
    ) -> Adapter:
        async def change(session: AsyncSession) -> Adapter:
            if await session.scalar(select(Adapter.id).where(Adapter.name == name)) is not None:
                raise StoreError(f"An adapter named {name!r} already exists.")
            if token and await session.scalar(select(Adapter.id).where(Adapter.token == token)):
                raise StoreError(f"An embedding already uses the token {token}.")
            adapter = Adapter(
                name=name, kind=kind, source=source, family=family, token=token, enabled=True
            )
            session.add(adapter)
            return adapter

        return await self._writer.run(change)

    async def set_adapter_enabled(self, name: str, enabled: bool) -> Adapter:
        async def change(session: AsyncSession) -> Adapter:
            adapter = await _adapter(session, name)
            adapter.enabled = enabled
            return adapter

        return await self._writer.run(change)

    async def remove_adapter(self, name: str) -> Adapter:
        async def change(session: AsyncSession) -> Adapter:
            adapter = await _adapter(session, name)
            await session.delete(adapter)
            return adapter

        return await self._writer.run(change)

    # --- audit log ---------------------------------------------------------------------

    async def audit(
        self, actor_id: int, actor_name: str, action: str, target: str, ok: bool, outcome: str
    ) -> AuditEntry:
        async def change(session: AsyncSession) -> AuditEntry:
            entry = AuditEntry(
                actor_id=actor_id,
                actor_name=actor_name,
                action=action,
                target=target,
                ok=ok,
                outcome=outcome,
            )
            session.add(entry)
            return entry

        return await self._writer.run(change)

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
            count = select(func.count(Job.id)).where(Job.model_name == name, Job.status.in_(ACTIVE))
            return await session.scalar(count) or 0  # a count is never NULL

    async def count_images_since(self, since: datetime) -> int:
        """Images made since ``since`` by everyone, admins included (the rate limits skip them)."""
        async with self._sessions() as session:
            count = select(func.count(Image.id)).where(Image.created_at > since)
            return await session.scalar(count) or 0  # a count is never NULL

    async def count_by_status(self) -> dict[JobStatus, int]:
        async with self._sessions() as session:
            rows = await session.execute(
                select(Job.status, func.count(Job.id)).group_by(Job.status)
            )
            counts = dict.fromkeys(JobStatus, 0)
            counts.update({status: n for status, n in rows.all()})
            return counts


def check_window(
    used: Sequence[tuple[datetime, int]], amount: int, limit: int, now: datetime
) -> None:
    """Refuse ``amount`` more images if, with ``used`` ((when, images), oldest first), more
    than ``limit`` would fall in the hour before ``now``.

    Raises StoreError when ``amount`` alone is over the limit, RateLimited (with the moment
    enough room frees) when the window is full. Shared by the store's own check and the
    bot's in-memory limits (``bot.jobs.limits``), so both say the same.
    """
    if amount > limit:
        raise StoreError(f"You can make at most {limit} images an hour; ask for fewer.")
    recent = [(at, n) for at, n in used if at > now - RATE_WINDOW]
    made = sum(n for _, n in recent)
    excess = made + amount - limit
    if excess <= 0:
        return
    # Free enough room: the moment the oldest rows holding the excess leave the window.
    freed = 0
    for at, n in recent:
        freed += n
        if freed >= excess:
            raise RateLimited(limit, at + RATE_WINDOW, made, amount)
    raise RateLimited(limit, now + RATE_WINDOW, made, amount)


async def _adapter(session: AsyncSession, name: str) -> Adapter:
    adapter = await session.scalar(select(Adapter).where(Adapter.name == name))
    if adapter is None:
        raise StoreError(f"There is no adapter named {name!r}.")
    return adapter


def _job_row(new: NewJob, now: datetime) -> Job:
    return Job(
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
        adapters=adapter_columns(new.adapters),
        guild_id=new.guild_id,
        channel_id=new.channel_id,
        created_at=now,
        images=[],
    )


def _starting() -> dict[str, Any]:
    """What a job's row gets when it starts to run."""
    return {"started_at": utcnow(), "attempts": Job.attempts + 1}


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


async def _store_user(session: AsyncSession, new: NewJob) -> User | None:
    """Upsert the asker's row, unless this transaction has written it so already (a burst of
    one student's commands is one transaction); None then."""
    written: dict[int, tuple[str, str | None]] = session.info.setdefault("users_written", {})
    wanted = (new.user_name, new.user_locale)
    if written.get(new.user_id) == wanted:
        return None
    user = await _upsert_user(session, new.user_id, new.user_name, new.user_locale)
    written[new.user_id] = wanted
    return user


async def _consume(
    session: AsyncSession, user_id: int, amount: int, limit: int, now: datetime
) -> None:
    """Rolling-window check-and-consume. Runs inside the writer's (write-locked) transaction."""
    rows = await session.execute(
        select(RateLimitUsage.at, RateLimitUsage.amount)
        .where(RateLimitUsage.user_id == user_id, RateLimitUsage.at > now - RATE_WINDOW)
        .order_by(RateLimitUsage.at)
    )
    check_window([(at, n) for at, n in rows.all()], amount, limit, now)
    session.add(RateLimitUsage(user_id=user_id, amount=amount, at=now))


def _sources(wanted: JobStatus) -> list[JobStatus]:
    """The statuses a job may move to ``wanted`` from."""
    return [status for status, targets in _TRANSITIONS.items() if wanted in targets]


async def _transition(
    session: AsyncSession, job_ids: Sequence[int], wanted: JobStatus, **values: Any
) -> Sequence[Job]:
    """Move the jobs that may become ``wanted`` and set ``values``, in one statement; returns
    those moved. Only a job becoming done has images, so the others' image lists are empty."""
    moved = await session.scalars(
        update(Job)
        .where(Job.id.in_(job_ids), Job.status.in_(_sources(wanted)))
        .values(status=wanted, **values)
        .returning(Job),
        execution_options={"synchronize_session": False},
    )
    jobs = moved.all()
    if wanted is not JobStatus.DONE:
        for job in jobs:
            set_committed_value(job, "images", [])
    return jobs


async def _transition_one(
    session: AsyncSession, job_id: int, wanted: JobStatus, **values: Any
) -> Job:
    """One job to ``wanted``, or NotFound / InvalidTransition saying why not."""
    moved = await _transition(session, [job_id], wanted, **values)
    if moved:
        return moved[0]
    current = await session.scalar(select(Job.status).where(Job.id == job_id))
    if current is None:
        raise NotFound(f"Job {job_id} does not exist.")
    raise InvalidTransition(job_id, current, wanted)


async def _finish(
    session: AsyncSession, finished: Sequence[Finished], *, missing_ok: bool = False
) -> list[Job]:
    """Running jobs become done with their images: one update per model revision, one insert
    for all the images. Without ``missing_ok``, a job that was not running raises."""
    now = utcnow()
    done: dict[int, Job] = {}
    by_revision: dict[str | None, list[int]] = {}
    for item in finished:
        by_revision.setdefault(item.model_revision_used, []).append(item.job_id)
    for revision, job_ids in by_revision.items():
        moved = await _transition(
            session, job_ids, JobStatus.DONE, finished_at=now, model_revision_used=revision
        )
        done.update((job.id, job) for job in moved)
    if not missing_ok and (missing := [i.job_id for i in finished if i.job_id not in done]):
        await _transition_one(session, missing[0], JobStatus.DONE)  # raises why it is not
    rows: list[dict[str, Any]] = []
    for item in finished:
        if (job := done.get(item.job_id)) is None:
            continue
        images = [
            Image(
                job_id=job.id,
                index=i.index,
                seed=i.seed,
                nsfw=i.nsfw,
                path=i.path,
                created_at=now,
                first_flag=i.first_flag,
                first_score=i.first_score,
                second_flag=i.second_flag,
                second_score=i.second_score,
            )
            for i in item.images
        ]
        set_committed_value(job, "images", images)  # as stored, without reading them back
        rows += [_columns(image) for image in images]
        # A flagged image's original waits for a moderator: its review is part of the result.
        session.add_all(
            Review(
                job_id=job.id,
                image_index=i.index,
                user_id=job.user_id,
                original_path=i.original_path,
                created_at=now,
            )
            for i in item.images
            if i.original_path is not None
        )
        if item.outline_original_path is not None:
            session.add(
                Review(
                    job_id=job.id,
                    image_index=OUTLINE_INDEX,
                    user_id=job.user_id,
                    original_path=item.outline_original_path,
                    created_at=now,
                )
            )
    if rows:
        # One statement for the batch's images: the ORM would insert them one by one to read
        # back each id, which nothing here needs.
        await session.execute(insert(Image), rows)
    return [done[item.job_id] for item in finished if item.job_id in done]


def _columns(image: Image) -> dict[str, Any]:
    return {column: getattr(image, column) for column in _IMAGE_COLUMNS}


_IMAGE_COLUMNS = (
    "job_id",
    "index",
    "seed",
    "nsfw",
    "path",
    "created_at",
    "first_flag",
    "first_score",
    "second_flag",
    "second_score",
)


async def _model(session: AsyncSession, name: str) -> Model:
    model = await session.scalar(select(Model).where(Model.name == name))
    if model is None:
        raise NotFound(f"There is no model named {name!r}.")
    return model

"""The bot's tables, as typed SQLAlchemy 2.0 models.

A job row holds everything needed to reproduce its images: a column for each generation
parameter declared in ``engine.protocol.GenerationParams`` (a test checks their types), and
`migrations/` creates the same schema (a test checks there is no drift).
"""

from __future__ import annotations

import dataclasses
import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from engine.protocol import (
    BOUNDS,
    DEFAULT_MASK_BLEND,
    GENERATION_PARAMS,
    AdapterKind,
    AdapterRef,
    Family,
    GenerationParams,
    JobKind,
)

# Named constraints, so batch migrations on SQLite (which rebuild tables) can find them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC, returns aware UTC: SQLite keeps no time zone, so we keep one rule."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use datetime.now(UTC)")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)


def _enum(cls: type[enum.Enum]) -> Enum:
    # Store the values ("text_to_image"), as plain strings: no native enum type to migrate.
    return Enum(
        cls,
        values_callable=lambda e: [m.value for m in e],
        native_enum=False,
        create_constraint=False,
        length=20,
    )


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(100))
    locale: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    jobs: Mapped[list[Job]] = relationship(back_populates="user")


class Model(Base):
    """A checkpoint the bot offers. At most one default per kind (a partial unique index)."""

    __tablename__ = "models"
    __table_args__ = (
        Index(
            "uq_models_default_per_kind",
            "kind",
            unique=True,
            sqlite_where=text("is_default = 1"),
            postgresql_where=text("is_default"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    source: Mapped[str] = mapped_column(String(500))  # Hugging Face id or local folder
    revision: Mapped[str | None] = mapped_column(String(100))
    kind: Mapped[JobKind] = mapped_column(_enum(JobKind))
    # Detected from model_index.json when added (engine.load_rules); decides which options a
    # job on it takes and what it gets when they are left out (engine.protocol.FAMILIES).
    family: Mapped[Family] = mapped_column(_enum(Family), default=Family.SD, server_default="sd")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The student whose suggestion (/models-suggest) an admin approved; None: an admin's own.
    suggested_by: Mapped[int | None] = mapped_column(BigInteger)


class SuggestionStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class Suggestion(Base):
    """A model a student suggested, checked, waiting for an admin's Approve or Reject."""

    __tablename__ = "suggestions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger)
    user_name: Mapped[str] = mapped_column(String(100))
    channel_id: Mapped[int] = mapped_column(BigInteger)  # where the student is told
    name: Mapped[str] = mapped_column(String(100))  # the model's name once approved
    source: Mapped[str] = mapped_column(String(500))
    kind: Mapped[JobKind] = mapped_column(_enum(JobKind))
    licence: Mapped[str] = mapped_column(String(100), default="")  # from the model card
    status: Mapped[SuggestionStatus] = mapped_column(
        _enum(SuggestionStatus), default=SuggestionStatus.PENDING
    )
    decided_by: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Adapter(Base):
    """A LoRA or a textual-inversion embedding the bot offers, for one model family."""

    __tablename__ = "adapters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)  # what prompts write
    kind: Mapped[AdapterKind] = mapped_column(_enum(AdapterKind))
    source: Mapped[str] = mapped_column(String(500))  # Hugging Face id, folder or file
    family: Mapped[str] = mapped_column(String(20))  # engine.protocol.MODEL_FAMILIES
    token: Mapped[str] = mapped_column(String(60), default="")  # embeddings: the prompt word
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def ref(self, weight: float = 1.0) -> AdapterRef:
        """The adapter as a job carries it (by value: a later change does not touch the job)."""
        return AdapterRef(self.name, self.kind, self.source, weight, self.token)


class Job(Base):
    """One request for images, with every parameter needed to make them again."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_status_id", "status", "id"),
        Index("ix_jobs_user_id_created_at", "user_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[JobKind] = mapped_column(_enum(JobKind))
    status: Mapped[JobStatus] = mapped_column(_enum(JobStatus), default=JobStatus.QUEUED)

    # What to make. The model is copied by value: a model renamed or removed later must not
    # change what this job was.
    model_name: Mapped[str] = mapped_column(String(100))
    model_source: Mapped[str] = mapped_column(String(500))
    model_revision: Mapped[str | None] = mapped_column(String(100))  # as asked for
    model_revision_used: Mapped[str | None] = mapped_column(String(100))  # as loaded
    prompt: Mapped[str] = mapped_column(Text)
    negative_prompt: Mapped[str] = mapped_column(Text, default="")
    seeds: Mapped[list[int]] = mapped_column(JSON)  # one per image
    steps: Mapped[int] = mapped_column(Integer)
    guidance: Mapped[float] = mapped_column(Float)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    scheduler: Mapped[str] = mapped_column(String(40))
    strength: Mapped[float] = mapped_column(Float, default=1.0)
    image_ref: Mapped[str | None] = mapped_column(String(200))  # inputs by content hash
    mask_ref: Mapped[str | None] = mapped_column(String(200))
    mask_prompt: Mapped[str | None] = mapped_column(Text)
    # NULL for jobs made before results were composited (migration 0003): kept as they were.
    mask_blend: Mapped[int | None] = mapped_column(Integer, default=DEFAULT_MASK_BLEND)
    # Upscales only: the noise added to the picture before redrawing it (migration upscale).
    noise_level: Mapped[int] = mapped_column(
        Integer, default=BOUNDS.noise_level.default, server_default="20"
    )
    parent_job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    # A course comparison ("guidance", "steps", "schedulers", "denoising"; see bot.course) and
    # the values its panels show, fixed when asked so the job means the same after a restart;
    # or a /compare X/Y grid ("xy") and its axes (bot.jobs.xy_plot).
    comparison: Mapped[str | None] = mapped_column(String(20))
    comparison_values: Mapped[list[Any] | None] = mapped_column(JSON)
    # LoRAs and embeddings by value (``AdapterRef`` fields), so a reroll applies what ran.
    adapters: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)

    # Where it came from and where it went.
    guild_id: Mapped[int | None] = mapped_column(BigInteger)
    channel_id: Mapped[int] = mapped_column(BigInteger)
    status_message_id: Mapped[int | None] = mapped_column(BigInteger)
    result_message_id: Mapped[int | None] = mapped_column(BigInteger)

    # How it went.
    error: Mapped[str | None] = mapped_column(Text)  # exactly what the user was shown
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # engine runs started
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship(back_populates="jobs")
    images: Mapped[list[Image]] = relationship(
        back_populates="job", order_by="Image.index", cascade="all, delete-orphan"
    )

    @property
    def count(self) -> int:
        return len(self.seeds)

    def adapter_refs(self) -> tuple[AdapterRef, ...]:
        """The job's adapters as the engine takes them."""
        return tuple(
            AdapterRef(**{**fields, "kind": AdapterKind(fields["kind"])})
            for fields in self.adapters or ()
        )

    def generation_params(self) -> dict[str, Any]:
        """This job's generation parameters, as keyword arguments for ``NewJob`` or ``JobSpec``.

        JSON columns come back as lists; the dataclasses hold tuples, so that they hash.
        """
        return {name: _as_tuple(getattr(self, name)) for name in GENERATION_PARAMS}


def adapter_columns(adapters: tuple[AdapterRef, ...]) -> list[dict[str, Any]] | None:
    """The ``adapters`` column for ``adapters``; NULL for none."""
    return [dataclasses.asdict(adapter) for adapter in adapters] or None


def parameter_columns(params: GenerationParams) -> dict[str, Any]:
    """The job columns for ``params``: every declared parameter, tuples stored as JSON lists."""
    return {name: _as_list(getattr(params, name)) for name in GENERATION_PARAMS}


def _as_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _as_list(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


class Image(Base):
    __tablename__ = "images"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    index: Mapped[int] = mapped_column(Integer)  # position within the job
    seed: Mapped[int] = mapped_column(BigInteger)
    nsfw: Mapped[bool] = mapped_column(Boolean, default=False)  # blurred (the policy's verdict)
    path: Mapped[str] = mapped_column(String(500))  # relative to the output folder
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The safety gate's verdicts (engine.protocol.SafetyVerdict); NULL for images made before
    # the second opinion (migration 0004), and the second's for images it was not asked about.
    first_flag: Mapped[bool | None] = mapped_column(Boolean)
    first_score: Mapped[float | None] = mapped_column(Float)  # margin over a concept; > 0 flags
    second_flag: Mapped[bool | None] = mapped_column(Boolean)
    second_score: Mapped[float | None] = mapped_column(Float)

    job: Mapped[Job] = relationship(back_populates="images")


class ReviewState(enum.StrEnum):
    """Where a flagged image's review stands (bot.features.moderation)."""

    PENDING = "pending"
    RELEASED = "released"  # a false positive: the unblurred image replaced the blurred one
    CONFIRMED = "confirmed"  # stays blurred; the original is deleted after a while
    STRUCK = "struck"  # confirmed, and a strike for the user

    @property
    def decided(self) -> bool:
        return self is not ReviewState.PENDING


# ``reviews.image_index`` of an inpainting job's mask outline, the picture posted beside its
# images (it has no image row: it is posted once and not stored).
OUTLINE_INDEX = -1


class Review(Base):
    """A flagged image waiting for (or decided by) a moderator, one per image, and one for an
    inpainting's blurred mask outline (``OUTLINE_INDEX``).

    ``original_path`` is the unblurred picture, in the moderation folder, apart from the images
    the bot posts; NULL once it is deleted (``delete_original_after``, or retention).
    """

    __tablename__ = "reviews"
    __table_args__ = (
        Index("uq_reviews_job_id_image_index", "job_id", "image_index", unique=True),
        Index("ix_reviews_state_id", "state", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    image_index: Mapped[int] = mapped_column(Integer)
    user_id: Mapped[int] = mapped_column(BigInteger, index=True)  # the job's owner
    state: Mapped[ReviewState] = mapped_column(_enum(ReviewState), default=ReviewState.PENDING)
    original_path: Mapped[str | None] = mapped_column(String(500))
    card_message_id: Mapped[int | None] = mapped_column(BigInteger)
    decided_by: Mapped[int | None] = mapped_column(BigInteger)
    decided_by_name: Mapped[str | None] = mapped_column(String(100))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delete_original_after: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Strike(Base):
    """A moderator's strike against a user; enough in the window pause them. A pardon lifts
    every strike the user had (``pardoned_at``), so the pause ends and the count restarts."""

    __tablename__ = "strikes"
    __table_args__ = (Index("ix_strikes_user_id_at", "user_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger)
    review_id: Mapped[int | None] = mapped_column(ForeignKey("reviews.id", ondelete="SET NULL"))
    moderator_id: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    pardoned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RateLimitUsage(Base):
    """Images a user made, with when: a rolling window is a sum over recent rows."""

    __tablename__ = "rate_limit_usage"
    __table_args__ = (Index("ix_rate_limit_usage_user_id_at", "user_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    amount: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuditEntry(Base):
    """An admin action: who, what, when, and how it went."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    actor_id: Mapped[int] = mapped_column(BigInteger)
    actor_name: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(50))
    target: Mapped[str] = mapped_column(String(500), default="")
    outcome: Mapped[str] = mapped_column(Text)
    ok: Mapped[bool] = mapped_column(Boolean)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

"""The bot's configuration: one class per concern, read from the environment and `.env`.

Nothing else in the bot reads ``os.environ``. The engine process has its own section
(``engine.settings``, prefix ``ENGINE_``) and reads it itself, from the same `.env`. The bot's
sections (the token among them) are not the engine's business: ``bot_env_prefixes`` names them,
and the engine's process is started without them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, cast

from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.store.repository import OfferedModel
from engine.protocol import (
    BOUNDS,
    DEFAULT_MASK_BLEND,
    SCHEDULERS,
    Bounds,
    Family,
    number_text,
)

ENV_FILE = ".env"


def _config(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(
        env_prefix=prefix,
        env_file=ENV_FILE,
        env_file_encoding="utf-8",
        env_ignore_empty=True,  # an empty line in .env means "the default"
        extra="ignore",
    )


def _split_csv(value: Any) -> Any:
    """Lists are written as comma-separated values in `.env`: `a, b, c`."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class DiscordSettings(BaseSettings):
    """How to reach Discord, and where the bot may act."""

    model_config = _config("DISCORD_")

    token: SecretStr = SecretStr("")
    # Large bots put proxies here; the tests point them at a local stub.
    api_base_url: str = "https://discord.com/api/v10"
    gateway_url: str = ""  # empty: discord.py's own (wss://gateway.discord.gg/)
    guild_ids: Annotated[list[int], NoDecode] = []  # sync commands here at once; empty: global
    allowed_channels: Annotated[list[str], NoDecode] = ["diffusion-models-class"]
    admin_roles: Annotated[list[str], NoDecode] = ["Bot Admin"]

    _split = field_validator("guild_ids", "allowed_channels", "admin_roles", mode="before")(
        _split_csv
    )


class DatabaseSettings(BaseSettings):
    model_config = _config("DATABASE_")

    # Any SQLAlchemy async URL works; a server-grade database is one setting away.
    url: str = "sqlite+aiosqlite:///./data/bot.db"


class StorageSettings(BaseSettings):
    """Where images live on disk, and for how long."""

    model_config = _config("STORAGE_")

    output_dir: Path = Path("./data/images")  # generated images, one folder per day
    input_dir: Path = Path("./data/inputs")  # uploaded images and masks, by content hash
    # Days the bot keeps a job's result files (after it ended) and uploads (after the last job
    # using them); 0 keeps everything. The job rows stay, so /history, Details and /recipe
    # still work; the posted messages keep their images on Discord. See bot.jobs.retention.
    retention_days: int = Field(30, ge=0, le=3650)


class ModelDefaults(BaseSettings):
    """The models the bot offers before an admin changes anything."""

    model_config = _config("MODELS_")

    default_text_to_image: str = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    default_inpainting: str = "stable-diffusion-v1-5/stable-diffusion-inpainting"
    # /depth. Stability AI's own SD 2.x repositories left the Hub in November 2025; the
    # sd2-community copies hold the same weights. Pinned to a commit, so a change upstream
    # changes nobody's pictures. Empty: no depth model is offered.
    default_depth: str = "sd2-community/stable-diffusion-2-depth"
    # The commit of ``default_depth`` to run (empty: its latest).
    default_depth_revision: str = "6cb92dd9430a7f6da8d9e99d7b60acdebcc348b7"
    # Offered beside them on the very first start (engine.protocol.FAMILIES), each pinned to a
    # commit so every server gets the same weights. FLUX.1 schnell is gated on the Hub (accept
    # its licence there once; the engine reads HF_TOKEN).
    sdxl: str = "stabilityai/stable-diffusion-xl-base-1.0"
    sdxl_revision: str | None = "462165984030d82259a11f4367a4eed129e94a7b"
    flux: str = "black-forest-labs/FLUX.1-schnell"
    flux_revision: str | None = "741f7c3ce8b383c54771c7003378a50191e9efe9"

    def offered(self) -> list[OfferedModel]:
        """The other families' models to offer on first start; ``none`` (or empty) leaves one
        out."""
        models = [
            OfferedModel(self.sdxl, self.sdxl_revision, Family.SDXL),
            OfferedModel(self.flux, self.flux_revision, Family.FLUX),
        ]
        return [m for m in models if m.source.strip() and m.source.strip().lower() != "none"]

    # Inpainting keeps the user's own pixels outside the mask, blended over this many pixels.
    inpaint_mask_blend: int = Field(DEFAULT_MASK_BLEND, ge=0, le=64)
    # The x4 upscaler behind the Upscale buttons. stabilityai's SD 2.x repositories left the
    # Hub in November 2025; sd2-community keeps copies. The revision pins what first start
    # offers (empty: the latest, until an operator fills in a commit they have checked).
    default_upscaler: str = "sd2-community/stable-diffusion-x4-upscaler"
    default_upscaler_revision: str = ""
    # Noise added to a picture before the upscaler redraws it: more noise, more invented
    # detail (and less of the picture's own). Every upscale job stores the level it ran.
    upscale_noise_level: int = Field(
        BOUNDS.noise_level.default, ge=BOUNDS.noise_level.min, le=BOUNDS.noise_level.max
    )
    # Students' /models-suggest: the channel (by name) whose admins get an Approve / Reject
    # card; empty: suggestions are not taken. Larger models are refused before any card.
    suggestions_channel: str = ""
    suggestion_max_gb: float = Field(10.0, gt=0, le=500)
    # The one folder on the bot's machine whose subfolders students may suggest (a shared drop
    # folder); empty: Hugging Face ids only, so nobody can probe the machine's other paths.
    suggestions_folder: str = ""


class LimitSettings(BaseSettings):
    """Per-user fairness, and the operator's narrower bounds. Admins are exempt from the rate
    limits, not from the bounds.

    Every bound users meet is declared once, in ``engine.protocol.BOUNDS``, and the engine
    enforces exactly those. The ``max_*`` settings here may only lower them (a value outside is
    refused at start), and they are the only place to do so: the bot reads them, so the slash
    commands show the narrowed range and a value outside it is refused before a job is written
    or counted. The engine once had its own maxima (``ENGINE_MAX_STEPS`` and the like); an
    operator who lowered one got a bot that still offered the full range, wrote the job, counted
    it against the user's hourly images, and only then had the engine refuse it. Left empty,
    each is the protocol's own maximum.
    """

    model_config = _config("LIMITS_")

    images_per_hour: int = Field(40, ge=1)
    max_queued_jobs: int = Field(3, ge=1)
    max_prompt_chars: int = Field(
        BOUNDS.prompt_chars.max, ge=BOUNDS.prompt_chars.min, le=BOUNDS.prompt_chars.max
    )
    max_steps: int = Field(BOUNDS.steps.max, ge=BOUNDS.steps.min, le=BOUNDS.steps.max)
    max_guidance: float = Field(BOUNDS.guidance.max, ge=BOUNDS.guidance.min, le=BOUNDS.guidance.max)
    max_count: int = Field(BOUNDS.count.max, ge=BOUNDS.count.min, le=BOUNDS.count.max)
    # CPU seconds one upload may take to decode before it is refused (issue 15: a crafted JPEG
    # can take a minute); a real 16-megapixel photo takes well under one.
    decode_cpu_s: float = Field(10.0, gt=0, le=600)

    def bounds(self) -> Bounds:
        """The protocol's bounds, narrowed by these settings: what the commands offer."""
        return BOUNDS.narrowed(
            prompt_chars=self.max_prompt_chars,
            steps=self.max_steps,
            guidance=self.max_guidance,
            count=self.max_count,
        )


class SchedulerSettings(BaseSettings):
    model_config = _config("SCHEDULER_")

    max_batch_images: int = Field(4, ge=1, le=32)  # images per pipeline call
    # Batch sizes the engine runs fastest: on CUDA, the image counts of ENGINE_COMPILE_BUCKETS
    # (e.g. 1, 2, 4, 8, 16). A batch is cut to the largest of them that a start of it makes;
    # empty: batches are as full as compatible jobs make them.
    preferred_batch_sizes: Annotated[list[int], NoDecode] = []
    # Every queued job's message is brought to its exact place this often; in between, it
    # changes only when the place crosses a step (1, 2, 3, 5, 10, 20, 50, …).
    position_refresh_s: float = Field(60.0, gt=0)
    # A batch the engine has said nothing about for this long is taken as hung: the engine is
    # restarted and the batch retried once. Generous, since a first load downloads gigabytes.
    stall_timeout_s: float = Field(1800.0, gt=0)

    _split = field_validator("preferred_batch_sizes", mode="before")(_split_csv)

    @field_validator("preferred_batch_sizes")
    @classmethod
    def _check_sizes(cls, sizes: list[int]) -> list[int]:
        if any(not 1 <= size <= 32 for size in sizes):
            raise ValueError("batch sizes are 1 to 32 images")
        return sorted(set(sizes))


class EngineBackendSettings(BaseSettings):
    """Where the engine runs: ``local``, one child process on this machine's GPU, or ``ray``,
    replicas of a Ray Serve deployment, one per GPU (README, "Scale out").

    Read by the bot only. Its ``ENGINE_`` prefix is the engine's section's, whose settings the
    engine ignores these two of; ``RAY_ADDRESS`` is Ray's own name for the cluster's address.
    """

    model_config = _config("ENGINE_")

    backend: Literal["local", "ray"] = "local"
    # Ray: how many replicas; empty: one per GPU the cluster has, at least one.
    replicas: int | None = Field(None, ge=1, le=256)
    # Ray: a running cluster's head (host:port, as `ray start --head` prints it); empty: start
    # one on this machine, on 127.0.0.1.
    ray_address: str = Field("", validation_alias="RAY_ADDRESS")


class ModerationSettings(BaseSettings):
    """Moderation (bot.features.moderation): the review queue for flagged images, strikes,
    and prompt screening."""

    model_config = _config("MODERATION_")

    # Where a card for each flagged image goes (a channel only moderators can read); empty:
    # no review queue, and flagged images simply stay blurred (their originals are not kept).
    channel_id: int | None = None
    # Who may decide a review: these roles, or the Manage Messages permission.
    roles: Annotated[list[str], NoDecode] = ["Moderator"]
    # Unblurred originals live here, apart from the posted images, until a decision.
    originals_dir: Path = Path("./data/moderation")
    # Confirm (and Strike) keep an original this long for a second look, then delete it.
    delete_original_after_hours: float = Field(24.0, ge=0, le=24 * 365)
    strikes_to_pause: int = Field(3, ge=1, le=100)  # strikes in the window that pause a user
    strike_window_days: float = Field(30.0, gt=0, le=3650)
    pause_hours: float = Field(24.0, gt=0, le=24 * 3650)
    # Prompt screening, off while both are empty: words or phrases refused up front (whole
    # words, any case), comma separated, and/or a file with one per line (# comments).
    blocked_words: Annotated[list[str], NoDecode] = []
    blocked_words_file: Path | None = None

    _split = field_validator("roles", "blocked_words", mode="before")(_split_csv)

    def screened_words(self) -> list[str]:
        """The blocked words from both settings (the file is read when the bot starts)."""
        words = list(self.blocked_words)
        if self.blocked_words_file is not None:
            lines = self.blocked_words_file.read_text(encoding="utf-8").splitlines()
            words += [line.strip() for line in lines if line.strip() and not line.startswith("#")]
        return words


class CourseSettings(BaseSettings):
    """Course mode: what the lesson buttons under each result compare.

    The defaults are the course's own figures (guidance 0/1/2/10 plus the usual 7.5, steps 15
    against 50, the schedulers it names). Each panel is a full image, so longer lists cost
    students more of their hourly images and the channel more GPU time.
    """

    model_config = _config("COURSE_")

    guidance_values: Annotated[list[float], NoDecode] = [0.0, 1.0, 2.0, 7.5, 10.0]
    steps_values: Annotated[list[int], NoDecode] = [10, 15, 25, 50]
    schedulers: Annotated[list[str], NoDecode] = ["pndm", "ddim", "lms", "euler", "dpmpp_2m_karras"]
    denoising_panels: int = Field(5, ge=2, le=8)  # predicted clean images along one run

    _split = field_validator("guidance_values", "steps_values", "schedulers", mode="before")(
        _split_csv
    )

    @field_validator("guidance_values", "steps_values", "schedulers")
    @classmethod
    def _check_panels(cls, values: list[Any], info: ValidationInfo) -> list[Any]:
        if not 2 <= len(values) <= 8:
            raise ValueError("a comparison needs 2 to 8 values")
        if len(set(values)) != len(values):
            raise ValueError("each value once")
        if info.field_name == "schedulers" and (unknown := set(values) - set(SCHEDULERS)):
            raise ValueError(f"unknown scheduler(s) {sorted(unknown)}; use {', '.join(SCHEDULERS)}")
        if info.field_name == "steps_values":
            check_course_steps(values, BOUNDS)
        if info.field_name == "guidance_values":
            check_course_guidance(values, BOUNDS)
        return values


def check_course_steps(values: list[int], bounds: Bounds) -> None:
    """Raise ``ValueError`` unless every lesson's steps lie within ``bounds``."""
    if not all(v in bounds.steps for v in values):
        raise ValueError(
            f"steps must be from {number_text(bounds.steps.min)} to {number_text(bounds.steps.max)}"
        )


def check_course_guidance(values: list[float], bounds: Bounds) -> None:
    """Raise ``ValueError`` unless every lesson's guidance is 0 or from 1 up to the bound."""
    # diffusers guides only above 1; between 0 and 1 it draws exactly what 1 draws.
    if not all(v == 0 or (v >= 1 and v in bounds.guidance) for v in values):
        most = number_text(bounds.guidance.max)
        raise ValueError(f"guidance must be 0 (the prompt ignored) or from 1 to {most}")


class Settings(BaseModel):
    """All sections together; build with :func:`load_settings`."""

    discord: DiscordSettings
    database: DatabaseSettings
    storage: StorageSettings
    models: ModelDefaults
    limits: LimitSettings
    scheduler: SchedulerSettings
    # Defaulted so that code building Settings by hand (tests, tools) needs no course section.
    course: CourseSettings = Field(default_factory=lambda: CourseSettings(_env_file=None))
    engine: EngineBackendSettings = Field(
        default_factory=lambda: EngineBackendSettings(_env_file=None)
    )
    moderation: ModerationSettings = Field(
        default_factory=lambda: ModerationSettings(_env_file=None)
    )

    @model_validator(mode="after")
    def _lessons_within_the_limits(self) -> Settings:
        # A lesson's panels are jobs like any other: an operator's narrower LIMITS_MAX_* hold.
        bounds = self.limits.bounds()
        try:
            check_course_steps(self.course.steps_values, bounds)
        except ValueError as error:
            raise ValueError(f"COURSE_STEPS_VALUES is not valid with LIMITS_*: {error}.") from None
        try:
            check_course_guidance(self.course.guidance_values, bounds)
        except ValueError as error:
            raise ValueError(
                f"COURSE_GUIDANCE_VALUES is not valid with LIMITS_*: {error}."
            ) from None
        return self


_S = TypeVar("_S", bound=BaseSettings)


class ConfigError(ValueError):
    """A setting has a value that cannot be used; the message names the variable."""


class StartupError(Exception):
    """A problem the operator can fix (a refused token, Discord out of reach); the message
    says how. Raised by ``bot.app``, printed as one line by ``bot.launcher``."""


def _sections() -> dict[str, type[BaseSettings]]:
    """Each field of ``Settings`` and the section class it holds."""
    # Every field of Settings is annotated with its section's class, never left bare.
    return {
        name: cast("type[BaseSettings]", field.annotation)
        for name, field in Settings.model_fields.items()
    }


def load_settings(env_file: str | Path | None = ENV_FILE) -> Settings:
    """Read every section from the environment and ``env_file`` (None: environment only)."""
    sections = {name: _section(cls, env_file) for name, cls in _sections().items()}
    try:
        return Settings(**sections)
    except ValidationError as error:  # settings that disagree with each other
        raise ConfigError(str(error.errors()[0]["ctx"]["error"])) from None


def bot_env_prefixes() -> tuple[str, ...]:
    """The environment prefixes of the bot's sections (``DISCORD_``, ``DATABASE_``, …): what
    the engine's processes are started without. ``ENGINE_`` is the engine's own, though the
    bot reads two settings of it (``EngineBackendSettings``)."""
    return tuple(
        prefix
        for cls in _sections().values()
        if (prefix := cls.model_config["env_prefix"]) != "ENGINE_"
    )


def _section(cls: type[_S], env_file: str | Path | None) -> _S:
    try:
        return cls(_env_file=env_file)
    except ValidationError as error:
        first = error.errors()[0]
        name = cls.model_config.get("env_prefix", "") + str(first["loc"][0]).upper()
        raise ConfigError(f"{name} is not valid: {first['msg']}.") from None

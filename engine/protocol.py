"""What crosses the boundary between the bot and the engine process.

Plain frozen dataclasses only: no torch, no discord, no PIL. The bot imports this module (and,
of the rest of the engine package, only ``engine.prompt_syntax``), so it must stay import-light.

Wire format: each message is one frame, a 4-byte big-endian length followed by that many bytes
of body. The body is a 4-byte big-endian length, that many bytes of UTF-8 JSON, then the
message's ``bytes`` fields (the PNGs) back to back, raw. The JSON object has a ``type`` field
naming the class, and each ``bytes`` field is ``{"$bytes": [offset, length]}`` into the raw
part. JSON keeps the stream debuggable; the pictures stay out of it because base64 and a JSON
string of a megabyte cost the bot about 2 ms per 512x512 result to decode, more than the rest
of its work on the job (``bench/bench_bot_throughput.py``).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import struct
import types
import typing
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, BinaryIO, ClassVar, Generic, Self, TypeVar

MAX_FRAME_BYTES = 256 * 1024 * 1024
_LENGTH = struct.Struct(">I")


# --- every user-facing bound and default, declared once ------------------------------------
# What a user may ask for (and what they get when they leave an option out) is declared here and
# nowhere else. The bot's checks and slash-command options, the course settings' validators, the
# engine's checks, the engine's command line, the zh-CN descriptions and README's bad-input table
# (a test compares it) all read ``BOUNDS``, ``SIZES`` and ``SCHEDULERS``, so changing a bound is
# a one-line change below. The engine enforces exactly these bounds. An operator may only narrow
# them, in one place that the bot reads (its ``LIMITS_*`` settings), so that a value the bot
# accepts always runs, and a value it refuses is refused before a job is written or counted.

N = TypeVar("N", int, float)


def number_text(value: float) -> str:
    """A bound as people read it: ``100``, ``7.5``, ``0`` (not ``0.0``), ``4294967295``."""
    return str(value) if isinstance(value, int) else f"{value:g}"


@dataclass(frozen=True)
class Bound(Generic[N]):
    """An inclusive range, ``min`` to ``max``."""

    min: N
    max: N

    def __post_init__(self) -> None:
        if not self.min <= self.max:
            raise ValueError(f"an empty bound: {self.min} to {self.max}")

    def __contains__(self, value: object) -> bool:
        """A number (not a bool, not NaN) from ``min`` to ``max``."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        return self.min <= value <= self.max

    def narrowed(self, most: N) -> Self:
        """This bound with ``most`` as its maximum: an operator's setting, which cannot widen it."""
        self._check_narrower(most)
        return dataclasses.replace(self, max=most)

    def _check_narrower(self, most: N) -> None:
        if most not in self:
            raise ValueError(
                f"must be from {number_text(self.min)} to {number_text(self.max)}, "
                "the bounds in engine/protocol.py"
            )


@dataclass(frozen=True)
class BoundWithDefault(Bound[N]):
    """A bound and the value used when a user gives none."""

    default: N

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.default not in self:
            raise ValueError(f"the default {self.default} is outside {self.min} to {self.max}")

    def narrowed(self, most: N) -> Self:
        """As ``Bound.narrowed``; a default above the new maximum comes down to it."""
        self._check_narrower(most)
        default = most if self.default > most else self.default
        return dataclasses.replace(self, max=most, default=default)


@dataclass(frozen=True)
class Size:
    """A picture size users pick by name (``SIZES``)."""

    width: int
    height: int
    shape: str  # "Square", "Landscape 3:2": what the size is called, without its pixels

    @property
    def label(self) -> str:
        """What the choice shows: “Square 512×512”, “Landscape 3:2, 768×512”."""
        return size_label(self, self.shape, ", ")


def size_label(size: Size, shape: str, comma: str) -> str:
    """``shape`` and the pixels, with ``comma`` between them after a ratio (other languages)."""
    return f"{shape}{comma if ':' in shape else ' '}{size.width}×{size.height}"


# Sizes near the 512 px that SD 1.x was trained at, all multiples of 8 (the VAE's factor).
SIZES: dict[str, Size] = {
    "square": Size(512, 512, "Square"),
    "landscape": Size(768, 512, "Landscape 3:2"),
    "portrait": Size(512, 768, "Portrait 2:3"),
    "wide": Size(896, 512, "Wide 16:9"),
    "tall": Size(512, 896, "Tall 9:16"),
}

SCHEDULERS: dict[str, str] = {
    # friendly name used on the wire -> label shown to people (and written in PNG metadata,
    # matching the AUTOMATIC1111 sampler names so other tools read our images)
    "euler": "Euler",
    "euler_a": "Euler a",
    "dpmpp_2m_karras": "DPM++ 2M Karras",
    "ddim": "DDIM",
    "pndm": "PNDM",
    "lms": "LMS",
}


@dataclass(frozen=True)
class Bounds:
    """Every user-facing bound and default; ``BOUNDS`` is the one instance.

    ``narrowed`` makes an operator's narrower copy (the bot's ``LIMITS_*`` settings).
    """

    steps: BoundWithDefault[int] = BoundWithDefault(1, 100, default=30)
    guidance: BoundWithDefault[float] = BoundWithDefault(0.0, 30.0, default=7.5)
    count: BoundWithDefault[int] = BoundWithDefault(1, 4, default=1)  # images (seeds) per job
    seed: Bound[int] = Bound(0, 2**32 - 1)
    prompt_chars: Bound[int] = Bound(1, 1000)  # the prompt, and the negative prompt
    # A weight written in a prompt, ``(word:1.3)`` (engine.prompt_syntax). Past about 1.6 SD 1.x
    # draws garbage; 0 removes the word's pull altogether.
    prompt_weight: Bound[float] = Bound(0.0, 2.0)
    mask_prompt_chars: Bound[int] = Bound(1, 200)  # a few words; CLIPSeg reads 77 tokens at most
    # Inpainting: how much of the area changes; 1 repaints it from scratch, as inpainting
    # checkpoints expect.
    strength: BoundWithDefault[float] = BoundWithDefault(0.01, 1.0, default=1.0)
    # Image-to-image: how far from the starting picture; 1 keeps only its colours' faint trace,
    # low values change little. The Vary button's two strengths lie inside it.
    image_strength: BoundWithDefault[float] = BoundWithDefault(0.05, 1.0, default=0.6)
    # A LoRA's weight, ``<lora:name:0.8>`` in a prompt or the ``/imagine`` option: 0 changes
    # nothing, 1 is the strength it was trained at, past 2 most LoRAs draw garbage.
    lora_weight: BoundWithDefault[float] = BoundWithDefault(0.0, 2.0, default=1.0)
    loras_per_job: int = 4  # LoRAs one job may apply at once
    vary_subtle: float = 0.35
    vary_strong: float = 0.7
    # ×4 upscaling: how much noise the upscaler adds to the low-resolution picture before it
    # redraws it (the x4 upscaler was trained up to 350; more noise, more invented detail). The
    # operator picks it (``MODELS_UPSCALE_NOISE_LEVEL``), users do not.
    noise_level: BoundWithDefault[int] = BoundWithDefault(0, 350, default=20)
    # ×4 upscaling: the most pixels a picture to upscale may have. Every size /imagine offers
    # fits (wide 896×512 becomes 3584×2048); the output has 16 times as many.
    upscale_pixels: Bound[int] = Bound(1, 896 * 512)
    # Pixels, each side of a picture: up to the longest of SDXL's and FLUX's own sizes
    # (``FAMILIES``). Uploaded pictures are fitted smaller (bot.jobs.inputs).
    side: Bound[int] = Bound(64, 1536)
    side_multiple: int = 8  # sides are multiples of the VAE's downscale factor
    size: str = "square"  # the default, a key of SIZES
    scheduler: str = "euler"  # the default, a key of SCHEDULERS
    # /compare's X/Y grid: panels in all (x values times y values). Past 16 a grid's panels are
    # too small to read in Discord's preview; the course lessons ask for at most 8.
    compare_panels: Bound[int] = Bound(2, 16)

    def __post_init__(self) -> None:
        if not all(s in self.image_strength for s in (self.vary_subtle, self.vary_strong)):
            raise ValueError("the Vary strengths must lie inside image_strength")
        if self.size not in SIZES or self.scheduler not in SCHEDULERS:
            raise ValueError(f"no size {self.size!r} or no scheduler {self.scheduler!r}")
        for name, size in SIZES.items():
            if not all(
                side in self.side and side % self.side_multiple == 0
                for side in (size.width, size.height)
            ):
                raise ValueError(f"the {name} size is outside the side bound")

    def narrowed(self, **most: float) -> Bounds:
        """These bounds with lower maxima, e.g. ``narrowed(steps=50)``; never wider."""
        return dataclasses.replace(
            self, **{name: getattr(self, name).narrowed(value) for name, value in most.items()}
        )


BOUNDS = Bounds()
MAX_SEED = BOUNDS.seed.max


class JobKind(enum.StrEnum):
    """What a job does, and (for models) what a checkpoint is for."""

    TEXT_TO_IMAGE = "text_to_image"
    INPAINT = "inpaint"
    # A picture as the starting point (``strength`` says how far from it). Runs on a
    # text-to-image checkpoint; never a model's own kind.
    IMAGE_TO_IMAGE = "image_to_image"
    # A picture as the starting point, its estimated depth as extra conditioning (SD 2 depth:
    # a UNet with a fifth input channel and a DPT depth estimator). Both a job's and a
    # model's kind: only a depth checkpoint runs it, and it runs nothing else.
    DEPTH_TO_IMAGE = "depth_to_image"
    # A result made four times larger (``noise_level`` says how much the upscaler may redraw).
    # Also a model's kind: an upscaler checkpoint does nothing else.
    UPSCALE = "upscale"

    @property
    def model_kind(self) -> JobKind:
        """The kind of model that runs jobs of this kind."""
        return JobKind.TEXT_TO_IMAGE if self is JobKind.IMAGE_TO_IMAGE else self

    @property
    def takes_picture(self) -> bool:
        """Whether a job of this kind starts from an uploaded picture (``image_path``)."""
        return self is not JobKind.TEXT_TO_IMAGE

    @property
    def uses_strength(self) -> bool:
        """Whether ``strength`` decides the pixels (only ``int(steps × strength)`` steps run):
        inpainting, image-to-image and depth-to-image; an upscale runs all its steps."""
        return self in (JobKind.INPAINT, JobKind.IMAGE_TO_IMAGE, JobKind.DEPTH_TO_IMAGE)

    @property
    def scale(self) -> int:
        """How many times larger than ``width`` × ``height`` each side of the result is."""
        return 4 if self is JobKind.UPSCALE else 1


class AdapterKind(enum.StrEnum):
    """What an adapter is: LoRA weights added to the UNet, or a textual-inversion embedding."""

    LORA = "lora"
    EMBEDDING = "embedding"


class Family(enum.StrEnum):
    """A model family: the kind of network a checkpoint is, which decides what it takes."""

    SD = "sd"  # Stable Diffusion 1.x and 2.x (a UNet, one CLIP text encoder)
    SDXL = "sdxl"  # Stable Diffusion XL (a bigger UNet, two CLIP text encoders)
    FLUX = "flux"  # FLUX.1 [schnell] (a flow-matching transformer, CLIP + T5, guidance-distilled)


# SDXL's and FLUX.1's own sizes, about a megapixel each: the buckets SDXL was trained on, which
# FLUX.1 also draws well (multiples of 16, as FLUX packs latents in 2x2 patches).
MEGAPIXEL_SIZES: dict[str, Size] = {
    "square": Size(1024, 1024, "Square"),
    "landscape": Size(1216, 832, "Landscape 3:2"),
    "portrait": Size(832, 1216, "Portrait 2:3"),
    "wide": Size(1344, 768, "Wide 16:9"),
    "tall": Size(768, 1344, "Tall 9:16"),
}


@dataclass(frozen=True)
class FamilyTraits:
    """What a family takes and what a job on it gets when an option is left out.

    The bot refuses an option a family does not take (naming the family), and fills the ones
    left out from here; the engine checks the same table.
    """

    label: str  # how people call it, in messages: "FLUX.1 schnell takes no negative prompt"
    sizes: dict[str, Size]  # the same names as SIZES, at this family's own pixels
    steps: BoundWithDefault[int]  # within BOUNDS.steps
    # The default classifier-free guidance; None: the family takes no guidance (a
    # guidance-distilled model runs one pass per step and has no scale to set).
    guidance: float | None
    negative_prompt: bool  # whether it takes one (classifier-free guidance needs one)
    schedulers: tuple[str, ...]  # keys of SCHEDULERS it runs; the first is its default
    # whether ``(word:1.3)`` weights and prompts past one CLIP window are read (compel: SD, SDXL)
    weighted_prompts: bool
    kinds: frozenset[JobKind]  # the jobs it runs
    # Whether textual-inversion embeddings load (engine.models.adapters): CLIP text encoders
    # take them, FLUX.1's T5 encoder has none.
    embeddings: bool
    # ``_class_name`` values in model_index.json that diffusers ships for this family.
    pipeline_classes: tuple[str, ...]

    @property
    def default_guidance(self) -> float:
        """What a job stores as its guidance when none is given: 0 for a family that takes
        none (diffusers' own examples run FLUX.1 schnell at ``guidance_scale=0``)."""
        return 0.0 if self.guidance is None else self.guidance

    def takes_scheduler(self, name: str) -> bool:
        return name in self.schedulers


_ALL_KINDS = frozenset({JobKind.TEXT_TO_IMAGE, JobKind.INPAINT, JobKind.IMAGE_TO_IMAGE})

FAMILIES: dict[Family, FamilyTraits] = {
    Family.SD: FamilyTraits(
        label="Stable Diffusion 1.x/2.x",
        sizes=SIZES,
        steps=BOUNDS.steps,
        guidance=BOUNDS.guidance.default,
        negative_prompt=True,
        schedulers=tuple(SCHEDULERS),
        weighted_prompts=True,
        # SD 2's depth checkpoints and the x4 upscaler are of this family, each doing only its
        # own job (engine.models.registry).
        kinds=_ALL_KINDS | {JobKind.DEPTH_TO_IMAGE, JobKind.UPSCALE},
        embeddings=True,
        pipeline_classes=(
            "StableDiffusionPipeline",
            "StableDiffusionImg2ImgPipeline",
            "StableDiffusionInpaintPipeline",
            "StableDiffusionDepth2ImgPipeline",
            "StableDiffusionUpscalePipeline",
        ),
    ),
    Family.SDXL: FamilyTraits(
        label="SDXL",
        sizes=MEGAPIXEL_SIZES,
        steps=BoundWithDefault(1, BOUNDS.steps.max, default=30),
        guidance=7.0,
        negative_prompt=True,
        schedulers=tuple(SCHEDULERS),
        weighted_prompts=True,  # compel over both its encoders (engine.tasks.prompt_embeddings)
        kinds=_ALL_KINDS,
        embeddings=True,  # one vector set per CLIP encoder (clip_l, clip_g)
        pipeline_classes=(
            "StableDiffusionXLPipeline",
            "StableDiffusionXLImg2ImgPipeline",
            "StableDiffusionXLInpaintPipeline",
        ),
    ),
    # Guidance-distilled to make a picture in 1-4 steps with its own flow-matching Euler sampler.
    Family.FLUX: FamilyTraits(
        label="FLUX.1 schnell",
        sizes=MEGAPIXEL_SIZES,
        steps=BoundWithDefault(1, 4, default=4),
        guidance=None,
        negative_prompt=False,
        schedulers=("euler",),  # FlowMatchEulerDiscreteScheduler, the checkpoint's own
        # compel cannot weight its T5 encoder; a prompt past T5's window is refused instead
        weighted_prompts=False,
        # inpainting and image-to-image on the text-to-image weights (``from_pipe``)
        kinds=_ALL_KINDS,
        embeddings=False,
        pipeline_classes=("FluxPipeline", "FluxImg2ImgPipeline", "FluxInpaintPipeline"),
    ),
}


# The T5 tokens FLUX.1 schnell reads of a prompt (its end marker included), as it was trained;
# a longer prompt is refused (engine.tasks.prompt_embeddings), never silently cut.
FLUX_MAX_SEQUENCE_LENGTH = 256

# The model families adapters can be added for, by the ``Family`` value stored with each
# adapter -> what people call it. An adapter only fits models of its own family
# (``Model.family``). LoRAs fit every family; embeddings only those whose traits say so.
MODEL_FAMILIES: dict[str, str] = {family.value: traits.label for family, traits in FAMILIES.items()}
DEFAULT_FAMILY = Family.SD.value


def family_of_pipeline(class_name: object) -> Family | None:
    """The family whose diffusers pipeline ``model_index.json`` names; None for any other class
    (a family this engine does not run, or custom pipeline code)."""
    for family, traits in FAMILIES.items():
        if class_name in traits.pipeline_classes:
            return family
    return None


class ErrorKind(enum.StrEnum):
    """Why a job ended without a result; the bot decides what to do from this."""

    BAD_INPUT = "bad_input"  # the spec was refused; retrying the same spec cannot help
    OUT_OF_MEMORY = "out_of_memory"  # too big for the GPU now; smaller settings may work
    MODEL_UNAVAILABLE = "model_unavailable"  # the model could not be loaded
    CANCELLED = "cancelled"  # cancelled on request
    ENGINE_CRASHED = "engine_crashed"  # the process died with the job in flight; retryable
    INTERNAL = "internal"  # anything else; the message is generic, details are in the log


def is_folder_source(source: str) -> bool:
    """Full paths (and ``~``) are folders; everything else is read as a Hugging Face id.

    A relative path would be read against whatever folder the engine runs in, and
    ``org/name`` is both a relative path and an id, so folders must be given in full.
    A folder is a path on the server: only admins are shown it.
    """
    return source.startswith("~") or PurePath(source).is_absolute()


@dataclass(frozen=True)
class ModelRef:
    """Which weights to run: a display name, and where `from_pretrained` finds them."""

    name: str
    source: str  # Hugging Face id or a local folder
    revision: str | None = None


@dataclass(frozen=True)
class Variant:
    """One panel of a comparison: the settings it varies, from the job's own seed.

    The course lessons vary guidance, steps or the scheduler; /compare's X/Y grids may also
    vary the seed, the image-to-image strength or the model (None: the job's own).
    """

    label: str  # what the panel shows, e.g. "CFG 7.5" (for logs and metadata)
    guidance: float
    steps: int
    scheduler: str
    seed: int | None = None
    strength: float | None = None
    model: ModelRef | None = None


@dataclass(frozen=True)
class AdapterRef:
    """An adapter a job applies, resolved by the bot from its prompt: where to load it from.

    A LoRA carries the weight the prompt gave it (``<lora:name:0.8>``); an embedding carries
    the token prompts write it with (``<my-style>``) and no weight.
    """

    name: str
    kind: AdapterKind
    source: str  # Hugging Face id, local folder or local .safetensors file
    weight: float = 1.0
    token: str = ""


# Marks a parameter that may differ between the images of one pipeline call (the pipeline takes
# it per image); every other parameter is shared by a batch, so it is in ``JobSpec.batch_key``.
_PER_IMAGE = {"per_image": True}
DEFAULT_MASK_BLEND = 8  # pixels of soft edge where an inpainted area meets the kept picture


@dataclass(frozen=True, kw_only=True)
class GenerationParams:
    """The settings that decide a job's pixels, declared once for both processes.

    ``NewJob`` (what a command asks for) and ``JobSpec`` (what the engine runs) inherit these
    fields; the job row has a column for each (a test checks the types and the migrations), and
    the code that copies a job copies all of them by name. README's "Adding a generation
    parameter" lists the few places a new one still goes.
    """

    prompt: str = field(metadata=_PER_IMAGE)
    seeds: tuple[int, ...] = field(metadata=_PER_IMAGE)  # one image per seed
    negative_prompt: str = field(default="", metadata=_PER_IMAGE)
    # The defaults are the ones users get when they leave an option out (``BOUNDS``).
    steps: int = BOUNDS.steps.default
    guidance: float = BOUNDS.guidance.default
    width: int = SIZES[BOUNDS.size].width
    height: int = SIZES[BOUNDS.size].height
    scheduler: str = BOUNDS.scheduler
    # Inpainting: 1.0 repaints the masked area from pure noise. Image-to-image: how far from
    # the starting picture (its own bound, ``BOUNDS.image_strength``).
    strength: float = BOUNDS.strength.default
    # Inpainting only, instead of a mask picture: words naming the area to repaint ("the dog");
    # the engine makes the mask from them (CLIPSeg).
    mask_prompt: str | None = field(default=None, metadata=_PER_IMAGE)
    # Inpainting only: outside the mask the result is the user's own picture, composited back
    # over a soft edge this many pixels wide (no VAE round trip where nothing was asked to
    # change). None: the pipeline's pixels as they are (jobs made before compositing existed,
    # so their rerolls keep their pixels).
    mask_blend: int | None = field(default=DEFAULT_MASK_BLEND, metadata=_PER_IMAGE)
    # Upscaling only: the noise added to the low-resolution picture (``BOUNDS.noise_level``).
    # The pipeline takes one level per call, so it is in the batch key.
    noise_level: int = BOUNDS.noise_level.default


GENERATION_PARAMS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(GenerationParams))
# The parameters one pipeline call shares, in declaration order.
SHARED_PARAMS: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(GenerationParams) if not f.metadata.get("per_image")
)


@dataclass(frozen=True, kw_only=True)
class JobSpec(GenerationParams):
    """Everything the engine needs to produce a job's images, and nothing about Discord.

    One job can hold several images (one seed each). Jobs whose ``batch_key`` is equal can be
    run in one pipeline call; each image keeps its own generator, so batching never changes a
    picture. The generation parameters come from ``GenerationParams``.
    """

    job_id: int
    kind: JobKind
    model: ModelRef
    # inpainting, image-to-image, depth-to-image and upscaling: the picture to start from;
    # width and height are its size (an upscale's result is ``kind.scale`` times larger)
    image_path: str | None = None
    mask_path: str | None = None  # inpainting only: white = repaint
    preview: bool = True  # send small previews with progress events
    # Course comparisons (engine.comparisons), at most one of the two. ``variants``: one image
    # per seed and variant, each from the job's own seed. ``decode_steps``: the denoising strip,
    # the predicted clean image at each of these 1-based steps of one run (a step at or past the
    # last gives the finished image).
    variants: tuple[Variant, ...] = ()
    decode_steps: tuple[int, ...] = ()
    # LoRAs and embeddings, in the order the prompt names them (``engine.models.adapters``).
    adapters: tuple[AdapterRef, ...] = ()

    @property
    def image_count(self) -> int:
        """Images the job returns: one per seed, times its panels when it is a comparison."""
        return len(self.seeds) * (len(self.variants) or len(self.decode_steps) or 1)

    @property
    def batch_key(self) -> tuple[Any, ...]:
        """Jobs with the same key share one pipeline call.

        Every generation parameter not marked per image is in the key, so a new parameter is
        kept apart by default. Guidance is among them: diffusers takes one guidance scale per
        call, and a per-sample scale would need a hand-written denoising loop.
        """
        return (
            self.kind,
            self.model,
            *(getattr(self, name) for name in SHARED_PARAMS),
            # Comparisons run their own way (engine.comparisons); equal ones batch together.
            self.variants,
            self.decode_steps,
            # LoRAs change the UNet for the whole call, so different sets (or weights) never
            # share one.
            self.adapters,
        )


# --- requests: bot -> engine -------------------------------------------------------------


@dataclass(frozen=True)
class RunBatch:
    """Run these jobs, ideally as one pipeline call. The engine answers per job."""

    jobs: tuple[JobSpec, ...]
    type: ClassVar[str] = "run_batch"


@dataclass(frozen=True)
class Cancel:
    job_id: int
    type: ClassVar[str] = "cancel"


@dataclass(frozen=True)
class LoadModel:
    request_id: int
    model: ModelRef
    kind: JobKind
    type: ClassVar[str] = "load_model"


@dataclass(frozen=True)
class UnloadModel:
    """Unload a model; or, with ``adapter`` (a LoRA's name or an embedding's token), only take
    that adapter out of every loaded model (an admin withdrew it), which stay loaded."""

    request_id: int
    model: ModelRef
    adapter: str = ""
    type: ClassVar[str] = "unload_model"


@dataclass(frozen=True)
class ListModels:
    request_id: int
    type: ClassVar[str] = "list_models"


@dataclass(frozen=True)
class Shutdown:
    """Finish the running batch, then exit."""

    type: ClassVar[str] = "shutdown"


# --- events: engine -> bot ---------------------------------------------------------------


@dataclass(frozen=True)
class Ready:
    """The engine process is up and reading requests."""

    device: str
    dtype: str
    pid: int
    type: ClassVar[str] = "ready"


@dataclass(frozen=True)
class Accepted:
    """The job passed the engine's checks and is about to run.

    ``prompt_chunks`` is how a prompt longer than the text encoder's window (77 tokens for
    CLIP, 75 of them words) was split: the words of each window, encoded one by one and joined
    (``engine.tasks.prompt_embeddings``). Empty when the prompt fits one window.
    """

    job_id: int
    prompt_chunks: tuple[str, ...] = ()
    negative_prompt_chunks: tuple[str, ...] = ()
    type: ClassVar[str] = "accepted"


@dataclass(frozen=True)
class Progress:
    job_id: int
    step: int
    total_steps: int
    preview_png: bytes | None = None  # small, cheap latent preview; None when not asked for
    type: ClassVar[str] = "progress"


@dataclass(frozen=True)
class SafetyVerdict:
    """How the safety gate judged one image (``engine.images.second_opinion``).

    ``first``: the CompVis checker flagged it (or failed). ``first_score``: its margin, the
    nearest unsafe concept's similarity minus that concept's threshold (above 0 flags); None
    when it failed or is off.
    ``second``: the second classifier's verdict, None when it was not asked (the first cleared
    the image, or the policy is ``first``); a second classifier that failed says True.
    ``second_score``: its NSFW probability, 0 to 1; None when not asked or when it failed.
    """

    first: bool
    first_score: float | None = None
    second: bool | None = None
    second_score: float | None = None


@dataclass(frozen=True)
class SpooledFile:
    """Bytes the engine wrote to a file instead of sending them through the pipe.

    The bot and a local engine share a disk: the bot names a spool folder beside its images
    (``ENGINE_SPOOL_DIR``), the engine writes each result picture there, and the bot moves the
    file into its image store, so a picture's megabyte is never framed, piped, read, decoded
    and written again. ``name`` is the file's name in that folder (no folders of its own).
    """

    name: str
    size: int


@dataclass(frozen=True)
class GeneratedImage:
    seed: int
    # Already blurred when nsfw is True; carries the `parameters` text chunk. A SpooledFile
    # where the engine was given a spool folder (engine.spool), else the bytes themselves.
    png: bytes | SpooledFile
    nsfw: bool
    verdict: SafetyVerdict | None = None  # None: from an engine before the second opinion
    # Flagged images only: the picture before blurring, for the moderators' review (the bot
    # keeps it apart from the images it posts, and posts it only when a moderator releases it).
    original_png: bytes | None = None


@dataclass(frozen=True)
class MaskOverlay:
    """An inpainting job's input picture with the repainted area outlined.

    It shows the user's own upload, so it passes the safety gate like every output.
    """

    png: bytes  # already blurred when nsfw is True
    nsfw: bool  # flagged itself, or blurred with its job's flagged images (they share pixels)
    original_png: bytes | None = None  # blurred ones only: as it was, for the moderators


@dataclass(frozen=True)
class DepthMap:
    """A depth-to-image job's estimated depth, as grey 0-255 (near is light) at the picture's
    size: what conditioned its images.

    It is drawn from the user's own upload, so it passes the safety gate like every output.
    """

    png: bytes  # already blurred when nsfw is True
    nsfw: bool


@dataclass(frozen=True)
class Result:
    job_id: int
    images: tuple[GeneratedImage, ...]
    model_revision: str | None  # the commit actually loaded, for reproduction
    seconds: float
    mask_overlay: MaskOverlay | None = None  # inpainting only: what was repainted
    depth_map: DepthMap | None = None  # depth-to-image only: what conditioned the images
    type: ClassVar[str] = "result"


@dataclass(frozen=True)
class JobError:
    """A job ended without images. ``message`` is safe to show to the user as it is."""

    job_id: int
    kind: ErrorKind
    message: str
    type: ClassVar[str] = "job_error"


@dataclass(frozen=True)
class LoadedModel:
    model: ModelRef
    kind: JobKind
    bytes: int  # parameter and buffer memory it takes
    revision: str | None = None


@dataclass(frozen=True)
class ModelsReply:
    """Answer to LoadModel, UnloadModel and ListModels."""

    request_id: int
    ok: bool
    message: str  # user-safe: what happened, or why it failed
    loaded: tuple[LoadedModel, ...] = ()
    type: ClassVar[str] = "models_reply"


Request = RunBatch | Cancel | LoadModel | UnloadModel | ListModels | Shutdown
Event = Ready | Accepted | Progress | Result | JobError | ModelsReply

_MESSAGE_TYPES: dict[str, type] = {
    cls.type: cls
    for cls in (
        RunBatch,
        Cancel,
        LoadModel,
        UnloadModel,
        ListModels,
        Shutdown,
        Ready,
        Accepted,
        Progress,
        Result,
        JobError,
        ModelsReply,
    )
}


# --- encoding ----------------------------------------------------------------------------


def _to_plain(value: Any, raw: list[bytes]) -> Any:
    """``value`` as JSON values; ``bytes`` go to the end of ``raw``, and the JSON says where."""
    if isinstance(value, bytes):
        offset = sum(len(b) for b in raw)
        raw.append(value)
        return {"$bytes": [offset, len(value)]}
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_plain(getattr(value, f.name), raw) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [_to_plain(v, raw) for v in value]
    return value


@functools.cache
def _field_types(cls: type) -> tuple[tuple[str, Any], ...]:
    """Each field's name and resolved type: ``get_type_hints`` evaluates every annotation's
    string anew, which took most of a message's decoding time; a class's hints never change."""
    hints = typing.get_type_hints(cls)
    return tuple((f.name, hints[f.name]) for f in dataclasses.fields(cls))


def _from_plain(tp: Any, value: Any, raw: memoryview) -> Any:
    """Rebuild a value of annotated type ``tp`` from its JSON form (``bytes`` from ``raw``)."""
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(options) > 1 and bytes in options and isinstance(value, dict):
            # ``bytes | SomeDataclass``: raw bytes say so, anything else is the dataclass.
            if "$bytes" in value:
                return _from_plain(bytes, value, raw)
            options = [a for a in options if a is not bytes]
        return _from_plain(options[0], value, raw) if len(options) == 1 else value
    if origin is tuple:
        (item_type, *_rest) = typing.get_args(tp)
        return tuple(_from_plain(item_type, v, raw) for v in value)
    if tp is bytes:
        offset, length = value["$bytes"]
        if offset < 0 or length < 0 or offset + length > len(raw):
            raise ValueError("a bytes field points outside its frame")
        return bytes(raw[offset : offset + length])
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(value)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        kwargs = {
            name: _from_plain(hint, value[name], raw)
            for name, hint in _field_types(tp)
            if name in value
        }
        return tp(**kwargs)
    if tp is float:
        return float(value)
    return value


def _body(message: Request | Event) -> list[bytes]:
    """The parts of a message's body: the JSON's length, the JSON, the raw bytes."""
    raw: list[bytes] = []
    body = _to_plain(message, raw)
    body["type"] = message.type
    text = json.dumps(body, separators=(",", ":")).encode("utf-8")
    return [_LENGTH.pack(len(text)), text, *raw]


def encode(message: Request | Event) -> bytes:
    """One message as a body (without the frame's length prefix): JSON, then raw bytes."""
    return b"".join(_body(message))


def decode(body: bytes) -> Request | Event:
    """The message in a body made by ``encode``."""
    if len(body) < _LENGTH.size:
        raise ValueError("message body too short")
    (length,) = _LENGTH.unpack_from(body)
    end = _LENGTH.size + length
    if end > len(body):
        raise ValueError("message JSON runs past its body")
    view = memoryview(body)
    data = json.loads(view[_LENGTH.size : end].tobytes())
    cls = _MESSAGE_TYPES.get(data.pop("type", None))
    if cls is None:
        raise ValueError("unknown message type")
    message: Request | Event = _from_plain(cls, data, view[end:])  # an instance of ``cls``
    return message


def frame(message: Request | Event) -> bytes:
    """A message with its length prefix, ready to write to a pipe or socket."""
    parts = _body(message)
    # One copy of the pictures, into the frame.
    return b"".join((_LENGTH.pack(sum(len(p) for p in parts)), *parts))


def write_message(stream: BinaryIO, message: Request | Event) -> None:
    """Blocking write of one framed message (the engine side)."""
    stream.write(frame(message))
    stream.flush()


def read_message(stream: BinaryIO) -> Request | Event | None:
    """Blocking read of one framed message; None at end of stream (the engine side)."""
    header = stream.read(_LENGTH.size)
    if len(header) < _LENGTH.size:
        return None
    (length,) = _LENGTH.unpack(header)
    if length > MAX_FRAME_BYTES:
        raise ValueError(f"frame of {length} bytes is over the limit")
    body = stream.read(length)
    if len(body) < length:
        return None
    return decode(body)


async def read_message_async(reader: Any) -> Request | Event | None:
    """Read one framed message from an ``asyncio.StreamReader``; None at end of stream."""
    import asyncio

    try:
        header = await reader.readexactly(_LENGTH.size)
        (length,) = _LENGTH.unpack(header)
        if length > MAX_FRAME_BYTES:
            raise ValueError(f"frame of {length} bytes is over the limit")
        body = await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        return None
    return decode(body)


__all__ = [
    "BOUNDS",
    "DEFAULT_FAMILY",
    "FAMILIES",
    "FLUX_MAX_SEQUENCE_LENGTH",
    "GENERATION_PARAMS",
    "MAX_SEED",
    "MEGAPIXEL_SIZES",
    "MODEL_FAMILIES",
    "SCHEDULERS",
    "SHARED_PARAMS",
    "SIZES",
    "Accepted",
    "AdapterKind",
    "AdapterRef",
    "Bound",
    "BoundWithDefault",
    "Bounds",
    "Cancel",
    "DepthMap",
    "ErrorKind",
    "Event",
    "Family",
    "FamilyTraits",
    "GeneratedImage",
    "GenerationParams",
    "JobError",
    "JobKind",
    "JobSpec",
    "ListModels",
    "LoadModel",
    "LoadedModel",
    "MaskOverlay",
    "ModelRef",
    "ModelsReply",
    "Progress",
    "Ready",
    "Request",
    "Result",
    "RunBatch",
    "SafetyVerdict",
    "Shutdown",
    "Size",
    "SpooledFile",
    "UnloadModel",
    "Variant",
    "decode",
    "encode",
    "family_of_pipeline",
    "frame",
    "number_text",
    "read_message",
    "read_message_async",
    "size_label",
    "write_message",
]

"""The engine's settings: environment variables with the ``ENGINE_`` prefix, or ``.env``.

Nothing else in the engine reads ``os.environ``. Device and dtype are resolved here so that every
module agrees on them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    import torch

DEFAULT_SAFETY_CHECKER = "CompVis/stable-diffusion-safety-checker"
DEFAULT_TEXT_MASK_MODEL = "CIDAS/clipseg-rd64-refined"
# Weights load only from safetensors files, whatever the torch version: a pickled checkpoint
# (.bin, .ckpt, .pt) can run code when it is unpickled, a safetensors file holds only tensors.
# Every call that loads or downloads weights spreads this (a test reads the engine's source).
SAFETENSORS_ONLY: Mapping[str, Any] = MappingProxyType({"use_safetensors": True})
CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]


def parse_buckets(text: str) -> tuple[tuple[int, int, int], ...]:
    """``"512x512x1,512x512x4"`` as ``((512, 512, 1), (512, 512, 4))``: width, height, images."""
    buckets = []
    for item in text.split(","):
        if not item.strip():
            continue
        try:
            width, height, images = (int(part) for part in item.strip().lower().split("x"))
        except ValueError:
            raise ValueError(f"{item.strip()!r} is not WIDTHxHEIGHTxIMAGES") from None
        if min(width, height, images) < 1:
            raise ValueError(f"{item.strip()!r} has a size or image count below 1")
        buckets.append((width, height, images))
    return tuple(buckets)


class EngineSettings(BaseSettings):
    """How the engine runs; every field can be set as ``ENGINE_<NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix="ENGINE_",
        env_file=".env",
        env_ignore_empty=True,  # an empty line in .env means "the default"
        extra="ignore",
        frozen=True,
    )

    device: str = "auto"  # "auto": cuda when available, else cpu; or "cuda", "cuda:1", "cpu"
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = "auto"  # auto: fp16 on CUDA
    offline: bool = False  # never reach the Hugging Face Hub (from_pretrained local_files_only)
    variant: str | None = None  # weight variant to fetch, e.g. "fp16"; None: the default files
    cache_dir: str | None = None  # where Hub downloads go; None: the hub's default (HF_HOME)
    memory_budget_gb: float | None = Field(default=None, gt=0)  # None: 75% of GPU, no CPU cap
    # A model whose safetensors weights are larger is refused before it is downloaded
    # (engine.load_rules); FLUX.1 schnell is about 32 GB in bfloat16 with its T5 encoder.
    max_model_gb: float | None = Field(default=40, gt=0)  # None: no cap

    safety_checker: str = DEFAULT_SAFETY_CHECKER  # Hugging Face id or local folder
    safety_checker_revision: str | None = None
    safety_enabled: bool = True  # only an explicit false turns the checker off
    # A second, different classifier (open_nsfw on onnxruntime, engine.images.second_opinion)
    # judges what the first flags: "either" blurs when either flags (a course's default),
    # "both" only when both do (fewer false positives), "first" never asks the second.
    second_opinion: Literal["either", "both", "first"] = "either"
    second_opinion_threshold: float = Field(default=0.5, gt=0, lt=1)  # open_nsfw's NSFW score

    # CLIPSeg, which turns inpainting's mask_prompt words into a mask; loaded on first use.
    text_mask_model: str = DEFAULT_TEXT_MASK_MODEL  # Hugging Face id or local folder
    text_mask_revision: str | None = None
    text_mask_threshold: float = Field(default=0.4, gt=0, lt=1)  # repaint where p >= this

    # No bounds on what a job asks for (steps, guidance, sizes, prompt length, images per job):
    # the engine enforces engine.protocol.BOUNDS, the one declaration both processes read, and
    # an operator narrows them in one place, the bot's LIMITS_* settings. A second set of knobs
    # here could only drift: a job the bot accepted, wrote and counted would be refused here.
    max_batch_images: int = Field(default=16, ge=1)  # images in one pipeline call
    max_input_pixels: int = Field(default=4096 * 4096, ge=1)  # inpainting input/mask files
    # LoRAs kept loaded per model (engine.models.adapters); past it the least recently used goes.
    max_loaded_loras: int = Field(default=8, ge=1)

    progress_interval_s: float = Field(default=0.5, ge=0)  # at most one Progress per interval
    preview_interval_s: float = Field(default=1.5, ge=0)  # at most one preview per interval
    preview_max_side: int = Field(default=128, ge=8)

    # Finishing a batch off the GPU's thread (engine.run.finishing): PNG encoding, metadata.
    png_compress_level: int = Field(default=1, ge=0, le=9)  # zlib; 6 (Pillow's) takes 2.6x as long
    # Where result pictures are written instead of piped (engine.spool); the bot sets it to a
    # folder beside its images when it starts the engine. None: pictures travel in the frames.
    spool_dir: Path | None = None
    finish_threads: int = Field(default=2, ge=1)  # threads that encode results while the GPU runs

    # The fast path (engine.models.fast_path), applied when a model loads. None means "auto":
    # on for CUDA, off on the CPU, where tests need bit-exact batch invariance; an explicit
    # true or false forces either way. docs/performance.md says what each one does.
    attention: Literal["sdpa", "classic"] = "sdpa"  # classic: diffusers' unfused, to compare
    batch_invariance: bool | None = None  # per-image timestep linears; auto: CPU only
    channels_last: bool | None = None  # NHWC UNet and VAE weights; auto: CUDA only
    cudnn_benchmark: bool | None = None  # cuDNN times convolution algorithms; auto: CUDA only
    compile_unet: bool | None = None  # torch.compile the UNet per bucket; auto: CUDA only
    compile_vae: bool | None = None  # torch.compile the VAE decoder per bucket; auto: CUDA only
    compile_mode: CompileMode | None = None  # auto: CUDA graphs for small buckets (below)
    compile_cuda_graphs_max_images: int = Field(default=4, ge=0)  # auto mode; 0: never
    compile_backend: str = "inductor"  # "eager" only traces (tests)
    compile_buckets: str = "512x512x1,512x512x2,512x512x4,512x512x8,512x512x16"
    compile_in_background: bool = True  # serve eagerly while the buckets compile
    vae_slicing_min_images: int | None = Field(default=None, ge=1)  # auto: CPU 1, CUDA never
    vae_tiling_min_pixels: int | None = Field(default=None, ge=1)  # None: never tile

    @field_validator("compile_buckets")
    @classmethod
    def _check_buckets(cls, value: str) -> str:
        parse_buckets(value)
        return value

    def torch_device(self) -> torch.device:
        """The device pipelines run on."""
        import torch

        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def torch_dtype(self) -> torch.dtype:
        """fp16 (or the configured bf16) on CUDA; always fp32 on the CPU, where half is slow."""
        import torch

        if self.torch_device().type == "cpu":
            return torch.float32
        if self.dtype == "auto":
            return torch.float16
        return getattr(torch, self.dtype)

    def hub_options(self, revision: str | None) -> dict[str, Any]:
        """``from_pretrained`` options for a model named by a Hub id or a folder.

        The revision, the offline switch and the cache, and safetensors weights only.
        """
        return {
            "revision": revision,
            "local_files_only": self.offline,
            "cache_dir": self.cache_dir,
            **SAFETENSORS_ONLY,
        }

    def memory_budget_bytes(self) -> int | None:
        """How many bytes of weights may stay loaded; None when unbounded."""
        import torch

        if self.memory_budget_gb is not None:
            return int(self.memory_budget_gb * 1024**3)
        device = self.torch_device()
        if device.type == "cuda":
            # The rest is for activations, which grow with batch and image size.
            return int(torch.cuda.get_device_properties(device).total_memory * 0.75)
        return None

"""Opt-in speed-ups applied to a pipeline when it loads, mostly for CUDA.

Each one is a setting of its own (``ENGINE_...``, see ``FastPathSettings``) so that
``bench/bench_gpu.py`` can measure it alone. With the default settings nothing here changes a
pipeline: the CPU path, and its bit-exact batch invariance, stay as they are. In order:

1. Attention: diffusers' SDPA processor (``AttnProcessor2_0``, flash / memory-efficient kernels
   on CUDA) is made explicit wherever the classic processor sits; ``classic`` does the opposite,
   for comparison only.
2. ``torch.backends.cudnn.benchmark``: cuDNN times its algorithms once per shape.
3. channels_last weights for the UNet and the VAE (tensor cores prefer NHWC convolutions).
4. VAE slicing (one image at a time) and tiling (overlapping tiles) chosen per call, from the
   call's number of images and pixels: they bound the VAE's memory for big batches and sizes.
5. ``torch.compile`` of the UNet's and the VAE decoder's ``forward``, static shapes, through
   ``ShapeBuckets``: compiled shapes are exactly the buckets warmed at load, smaller batches
   are padded up to one, anything else runs uncompiled. Compiling drops the batch-invariance
   wrappers on the UNet's timestep layers: their data-dependent branch would split the graph,
   and on CUDA they never made batching bit-exact anyway (cuDNN picks kernels by shape).
6. Warm-up: one short pipeline call per (width, height, images) bucket, so the compiles (and
   cuDNN's timing) happen before the first job rather than during it.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from diffusers.models.attention_processor import Attention, AttnProcessor, AttnProcessor2_0
from PIL import Image

from engine.models.invariance import PerImageLinear
from engine.models.shape_buckets import ShapeBuckets
from engine.protocol import BOUNDS
from engine.settings import EngineSettings, parse_buckets

log = logging.getLogger(__name__)

Bucket = tuple[int, int, int]  # width, height, images in one call
WARM_UP_STEPS = 2  # enough to run every compiled graph; the step count is not in any shape


@dataclass(frozen=True)
class FastPathSettings:
    """What to apply; ``from_engine`` reads it from the engine's settings."""

    attention: Literal["sdpa", "classic"] = "sdpa"
    channels_last: bool = False
    cudnn_benchmark: bool = False
    compile_unet: bool = False
    compile_vae: bool = False
    compile_mode: str = "max-autotune-no-cudagraphs"
    compile_backend: str = "inductor"
    buckets: tuple[Bucket, ...] = ((512, 512, 1),)
    vae_slicing_min_images: int = 1
    vae_tiling_min_pixels: int | None = None

    @classmethod
    def from_engine(cls, settings: EngineSettings) -> FastPathSettings:
        """The fast path the engine's settings ask for; buckets no job can have go (sizes outside
        ``BOUNDS.side``, batches over ``max_batch_images``)."""
        buckets = tuple(
            (width, height, images)
            for width, height, images in parse_buckets(settings.compile_buckets)
            if width in BOUNDS.side
            and height in BOUNDS.side
            and images <= settings.max_batch_images
        )
        return cls(
            attention=settings.attention,
            channels_last=settings.channels_last,
            cudnn_benchmark=settings.cudnn_benchmark,
            compile_unet=settings.compile_unet,
            compile_vae=settings.compile_vae,
            compile_mode=settings.compile_mode,
            compile_backend=settings.compile_backend,
            buckets=buckets,
            vae_slicing_min_images=settings.vae_slicing_min_images,
            vae_tiling_min_pixels=settings.vae_tiling_min_pixels,
        )


@dataclass
class FastPathReport:
    """What was applied to one pipeline, for the log and the benchmarks."""

    invariance: list[PerImageLinear]  # the batch-invariance wrappers still in place
    attention: dict[str, int] = field(default_factory=dict)  # processor class -> modules
    channels_last: bool = False
    compiled: dict[str, ShapeBuckets] = field(default_factory=dict)  # "unet", "vae.decoder"
    warm_up_s: dict[Bucket, float] = field(default_factory=dict)
    skipped: dict[Bucket, str] = field(default_factory=dict)  # bucket -> why it was not warmed

    def summary(self) -> str:
        """One log line."""
        parts = [
            "attention " + ", ".join(f"{n}x{name}" for name, n in sorted(self.attention.items())),
            f"channels_last {'on' if self.channels_last else 'off'}",
            f"compiled {', '.join(self.compiled) or 'nothing'}",
        ]
        if self.warm_up_s:
            warmed = ", ".join(f"{w}x{h}x{n} {s:.1f}s" for (w, h, n), s in self.warm_up_s.items())
            parts.append(f"warmed {warmed}")
        if self.skipped:
            skipped = ", ".join(f"{w}x{h}x{n} ({why})" for (w, h, n), why in self.skipped.items())
            parts.append(f"not warmed {skipped}")
        return "; ".join(parts)


def apply_fast_path(
    pipeline: Any,
    settings: FastPathSettings,
    device: torch.device,
    invariance: list[PerImageLinear],
) -> FastPathReport:
    """Apply ``settings`` to a loaded pipeline (already on ``device``); see the module doc."""
    report = FastPathReport(invariance=invariance)
    unet, vae = pipeline.unet, pipeline.vae
    report.attention = set_attention(settings.attention, unet, vae)
    if settings.cudnn_benchmark and device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if settings.channels_last:
        unet.to(memory_format=torch.channels_last)
        vae.to(memory_format=torch.channels_last)
        report.channels_last = True
    if settings.vae_slicing_min_images != 1 or settings.vae_tiling_min_pixels is not None:
        _size_vae_decoding(vae, settings.vae_slicing_min_images, settings.vae_tiling_min_pixels)
    if settings.compile_unet:
        report.invariance = _drop_invariance_wrappers(unet, invariance)
        report.compiled["unet"] = _compile_forward(unet, settings, normalize=_float_timestep)
    if settings.compile_vae:
        report.compiled["vae.decoder"] = _compile_forward(vae.decoder, settings)
    if report.compiled:
        _allow_recompiles(len(settings.buckets))
        _warm_up(pipeline, settings.buckets, report)
    log.info("fast path: %s", report.summary())
    return report


def set_attention(kind: str, *modules: torch.nn.Module) -> dict[str, int]:
    """Swap the classic and SDPA processors as asked; returns processor counts after it.

    Other processors (IP-Adapter, LoRA variants) are left as they are: they are counted, so
    the log shows them.
    """
    wanted, other = (
        (AttnProcessor2_0, AttnProcessor) if kind == "sdpa" else (AttnProcessor, AttnProcessor2_0)
    )
    counts: dict[str, int] = {}
    for module in modules:
        for layer in module.modules():
            if not isinstance(layer, Attention):
                continue
            if type(layer.processor) is other:
                layer.set_processor(wanted())
            name = type(layer.processor).__name__
            counts[name] = counts.get(name, 0) + 1
    return counts


def _size_vae_decoding(vae: Any, slicing_min_images: int, tiling_min_pixels: int | None) -> None:
    """Choose slicing and tiling per decode call from its images and pixels."""
    original = vae.decode
    scale = 2 ** (len(vae.config.block_out_channels) - 1)  # latent to pixel side

    @functools.wraps(original)
    def decode(latents: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        pixels = latents.shape[-1] * latents.shape[-2] * scale * scale
        vae.use_slicing = latents.shape[0] >= slicing_min_images
        vae.use_tiling = tiling_min_pixels is not None and pixels >= tiling_min_pixels
        return original(latents, *args, **kwargs)

    vae.decode = decode


def _drop_invariance_wrappers(
    unet: torch.nn.Module, invariance: list[PerImageLinear]
) -> list[PerImageLinear]:
    """Put the plain ``Linear`` back wherever a ``PerImageLinear`` wraps one."""
    for module in unet.modules():
        for name, child in list(module.named_children()):
            if isinstance(child, PerImageLinear):
                setattr(module, name, child.inner)
    return []


def _float_timestep(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The UNet's timestep as a float32 tensor: one compiled graph for every scheduler.

    The UNet turns the timestep into ``float`` itself before using it, so this changes no
    value; without it an integer (DDIM, DPM++) and a float (Euler) timestep would each need a
    graph, and a Python number would need one per step.
    """
    sample = args[0]

    def as_float(timestep: Any) -> torch.Tensor:
        return torch.as_tensor(timestep, dtype=torch.float32, device=sample.device)

    if len(args) > 1:
        return (sample, as_float(args[1]), *args[2:]), dict(kwargs)
    if "timestep" in kwargs:
        return args, {**kwargs, "timestep": as_float(kwargs["timestep"])}
    return args, dict(kwargs)


def _compile_forward(
    module: torch.nn.Module, settings: FastPathSettings, **options: Any
) -> ShapeBuckets:
    """Route ``module``'s calls through a ``ShapeBuckets`` over its compiled ``forward``."""
    eager = module.forward
    compile_options: dict[str, Any] = {"backend": settings.compile_backend, "dynamic": False}
    if settings.compile_backend == "inductor":
        compile_options["mode"] = settings.compile_mode
    compiled = torch.compile(eager, **compile_options)
    buckets = ShapeBuckets(eager, compiled, **options)
    # An instance attribute: nn.Module.__call__ (and its hooks) still run, then call this.
    module.forward = buckets
    return buckets


def _allow_recompiles(buckets: int) -> None:
    # Each bucket is one more compiled graph of the same code; past the limit, torch.compile
    # would silently run the rest uncompiled.
    config = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):  # the name changed in torch 2.6
        if hasattr(config, name):
            setattr(config, name, max(getattr(config, name), 2 * buckets + 8))


def _warm_up(pipeline: Any, buckets: tuple[Bucket, ...], report: FastPathReport) -> None:
    """One short call per bucket, compiling every graph a call of that bucket needs."""
    for bucket in buckets:
        started = time.perf_counter()
        try:
            with contextlib.ExitStack() as stack:
                for compiled in report.compiled.values():
                    stack.enter_context(compiled.warming())
                with torch.inference_mode():  # the worker's mode; compiled graphs guard on it
                    pipeline(**_warm_up_call(pipeline, bucket))
        except torch.OutOfMemoryError:
            report.skipped[bucket] = "out of memory"
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            continue
        except Exception as error:
            # A compiler that cannot run here (no Triton, an unsupported op) must not stop the
            # model from loading: undo the compiles and serve uncompiled.
            log.exception("warm-up of %s failed; running uncompiled", bucket)
            _uncompile(pipeline, report)
            report.skipped[bucket] = f"compile failed: {type(error).__name__}"
            return
        report.warm_up_s[bucket] = time.perf_counter() - started


def _uncompile(pipeline: Any, report: FastPathReport) -> None:
    for module in (pipeline.unet, pipeline.vae.decoder):
        if isinstance(module.__dict__.get("forward"), ShapeBuckets):
            del module.forward  # the class's own forward again
    report.compiled.clear()


def _warm_up_call(pipeline: Any, bucket: Bucket) -> dict[str, Any]:
    width, height, images = bucket
    call: dict[str, Any] = {
        "prompt": ["warm-up"] * images,
        "width": width,
        "height": height,
        "num_inference_steps": WARM_UP_STEPS,
        "guidance_scale": 7.5,  # guided, as nearly every job is: the UNet sees 2 rows per image
        "generator": [torch.Generator().manual_seed(i) for i in range(images)],
        "output_type": "np",
    }
    if "mask_image" in inspect.signature(pipeline.__call__).parameters:
        call["image"] = Image.new("RGB", (width, height), "gray")
        call["mask_image"] = Image.new("L", (width, height), 255)
    return call

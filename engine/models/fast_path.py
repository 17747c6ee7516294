"""Speed-ups applied to a pipeline when it loads: on by default on CUDA, off on the CPU.

Each one is a setting of its own (``ENGINE_...``, see ``FastPathSettings``), so that
``bench/bench_gpu.py`` can measure it alone; a setting left empty means "auto": on for CUDA,
off on the CPU, whose path (and its bit-exact batch invariance, which the tests compare pixel
by pixel) stays as it was. In order:

1. Attention: diffusers' SDPA processor (``AttnProcessor2_0``, flash / memory-efficient kernels
   on CUDA) is made explicit wherever the classic processor sits; ``classic`` does the opposite,
   for comparison only.
2. ``torch.backends.cudnn.benchmark``: cuDNN times its algorithms once per shape.
3. channels_last weights for the UNet and the VAE (tensor cores prefer NHWC convolutions).
4. VAE slicing (one image at a time) and tiling (overlapping tiles), chosen per call from the
   call's number of images and pixels. Slicing is part of the CPU's batch invariance; on CUDA
   the whole batch decodes at once.
5. ``torch.compile`` of the UNet's and the VAE decoder's ``forward``, static shapes, through
   ``ShapeBuckets``: compiled shapes are exactly the buckets warmed, smaller batches are padded
   up to one, anything else runs uncompiled. Small buckets compile with CUDA graphs (one
   launch replays a whole step: small batches are bound by kernel launches), bigger ones
   without (the graphs' private memory grows with the batch, and a big batch keeps the GPU
   busy anyway). Compiling drops the batch-invariance wrappers on the UNet's timestep layers:
   their data-dependent branch would split the graph.
6. Warm-up: one short pipeline call per (width, height, images) bucket, so the compiles (and
   cuDNN's timing) happen before a job needs them. By default in a background thread, on a
   copy of the pipeline that shares its modules but none of its per-call state: jobs are
   served uncompiled meanwhile, and each bucket is served compiled from the moment its warm-up
   returns (``ShapeBuckets`` is safe for that). Compiling is mostly CPU work (tracing, which
   competes for the GIL with the serving thread, and code generation in worker processes);
   autotuning and the short warm-up calls take the GPU briefly. So the first students of a
   fresh engine are served a little slower while it lasts instead of waiting minutes for it.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import logging
import threading
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


# torch.compile modes by bucket, when ENGINE_COMPILE_MODE is left to choose.
GRAPH_MODE = "max-autotune"  # with CUDA graphs
NO_GRAPH_MODE = "max-autotune-no-cudagraphs"


@dataclass(frozen=True)
class FastPathSettings:
    """What to apply; ``from_engine`` resolves the engine's settings for a device.

    The defaults here are the CPU's: nothing that changes a picture or its batch invariance.
    """

    attention: Literal["sdpa", "classic"] = "sdpa"
    batch_invariance: bool = True
    channels_last: bool = False
    cudnn_benchmark: bool = False
    compile_unet: bool = False
    compile_vae: bool = False
    compile_mode: str | None = None  # None: by bucket (``mode_for``)
    cuda_graphs_max_images: int = 0  # buckets up to this many images use CUDA graphs
    compile_backend: str = "inductor"
    compile_in_background: bool = False
    buckets: tuple[Bucket, ...] = ((512, 512, 1),)
    vae_slicing_min_images: int | None = 1  # None: never slice
    vae_tiling_min_pixels: int | None = None  # None: never tile

    @classmethod
    def from_engine(
        cls, settings: EngineSettings, device: torch.device | None = None
    ) -> FastPathSettings:
        """The fast path the engine's settings ask for on ``device`` (theirs by default).

        Settings left empty resolve by device: the batch-invariance measures (per-image
        timestep linears, VAE slicing) on the CPU only, the speed-ups on CUDA only. Buckets no
        job can have go (sizes outside ``BOUNDS.side``, batches over ``max_batch_images``).
        """
        device = device if device is not None else settings.torch_device()
        cuda = device.type == "cuda"

        def on_cuda(value: bool | None) -> bool:
            return cuda if value is None else value

        invariance = settings.batch_invariance
        if invariance is None:
            invariance = device.type == "cpu"
        slicing = settings.vae_slicing_min_images
        if slicing is None and invariance:
            slicing = 1  # one image at a time: the VAE's part of batch invariance
        buckets = tuple(
            (width, height, images)
            for width, height, images in parse_buckets(settings.compile_buckets)
            if width in BOUNDS.side
            and height in BOUNDS.side
            and images <= settings.max_batch_images
        )
        return cls(
            attention=settings.attention,
            batch_invariance=invariance,
            channels_last=on_cuda(settings.channels_last),
            cudnn_benchmark=on_cuda(settings.cudnn_benchmark),
            compile_unet=on_cuda(settings.compile_unet),
            compile_vae=on_cuda(settings.compile_vae),
            compile_mode=settings.compile_mode,
            # CUDA graphs exist only on CUDA; inductor alone makes them.
            cuda_graphs_max_images=(
                settings.compile_cuda_graphs_max_images
                if cuda and settings.compile_backend == "inductor"
                else 0
            ),
            compile_backend=settings.compile_backend,
            compile_in_background=settings.compile_in_background,
            buckets=buckets,
            vae_slicing_min_images=slicing,
            vae_tiling_min_pixels=settings.vae_tiling_min_pixels,
        )

    def mode_for(self, bucket: Bucket) -> str:
        """The ``torch.compile`` mode a bucket compiles with: the configured one, else CUDA
        graphs for small buckets and none for the rest."""
        if self.compile_mode is not None:
            return self.compile_mode
        return GRAPH_MODE if bucket[2] <= self.cuda_graphs_max_images else NO_GRAPH_MODE


@dataclass
class FastPathReport:
    """What was applied to one pipeline, for the log and the benchmarks."""

    invariance: list[PerImageLinear]  # the batch-invariance wrappers still in place
    attention: dict[str, int] = field(default_factory=dict)  # processor class -> modules
    channels_last: bool = False
    compiled: dict[str, ShapeBuckets] = field(default_factory=dict)  # "unet", "vae.decoder"
    warm_up_s: dict[Bucket, float] = field(default_factory=dict)
    skipped: dict[Bucket, str] = field(default_factory=dict)  # bucket -> why it was not warmed
    background: BackgroundWarmUp | None = None  # the warm-up still running, if in background

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
    """Apply ``settings`` to a loaded pipeline (already on ``device``); see the module doc.

    With ``compile_in_background`` the warm-up is still running when this returns
    (``report.background``); otherwise every bucket is warmed first.
    """
    report = FastPathReport(invariance=invariance)
    unet, vae = pipeline.unet, pipeline.vae
    report.attention = set_attention(settings.attention, unet, vae)
    if settings.cudnn_benchmark and device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if settings.channels_last:
        unet.to(memory_format=torch.channels_last)
        vae.to(memory_format=torch.channels_last)
        report.channels_last = True
    _size_vae_decoding(vae, settings.vae_slicing_min_images, settings.vae_tiling_min_pixels)
    if settings.compile_unet:
        report.invariance = _drop_invariance_wrappers(unet, invariance)
        report.compiled["unet"] = _compile_forward(unet, settings, normalize=_float_timestep)
    if settings.compile_vae:
        report.compiled["vae.decoder"] = _compile_forward(vae.decoder, settings)
    if not report.compiled:
        log.info("fast path: %s", report.summary())
    elif settings.compile_in_background:
        _allow_recompiles(len(settings.buckets))
        report.background = BackgroundWarmUp(pipeline, settings, report, device)
        log.info("fast path: %s; compiling in the background", report.summary())
    else:
        _allow_recompiles(len(settings.buckets))
        _warm_up(pipeline, settings, report)
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


def _size_vae_decoding(
    vae: Any, slicing_min_images: int | None, tiling_min_pixels: int | None
) -> None:
    """Decode one image at a time from ``slicing_min_images`` on and in tiles from
    ``tiling_min_pixels`` on (None: never); per call when the choice depends on the call."""
    if tiling_min_pixels is None and slicing_min_images in (1, None):
        # The same choice for every call: set once, no wrapper.
        vae.use_slicing = slicing_min_images == 1
        vae.use_tiling = False
        return
    original = vae.decode
    scale = 2 ** (len(vae.config.block_out_channels) - 1)  # latent to pixel side
    # The choice lives on the shared VAE; a background warm-up decodes too, so the choice and
    # the decode it is for go together.
    lock = threading.Lock()

    @functools.wraps(original)
    def decode(latents: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        pixels = latents.shape[-1] * latents.shape[-2] * scale * scale
        with lock:
            vae.use_slicing = (
                slicing_min_images is not None and latents.shape[0] >= slicing_min_images
            )
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
    """Route ``module``'s calls through a ``ShapeBuckets`` over its compiled ``forward``, one
    compiled function per mode the buckets need."""
    eager = module.forward
    modes = sorted({settings.mode_for(bucket) for bucket in settings.buckets}) or [NO_GRAPH_MODE]
    variants = {}
    for mode in modes:
        compile_options: dict[str, Any] = {"backend": settings.compile_backend, "dynamic": False}
        if settings.compile_backend == "inductor":
            compile_options["mode"] = mode
        variants[mode] = torch.compile(eager, **compile_options)
    buckets = ShapeBuckets(eager, variants[modes[0]], variants=variants, **options)
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


def _warm_up(
    pipeline: Any,
    settings: FastPathSettings,
    report: FastPathReport,
    stop: threading.Event | None = None,
) -> None:
    """One short call per bucket, compiling every graph a call of that bucket needs; stops
    early when ``stop`` is set (the model was unloaded)."""
    for bucket in settings.buckets:
        if stop is not None and stop.is_set():
            report.skipped[bucket] = "stopped"
            continue
        started = time.perf_counter()
        try:
            with contextlib.ExitStack() as stack:
                for compiled in report.compiled.values():
                    stack.enter_context(compiled.warming(settings.mode_for(bucket)))
                with torch.inference_mode():  # the worker's mode; compiled graphs guard on it
                    pipeline(**_warm_up_call(pipeline, bucket))
        except torch.OutOfMemoryError:
            report.skipped[bucket] = "out of memory"
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            continue
        except Exception as error:
            # A compiler that cannot run here (no Triton, an unsupported op) must not stop the
            # model from serving: undo the compiles and serve uncompiled.
            log.exception("warm-up of %s failed; running uncompiled", bucket)
            _uncompile(pipeline, report)
            report.skipped[bucket] = f"compile failed: {type(error).__name__}"
            return
        report.warm_up_s[bucket] = time.perf_counter() - started


class BackgroundWarmUp:
    """Warms the buckets in a thread of its own while the engine serves uncompiled.

    The thread calls a shallow copy of the pipeline: the same modules (so what it compiles is
    what serving uses), its own scheduler and per-call state (the serving thread swaps the
    original's scheduler for every call). On CUDA it runs on a stream of its own, so its work
    never waits on the serving thread's kernels.
    """

    def __init__(
        self,
        pipeline: Any,
        settings: FastPathSettings,
        report: FastPathReport,
        device: torch.device,
    ) -> None:
        self._stop = threading.Event()
        self._done = threading.Event()
        self.started = time.perf_counter()
        self.seconds: float | None = None  # the whole warm-up, once done
        self._pipeline: Any = _warm_up_copy(pipeline)
        self._settings, self._report, self._device = settings, report, device
        # Daemon: a compile must never keep a stopping engine alive.
        self._thread = threading.Thread(target=self._run, name="compile-warm-up", daemon=True)
        self._thread.start()

    @property
    def done(self) -> bool:
        """Whether every bucket was warmed (or skipped)."""
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the warm-up is over; False when ``timeout`` passed first."""
        return self._done.wait(timeout)

    def stop(self) -> None:
        """Skip the buckets not started yet (the model is being unloaded)."""
        self._stop.set()

    def _run(self) -> None:
        pipeline, report, device = self._pipeline, self._report, self._device
        try:
            stream: Any = contextlib.nullcontext()
            if device.type == "cuda":
                stream = torch.cuda.stream(torch.cuda.Stream(device))
            with stream:
                _warm_up(pipeline, self._settings, report, self._stop)
                if device.type == "cuda":
                    torch.cuda.current_stream(device).synchronize()
        except Exception:
            log.exception("the background warm-up failed; serving uncompiled")
            _uncompile(pipeline, report)
        finally:
            self._pipeline = None  # the modules' memory goes with the model's last reference
            self.seconds = time.perf_counter() - self.started
            log.info("fast path warmed in %.1fs: %s", self.seconds, report.summary())
            self._done.set()


def _warm_up_copy(pipeline: Any) -> Any:
    """The pipeline's modules under a pipeline object of their own, with a fresh scheduler."""
    clone = copy.copy(pipeline)
    clone.scheduler = type(pipeline.scheduler).from_config(pipeline.scheduler.config)
    return clone


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
    parameters = inspect.signature(pipeline.__call__).parameters
    if "depth_map" in parameters:
        # Depth-to-image takes its size from the picture, and runs every step at strength 1.
        # A gradient, since the estimated depth of a flat picture normalises to NaN.
        del call["width"], call["height"]
        gradient = Image.linear_gradient("L").resize((width, height)).convert("RGB")
        call.update(image=[gradient] * images, strength=1.0)
    elif "mask_image" in parameters:
        call["image"] = Image.new("RGB", (width, height), "gray")
        call["mask_image"] = Image.new("L", (width, height), 255)
    return call

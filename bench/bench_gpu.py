"""Images per second of a Stable Diffusion 1.5-class model: the fast path against plain diffusers.

Every variant makes the engine's own pipeline call (``engine.text_to_image``: per-image prompts
and generators, PIL output, Euler, guidance 7.5) on the same random-weight SD 1.5-class model
(``bench/sd15_random.py``; speed does not depend on the weights' values). ``plain`` is a bare
``StableDiffusionPipeline.from_pretrained(...).to(device)``; every other variant is loaded
through the engine's ``ModelRegistry`` with one group of settings changed, so each speed-up is
measured alone and every ratio is taken within the same run. ``engine`` is the engine with its
default settings (the batch-invariance measures on, no fast path).

Figures: images per second at each batch size and under a mixed queue (jobs of 1-4 images,
grouped by the engine's own batching rule), the ratio to ``plain``, and the UNet's share of the
GPU's dense bf16 peak (UNet FLOPs counted with FlopCounterMode: about 1.6 TFLOP per guided step
at 512x512; the VAE and text encoder are left out, so the share is a lower bound).

    python bench/bench_gpu.py                      # a CUDA host: 512x512, 30 steps, batch 1-16
    python bench/bench_gpu.py --variants plain,engine,fast --compile-mode default
    python bench/bench_gpu.py --toy                # toy sizes on the CPU, in seconds (CI)
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import random
import re
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from bench import sd15_random
from engine.models.invariance import PerImageLinear, batch_invariant_kernels
from engine.models.registry import ModelRegistry
from engine.models.schedulers import make_scheduler
from engine.protocol import JobKind, JobSpec, ModelRef
from engine.run.batching import group_compatible
from engine.settings import SAFETENSORS_ONLY, EngineSettings
from engine.tasks.text_to_image import text_to_image

# Every fast-path setting at its default, so variables in the environment cannot leak in.
NO_FAST_PATH: dict[str, Any] = {
    "attention": "sdpa",
    "channels_last": False,
    "cudnn_benchmark": False,
    "compile_unet": False,
    "compile_vae": False,
    "vae_slicing_min_images": 1,
    "vae_tiling_min_pixels": None,
    "compile_in_background": False,  # measure compiled variants only once they are warm
}
COMPILE = {"compile_unet": True, "compile_vae": True}
VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {},  # bare diffusers, not the engine
    "engine": {},
    "bf16": {"dtype": "bfloat16"},
    "classic-attention": {"attention": "classic"},
    "channels-last": {"channels_last": True},
    "cudnn-benchmark": {"cudnn_benchmark": True},
    "compile": COMPILE,
    "fast": {"channels_last": True, "cudnn_benchmark": True, **COMPILE},
}
TOY_VARIANTS = "plain,engine,channels-last,compile"
# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity) from NVIDIA's data sheets; first match.
PEAK_BF16_TFLOPS = (
    (r"H200", 989.0),
    (r"H100.*NVL", 835.0),
    (r"H100.*PCIe", 756.0),
    (r"H100", 989.0),  # SXM
    (r"A100", 312.0),
    (r"L40S", 362.0),
    (r"\bL4\b", 121.0),
    (r"RTX 4090", 165.0),
)

Runner = Callable[[list[list[JobSpec]]], None]


def peak_tflops(device_name: str) -> float | None:
    """The device's dense bf16 peak, when it is in the table."""
    for pattern, peak in PEAK_BF16_TFLOPS:
        if re.search(pattern, device_name):
            return peak
    return None


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def release(device: torch.device) -> None:
    """Free what the last variant held, and the global switches it may have turned on."""
    gc.collect()
    torch._dynamo.reset()
    torch.backends.cudnn.benchmark = False
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _no_progress(pipeline: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict:
    return {}


def make_runner(
    pipeline: Any, invariance: list[PerImageLinear] | None, device: torch.device
) -> Runner:
    """Runs groups of jobs as the worker does; ``invariance`` None: a bare diffusers call."""

    def run(groups: list[list[JobSpec]]) -> None:
        for group in groups:
            kernels = (
                contextlib.nullcontext()
                if invariance is None
                else batch_invariant_kernels(device, invariance, rows_per_image=2)
            )
            with torch.inference_mode(), kernels:
                text_to_image(pipeline, group, _no_progress)
        synchronize(device)

    return run


def load(
    variant: str, folder: Path, model: ModelRef, args: argparse.Namespace
) -> tuple[Runner, Callable[[], None]]:
    """The variant's runner and a function that unloads it."""
    device = torch.device(args.device)
    if variant == "plain":
        from diffusers import StableDiffusionPipeline

        # The engine's dtype rule, so that plain and the engine variants compare like for like.
        wanted = {"device": args.device, "dtype": args.dtype}
        dtype = EngineSettings(_env_file=None, **wanted).torch_dtype()  # type: ignore[call-arg]
        pipe = StableDiffusionPipeline.from_pretrained(folder, dtype=dtype, **SAFETENSORS_ONLY).to(
            device
        )
        pipe.set_progress_bar_config(disable=True)
        pipe.scheduler = make_scheduler("euler", pipe.scheduler.config)
        return make_runner(pipe, None, device), lambda: None
    overrides = {"dtype": args.dtype, **NO_FAST_PATH, **VARIANTS[variant]}
    size = args.size
    settings = EngineSettings(
        _env_file=None,  # type: ignore[call-arg]
        device=args.device,
        offline=True,
        max_batch_images=max(args.batches),
        compile_buckets=",".join(f"{size}x{size}x{b}" for b in args.batches),
        compile_mode=args.compile_mode,
        compile_backend=args.compile_backend,
        **overrides,
    )
    registry = ModelRegistry(settings)
    entry = registry.get(model)  # loads, applies the fast path and warms its buckets
    pipe = entry.base
    pipe.scheduler = make_scheduler("euler", entry.scheduler_config)
    return make_runner(pipe, entry.invariance, device), lambda: registry.unload(model)


def measure(run: Runner, model: ModelRef, args: argparse.Namespace) -> dict[str, float]:
    """Images per second for each batch size, and for the mixed queue."""

    def spec(job_id: int, images: int) -> JobSpec:
        return JobSpec(
            job_id=job_id,
            kind=JobKind.TEXT_TO_IMAGE,
            model=model,
            prompt=f"a lighthouse on a cliff at dusk, oil painting, study {job_id}",
            seeds=tuple(range(job_id * 10, job_id * 10 + images)),
            steps=args.steps,
            width=args.size,
            height=args.size,
        )

    figures: dict[str, float] = {}
    for batch in args.batches:
        groups = [[spec(0, batch)]]
        run(groups)  # warm: cuDNN, caches, allocator
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            run(groups)
            times.append(time.perf_counter() - started)
        figures[f"b={batch}"] = batch / statistics.median(times)
    choice = random.Random(0).choice
    queue = [spec(i, choice((1, 1, 1, 2, 2, 4))) for i in range(args.mixed_jobs)]
    groups = group_compatible(queue, max(args.batches))
    started = time.perf_counter()
    run(groups)
    figures["mixed"] = sum(len(job.seeds) for job in queue) / (time.perf_counter() - started)
    return figures


def report(
    results: dict[str, dict[str, float]],
    load_s: dict[str, float],
    unet_tflop: float,
    peak: float | None,
    steps: int,
) -> None:
    columns = list(next(iter(results.values())))
    baseline = results.get("plain")
    print("\nimages/s (ratio to plain in the same run)")
    print(f"{'variant':<18} {'load s':>7} " + " ".join(f"{c:>15}" for c in columns))
    for variant, figures in results.items():
        cells = []
        for column in columns:
            ratio = f"({figures[column] / baseline[column]:.2f}x)" if baseline else ""
            cells.append(f"{figures[column]:7.2f} {ratio:>7}")
        print(f"{variant:<18} {load_s[variant]:7.1f} " + " ".join(f"{c:>15}" for c in cells))
    print(f"\nUNet TFLOP/s ({unet_tflop:.3g} TFLOP per guided step x {steps} steps x images/s)")
    peak_note = f"% of {peak:.0f} TFLOP/s bf16 peak" if peak else "no peak known: --peak-tflops"
    print(f"{'variant':<18} " + " ".join(f"{c:>15}" for c in columns) + f"   [{peak_note}]")
    for variant, figures in results.items():
        cells = []
        for column in columns:
            achieved = figures[column] * steps * unet_tflop
            share = f"{100 * achieved / peak:5.1f}%" if peak else ""
            cells.append(f"{achieved:8.3g} {share:>6}")
        print(f"{variant:<18} " + " ".join(f"{c:>15}" for c in cells))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--toy", action="store_true", help="toy model and sizes on the CPU")
    parser.add_argument("--variants", default=None, help=f"comma-separated: {','.join(VARIANTS)}")
    parser.add_argument("--size", type=int, default=None, help="square side; 512 (toy: 64)")
    parser.add_argument("--steps", type=int, default=None, help="30 (toy: 2)")
    parser.add_argument("--batches", default=None, help="images per call; 1,4,8,16 (toy: 1,2)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls; 3 (toy: 1)")
    parser.add_argument("--mixed-jobs", type=int, default=None, help="24 (toy: 4)")
    parser.add_argument("--dtype", default="auto", help="auto (fp16 on CUDA), float16, bfloat16")
    parser.add_argument("--compile-mode", default="max-autotune-no-cudagraphs")
    parser.add_argument("--compile-backend", default=None, help="inductor (toy: eager)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the GPU's bf16 peak")
    parser.add_argument("--device", default=None, help="cuda when available (toy: cpu)")
    parser.add_argument("--models-dir", type=Path, default=None, help="reused between runs")
    args = parser.parse_args()
    toy = args.toy
    args.variants = (args.variants or (TOY_VARIANTS if toy else ",".join(VARIANTS))).split(",")
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants: {', '.join(sorted(unknown))}")
    args.size = args.size or (64 if toy else 512)
    args.steps = args.steps or (2 if toy else 30)
    args.batches = [int(b) for b in (args.batches or ("1,2" if toy else "1,4,8,16")).split(",")]
    args.repeats = args.repeats or (1 if toy else 3)
    args.mixed_jobs = args.mixed_jobs or (4 if toy else 24)
    args.compile_backend = args.compile_backend or ("eager" if toy else "inductor")
    args.device = args.device or ("cuda" if torch.cuda.is_available() and not toy else "cpu")
    if not toy and args.device == "cpu":
        parser.error("no CUDA device: a full-size model on the CPU takes hours; use --toy")
    if toy:
        # Toy figures mean nothing; one thread keeps the run short on a shared CI machine,
        # where OpenMP's spinning threads slow down by orders of magnitude when cores are busy.
        torch.set_num_threads(1)
    return args


def main() -> None:
    args = parse_args()
    warnings.filterwarnings("ignore")  # random weights overflow in half precision: harmless
    with tempfile.TemporaryDirectory() as scratch:
        root = args.models_dir or Path(scratch)
        from tests.fixtures.tiny_models import build_tiny_models

        tokenizer = build_tiny_models(root / "tiny").text_to_image / "tokenizer"
        name = "sd15-toy" if args.toy else "sd15-random"
        started = time.perf_counter()
        folder = sd15_random.build(root / name, tokenizer, toy=args.toy, device=args.device)
        build_s = time.perf_counter() - started
        unet_tflop = sd15_random.unet_flops(folder, args.size, args.size) / 1e12
        vae_tflop = sd15_random.vae_decode_flops(folder, args.size, args.size) / 1e12
        device = torch.device(args.device)
        device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
        peak = args.peak_tflops or peak_tflops(device_name)
        print(
            f"{device_name}, torch {torch.__version__}, {name} (built in {build_s:.0f} s), "
            f"{args.size}x{args.size}, {args.steps} steps, Euler, guidance 7.5, "
            f"dtype {args.dtype}, compile {args.compile_backend}/{args.compile_mode}"
        )
        print(
            f"UNet {unet_tflop:.3g} TFLOP per guided step per image; "
            f"VAE decode {vae_tflop:.3g} TFLOP per image"
        )
        model = ModelRef(name=name, source=str(folder))
        results: dict[str, dict[str, float]] = {}
        load_s: dict[str, float] = {}
        for variant in args.variants:
            started = time.perf_counter()
            run, unload = load(variant, folder, model, args)
            load_s[variant] = time.perf_counter() - started
            results[variant] = measure(run, model, args)
            figures = "  ".join(f"{k} {v:.2f}" for k, v in results[variant].items())
            print(f"{variant:<18} load+warm {load_s[variant]:6.1f} s   images/s: {figures}")
            del run
            unload()
            release(device)
        report(results, load_s, unet_tflop, peak, args.steps)


if __name__ == "__main__":
    main()

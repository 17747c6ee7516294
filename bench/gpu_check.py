"""The phases of ``bench/gpu_check.sh``, one subcommand each; the script bounds their time.

    python bench/gpu_check.py machine        # GPU, driver, torch; bf16 matmul TFLOP/s
    python bench/gpu_check.py build          # full-size random SD 1.5 and safety checker
    python bench/gpu_check.py plain          # plain diffusers img/s at batch 1, 4, 16
    python bench/gpu_check.py engine --label off|on [--extras]
    python bench/gpu_check.py summary LOG    # the table at the end, from the log

Every figure is printed as soon as it is measured, with the seconds since the script began,
so a phase cut short by its timeout loses only what it had not printed yet. The environment
comes from the script: ``WORK`` (models and caches), ``T0`` and ``TOTAL_BUDGET`` (the deadline),
``TOY=1`` (toy shapes on the CPU: it checks the script, its figures mean nothing).

The engine phase runs the engine as the bot does: ``python -m engine serve`` through the bot's
``EngineClient``, the safety checker on, PNGs and previews, batches chosen by the bot's own
``FairQueue`` from a queue of jobs from 16 users. It imports only the bot's stdlib-and-pydantic
parts, so the GPU machine needs neither discord.py nor SQLAlchemy.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.jobs.fair_queue import FairQueue  # stdlib only
from engine.protocol import JobError, JobKind, JobSpec, ModelRef, Result  # no torch

WORK = Path(os.environ.get("WORK", "/tmp/gpucheck"))
TOY = os.environ.get("TOY") == "1"
T0 = float(os.environ.get("T0", time.time()))
DEADLINE = T0 + float(os.environ.get("TOTAL_BUDGET", "470"))
SIZE, STEPS = (64, 2) if TOY else (512, 30)
DEVICE = "cpu" if TOY else "cuda"
SD = WORK / ("sd15-toy" if TOY else "sd15-random")
SAFETY = WORK / ("tiny/tiny-safety-never" if TOY else "safety-vitl14-never")
MAX_BATCH = 4 if TOY else 16
QUEUE_JOBS, QUEUE_USERS = (8, 4) if TOY else (64, 16)
# The toy run's buckets stop short of its largest batch (4), so cutting batches to them shows.
BUCKETS = "64x64x1,64x64x2" if TOY else "512x512x1,512x512x4,512x512x16"
# The bot's SCHEDULER_PREFERRED_BATCH_SIZES with the fast path on: the compiled buckets' image
# counts, so batches land on shapes that were compiled (and are not recompiled mid-queue).
PREFERRED_SIZES = frozenset(int(bucket.rsplit("x", 1)[1]) for bucket in BUCKETS.split(","))
PROMPT = "a lighthouse on a cliff at dusk, oil painting"


def left() -> float:
    """Seconds left of the script's whole budget."""
    return DEADLINE - time.time()


def say(text: str) -> None:
    """One figure, stamped with the seconds since the script began."""
    print(f"[{time.time() - T0:4.0f}s]   {text}", flush=True)


class GpuPoller:
    """``nvidia-smi`` every 250 ms: GPU utilisation and memory used, read over a window."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, int, int]] = []
        self._process: subprocess.Popen[str] | None = None
        if TOY:
            return
        query = "--query-gpu=memory.used,utilization.gpu"
        try:
            self._process = subprocess.Popen(
                ["nvidia-smi", query, "--format=csv,noheader,nounits", "-lms", "250"],
                stdout=subprocess.PIPE,
                text=True,
            )
        except OSError:
            return
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            try:
                memory, utilisation = (int(x) for x in line.strip().split(","))
            except ValueError:
                continue
            self.samples.append((time.time(), memory, utilisation))

    def window(self, start: float, end: float) -> str:
        """Mean utilisation and peak memory between ``start`` and ``end``."""
        rows = [(m, u) for t, m, u in self.samples if start <= t <= end]
        if not rows:
            return "GPU util n/a (no nvidia-smi samples)"
        mean = sum(u for _, u in rows) / len(rows)
        return f"GPU util mean {mean:.0f}%, memory used peak {max(m for m, _ in rows)} MiB"

    def stop(self) -> None:
        if self._process is not None:
            self._process.kill()


# -- machine ------------------------------------------------------------------------------------


def machine() -> None:
    """The device, and its arithmetic ceiling: a bf16 8192^3 matmul."""
    import torch

    say(f"python {sys.version.split()[0]}, torch {torch.__version__}, cuda {torch.version.cuda}")
    if TOY or not torch.cuda.is_available():
        say("no CUDA device: toy run on the CPU" if TOY else "NO CUDA DEVICE")
        return
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(10):
        a @ b
    torch.cuda.synchronize()
    tflops = 10 * 2 * 8192**3 / (time.perf_counter() - started) / 1e12
    say(f"{torch.cuda.get_device_name()}: bf16 matmul {tflops:.0f} TFLOP/s")


# -- build --------------------------------------------------------------------------------------


def build() -> None:
    """Random full-size SD 1.5 (bench/sd15_random.py) and a full-size safety checker."""
    from bench import sd15_random
    from tests.fixtures.tiny_models import build_tiny_models

    started = time.perf_counter()
    tiny = build_tiny_models(WORK / "tiny")  # the tokenizer, and the toy run's checker
    folder = sd15_random.build(SD, tiny.text_to_image / "tokenizer", toy=TOY, device=DEVICE)
    say(f"built {folder.name} in {time.perf_counter() - started:.0f} s")
    unet = sd15_random.unet_flops(folder, SIZE, SIZE) / 1e12
    vae = sd15_random.vae_decode_flops(folder, SIZE, SIZE) / 1e12
    say(
        f"{SIZE}x{SIZE}: UNet {unet:.3f} TFLOP per guided step per image, VAE decode "
        f"{vae:.3f}; {STEPS} steps + decode = {STEPS * unet + vae:.1f} TFLOP per image"
    )
    if not TOY and not (SAFETY / "config.json").exists():
        build_safety_checker(SAFETY)
        say("built the full-size safety checker (ViT-L/14, random weights, never flags)")


def build_safety_checker(folder: Path) -> None:
    """SD's safety checker at full size (CLIP ViT-L/14 vision tower), random weights, with
    thresholds it never reaches: it runs the whole model and flags nothing."""
    import torch
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    torch.manual_seed(0)
    config = CLIPConfig(
        text_config={
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 1,
            "num_attention_heads": 4,
            "vocab_size": 100,
            "bos_token_id": 0,
            "eos_token_id": 1,
            "pad_token_id": 1,
        },
        # CLIP ViT-L/14, the vision tower of CompVis/stable-diffusion-safety-checker.
        vision_config={
            "hidden_size": 1024,
            "intermediate_size": 4096,
            "num_hidden_layers": 24,
            "num_attention_heads": 16,
            "image_size": 224,
            "patch_size": 14,
        },
        projection_dim=768,
    )
    with torch.device(DEVICE):  # random init on the GPU: seconds, not a minute
        checker = StableDiffusionSafetyChecker(config).eval()
    with torch.no_grad():  # cosine thresholds of 2 are never reached
        checker.concept_embeds_weights.fill_(2.0)
        checker.special_care_embeds_weights.fill_(2.0)
    checker.to(torch.float16).save_pretrained(folder, safe_serialization=True)
    CLIPImageProcessor().save_pretrained(folder)  # 224 shortest edge and crop, as SD's


# -- plain diffusers ----------------------------------------------------------------------------


def plain() -> None:
    """A bare StableDiffusionPipeline: img/s of full calls at batch 1, 4, 16, and peak memory."""
    import torch
    from diffusers import StableDiffusionPipeline

    from engine.models.schedulers import make_scheduler
    from engine.settings import SAFETENSORS_ONLY

    dtype = torch.float32 if TOY else torch.float16
    pipe = StableDiffusionPipeline.from_pretrained(SD, dtype=dtype, **SAFETENSORS_ONLY)
    pipe = pipe.to(DEVICE)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = make_scheduler("euler", pipe.scheduler.config)
    cuda = DEVICE == "cuda"

    def call(batch: int, seed: int) -> float:
        if cuda:
            torch.cuda.synchronize()
        started = time.perf_counter()
        pipe(
            [f"{PROMPT}, study {i}" for i in range(batch)],
            num_inference_steps=STEPS,
            guidance_scale=7.5,
            width=SIZE,
            height=SIZE,
            generator=[torch.Generator().manual_seed(seed + i) for i in range(batch)],
        )
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - started

    for batch in (1, 2, 4) if TOY else (1, 4, 16):
        if left() < 20:
            say(f"plain diffusers b={batch}: skipped, out of time")
            break
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        call(batch, 0)  # warm: cuDNN, caches, the allocator
        seconds = statistics.median(call(batch, 10 * r) for r in range(3))
        peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0
        say(
            f"plain diffusers b={batch:<2}: {batch / seconds:6.2f} img/s "
            f"({seconds:.3f} s per call, VAE and PIL included), peak alloc {peak:.1f} GiB"
        )


# -- the engine process -------------------------------------------------------------------------


@dataclass(frozen=True)
class Queued:
    """A job as the bot's scheduler hands it to the FairQueue (``scheduler.QueuedJob``, which
    cannot be imported here: the scheduler imports the store, and the GPU machine has no
    SQLAlchemy)."""

    spec: JobSpec
    owner: int

    @property
    def sequence(self) -> int:
        return self.spec.job_id

    @property
    def size(self) -> int:
        return self.spec.image_count

    @property
    def batch_key(self) -> Any:
        return self.spec.batch_key


def mixed_queue(model: ModelRef, first_id: int) -> list[Queued]:
    """A course channel's burst: jobs of 1-4 images from 16 users, all 512x512 / 30 steps /
    Euler / guidance 7.5 (so they can batch), different prompts and seeds."""
    choose = random.Random(7).choice
    jobs = []
    for i in range(QUEUE_JOBS):
        # The toy run's jobs fit its buckets (1 and 2 images), so every batch can be cut to one.
        count = choose((1, 1, 2) if TOY else (1, 1, 1, 2, 2, 4))
        spec = JobSpec(
            job_id=first_id + i,
            kind=JobKind.TEXT_TO_IMAGE,
            model=model,
            prompt=f"a watercolor fox in the snow, study {i}",
            seeds=tuple(range(1000 * i, 1000 * i + count)),
            steps=STEPS,
            width=SIZE,
            height=SIZE,
        )
        jobs.append(Queued(spec, owner=i % QUEUE_USERS))
    return jobs


class Endings:
    """The one reader of the client's events; callers wait for their jobs to end."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.ended: set[int] = set()
        self.failed = 0
        self.changed = asyncio.Event()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            event = await self.client.events.get()
            if isinstance(event, Result | JobError):
                if isinstance(event, JobError):
                    self.failed += 1
                    say(f"job {event.job_id} failed: {event.kind} {event.message}")
                self.ended.add(event.job_id)
                self.changed.set()

    async def wait(self, ids: list[int]) -> None:
        while not set(ids) <= self.ended:
            self.changed.clear()
            await self.changed.wait()


def engine_env(fast: bool) -> dict[str, str]:
    """The engine's settings for this run: fast path all off, or all on.

    Every fast-path option is set either way, so the engine's defaults (which may turn the
    fast path on for CUDA) cannot blur the comparison. The compile warm-up runs in the
    foreground (``ENGINE_COMPILE_IN_BACKGROUND=false``), so the load's time is the warm-up's.
    """
    on = "true" if fast else "false"
    env = {
        "ENGINE_OFFLINE": "true",
        "ENGINE_DEVICE": DEVICE,
        "ENGINE_SAFETY_CHECKER": str(SAFETY),
        "ENGINE_MAX_BATCH_IMAGES": str(MAX_BATCH),
        "HF_HUB_OFFLINE": "1",
        "ENGINE_CHANNELS_LAST": on,
        "ENGINE_CUDNN_BENCHMARK": on,
        "ENGINE_COMPILE_UNET": on,
        "ENGINE_COMPILE_VAE": on,
        "ENGINE_COMPILE_IN_BACKGROUND": "false",
        "ENGINE_COMPILE_BUCKETS": BUCKETS,
        "ENGINE_COMPILE_BACKEND": "eager" if TOY else "inductor",
    }
    mode = os.environ.get("GPU_CHECK_COMPILE_MODE", "default")
    if mode != "engine":  # "engine": the engine's own default mode
        env["ENGINE_COMPILE_MODE"] = mode
    return env


async def run_queue(
    client: Any,
    endings: Endings,
    poller: GpuPoller,
    model: ModelRef,
    label: str,
    *,
    inflight: int,
    preferred: frozenset[int] = frozenset(),
) -> None:
    """The mixed queue through the FairQueue, ``inflight`` batches at the engine at a time,
    cut to the ``preferred`` sizes as the bot's scheduler cuts them."""
    fair: FairQueue[Queued] = FairQueue()
    queue = mixed_queue(model, first_id=1000 * (inflight + 1))
    for item in queue:
        fair.push(item)
    images = sum(item.size for item in queue)
    sizes: list[int] = []
    pending: list[list[int]] = []
    started = time.time()
    while True:
        while len(pending) < inflight and (batch := fair.next_batch(MAX_BATCH, preferred)):
            sizes.append(sum(item.size for item in batch))
            await client.run_batch([item.spec for item in batch])
            pending.append([item.spec.job_id for item in batch])
        if not pending:
            break
        await endings.wait(pending.pop(0))
        if left() < 5:
            say(f"engine {label}: out of time inside the queue")
            return
    took = time.time() - started
    say(
        f"engine {label}: queue of {len(queue)} jobs ({images} images, {QUEUE_USERS} users) in "
        f"{took:.1f} s = {images / took:.2f} img/s, {inflight} batch(es) in flight; batch sizes "
        f"{dict(sorted(Counter(sizes).items()))}; {poller.window(started, time.time())}"
    )


async def engine(label: str, fast: bool, extras: bool) -> None:
    """Load (and warm), batch-1 latency, the mixed queue; with ``extras`` two in flight too."""
    from bot.jobs.engine_client import EngineClient  # pydantic-settings, via bot.settings

    logging.basicConfig(level=logging.WARNING, format="      engine-log %(message)s")
    model = ModelRef(name=SD.name, source=str(SD))
    poller = GpuPoller()
    # The pictures go to a spool folder, as the engine writes them for the bot.
    spool = Path(tempfile.mkdtemp(prefix="gpu-check-spool-"))
    client = EngineClient(env=engine_env(fast), load_timeout=3600, spool=spool)
    started = time.time()
    await client.start()
    say(f"engine {label}: process ready in {time.time() - started:.1f} s")
    started = time.time()
    load = asyncio.create_task(client.load_model(model, JobKind.TEXT_TO_IMAGE))
    while not load.done():
        await asyncio.wait({load}, timeout=30)
        if not load.done():
            say(f"engine {label}: still loading and warming after {time.time() - started:.0f} s")
    reply = load.result()
    say(
        f"engine {label}: load + warm-up {time.time() - started:.1f} s ({reply.message}); "
        f"{poller.window(started, time.time())}"
    )
    endings = Endings(client)
    try:
        latencies = []
        for r in range(4):  # one image, end to end: the PNG is in the spool
            spec = JobSpec(
                job_id=10 + r,
                kind=JobKind.TEXT_TO_IMAGE,
                model=model,
                prompt=PROMPT,
                seeds=(r,),
                steps=STEPS,
                width=SIZE,
                height=SIZE,
            )
            sent = time.time()
            await client.run_batch([spec])
            await endings.wait([spec.job_id])
            latencies.append(time.time() - sent)
        say(
            f"engine {label}: batch-1 latency {statistics.median(latencies[1:]):.3f} s (median "
            f"of 3 after one warm, first {latencies[0]:.2f} s), {STEPS} steps {SIZE}x{SIZE}"
        )
        runs = [1, 2] if extras else [1]
        for inflight in runs:
            if left() < 25:
                say(f"engine {label}: queue with {inflight} in flight skipped, out of time")
                break
            preferred = PREFERRED_SIZES if fast else frozenset()
            await run_queue(
                client, endings, poller, model, label, inflight=inflight, preferred=preferred
            )
    finally:
        endings.task.cancel()
        await client.stop()
        shutil.rmtree(spool, ignore_errors=True)
        poller.stop()
    if endings.failed:
        raise SystemExit(f"engine {label}: {endings.failed} job(s) failed")


# -- summary ------------------------------------------------------------------------------------

Row = tuple[str, str, Callable[[re.Match[str]], str]]


def summary_rows() -> list[Row]:
    """(row name, pattern in the log, the row's text from the match)."""
    rows: list[Row] = [("bf16 matmul", r"bf16 matmul (\d+) TFLOP/s", lambda m: f"{m[1]} TFLOP/s")]
    for batch in (1, 2, 4, 16):
        rows.append(
            (
                f"plain diffusers b={batch}",
                rf"plain diffusers b={batch}\s*: *([\d.]+) img/s.*?peak alloc ([\d.]+) GiB",
                lambda m: f"{m[1]} img/s, peak {m[2]} GiB",
            )
        )
    for label in ("off", "on"):
        engine = f"engine, fast path {label}"
        rows.append(
            (
                f"{engine}: load + warm-up",
                rf"engine {label}: load \+ warm-up ([\d.]+) s",
                lambda m: f"{m[1]} s",
            )
        )
        rows.append(
            (
                f"{engine}: batch-1 latency",
                rf"engine {label}: batch-1 latency ([\d.]+) s",
                lambda m: f"{m[1]} s",
            )
        )
        for inflight in (1, 2):
            rows.append(
                (
                    f"{engine}: mixed queue, {inflight} in flight",
                    rf"engine {label}: queue .*? = ([\d.]+) img/s, {inflight} batch.*?(GPU util.*)",
                    lambda m: f"{m[1]} img/s; {m[2]}",
                )
            )
    return rows


def summary(log: Path) -> None:
    """The figures of the log in one table; a missing row: its phase did not get that far."""
    text = log.read_text(encoding="utf-8", errors="replace")
    print("\nSUMMARY")
    for name, pattern, show in summary_rows():
        matches = list(re.finditer(pattern, text))
        print(f"  {name:<50}  {show(matches[-1]) if matches else '(not measured)'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="phase", required=True)
    sub.add_parser("machine")
    sub.add_parser("build")
    sub.add_parser("plain")
    run = sub.add_parser("engine")
    run.add_argument("--label", choices=("off", "on"), required=True)
    run.add_argument("--extras", action="store_true", help="also two batches in flight")
    sub.add_parser("summary").add_argument("log", type=Path)
    args = parser.parse_args()
    if TOY and args.phase != "summary":
        import torch

        torch.set_num_threads(1)  # toy figures mean nothing; keep a shared CPU usable
    if args.phase == "machine":
        machine()
    elif args.phase == "build":
        build()
    elif args.phase == "plain":
        plain()
    elif args.phase == "engine":
        asyncio.run(engine(args.label, fast=args.label == "on", extras=args.extras))
    else:
        summary(args.log)


if __name__ == "__main__":
    main()

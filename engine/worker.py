"""The engine's core: requests in, events out, one batch at a time.

``Worker`` knows nothing about pipes: ``emit`` receives every event, and ``submit`` (safe from
any thread) takes requests. The process loop in ``engine.process`` wires both to frames; tests
and the command line use a ``Worker`` directly.

For each group of compatible jobs the worker: checks the jobs, loads the model, reports
``Accepted``, makes one pipeline call with per-image prompts and generators (reporting
``Progress`` and honouring cancels between steps), runs the safety gate over every image, and
reports a ``Result`` (PNG bytes with metadata, obscured when flagged) or a ``JobError``.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import torch
from PIL import Image

from engine.images import preview
from engine.images.metadata import parameters_text, png_with_parameters
from engine.images.overlay import outline_mask
from engine.images.safety import SafetyChecker, obscure
from engine.models.invariance import batch_invariant_kernels
from engine.models.registry import (
    LoadedPipelines,
    ModelRegistry,
    ModelUnavailable,
    WrongModelKind,
    free_device_memory,
)
from engine.models.schedulers import make_scheduler
from engine.protocol import (
    Accepted,
    Cancel,
    ErrorKind,
    Event,
    GeneratedImage,
    JobError,
    JobKind,
    JobSpec,
    ListModels,
    LoadModel,
    MaskOverlay,
    ModelsReply,
    Progress,
    Ready,
    Request,
    Result,
    RunBatch,
    Shutdown,
    UnloadModel,
)
from engine.run.batching import group_compatible, prompt_cut, uses_guidance
from engine.run.comparisons import Comparisons, is_comparison
from engine.settings import EngineSettings
from engine.tasks.checks import BadInput, check_job, load_inpaint_inputs
from engine.tasks.inpainting import inpaint
from engine.tasks.text_mask import TextMasker
from engine.tasks.text_to_image import text_to_image

log = logging.getLogger(__name__)

Emit = Callable[[Event], None]
CANCELLED_MESSAGE = "cancelled"


def out_of_memory_message(spec: JobSpec) -> str:
    """What a user reads when their job did not fit in GPU memory."""
    count = len(spec.seeds)
    images = f"{count} image" if count == 1 else f"{count} images"
    return (
        f"ran out of GPU memory at {spec.width}x{spec.height} with {images}; try fewer or smaller"
    )


class Worker:
    """Handles requests and emits events; owns the model registry and the safety gate.

    ``emit`` is called from the thread running ``handle``/``serve`` and, for ``ListModels``
    answered at once, from the thread calling ``submit``; it must be safe for that.
    """

    def __init__(
        self,
        settings: EngineSettings,
        emit: Emit,
        *,
        registry: ModelRegistry | None = None,
        safety: SafetyChecker | None = None,
    ) -> None:
        self.settings = settings
        self.device = settings.torch_device()
        self.dtype = settings.torch_dtype()
        self.registry = registry or ModelRegistry(settings)
        self.safety = safety or SafetyChecker(settings)
        self.text_masks = TextMasker(settings)  # loads CLIPSeg on the first mask_prompt job
        self._send = emit
        self._ended: set[int] = set()  # jobs of the running batch that got a terminal event
        self._requests: queue.Queue[Request] = queue.Queue()
        self._lock = threading.Lock()
        self._known: set[int] = set()  # jobs submitted and not finished
        self._cancelled: set[int] = set()
        self._stopping = threading.Event()

    # --- entry points ------------------------------------------------------------------

    def ready(self) -> Ready:
        """The event announcing this worker."""
        dtype = str(self.dtype).removeprefix("torch.")
        return Ready(device=str(self.device), dtype=dtype, pid=os.getpid())

    def submit(self, request: Request) -> None:
        """Take a request from any thread; cancels and model listings act at once."""
        if isinstance(request, Cancel):
            self.cancel(request.job_id)
        elif isinstance(request, ListModels):
            self._reply_models(request.request_id)
        elif isinstance(request, Shutdown):
            # Jumps the queue: the running batch finishes, queued ones are dropped (the client
            # reports them as failed-retryable when the process exits).
            self._stopping.set()
            self._requests.put(request)
        else:
            if isinstance(request, RunBatch):
                self._register(request.jobs)
            self._requests.put(request)

    def serve(self, *, until_idle: bool = False) -> None:
        """Handle submitted requests in order until ``Shutdown`` (or, if asked, none are left)."""
        while not self._stopping.is_set():
            try:
                request = self._requests.get(block=not until_idle)
            except queue.Empty:
                return
            if self._stopping.is_set():
                break
            self.handle(request)

    def handle(self, request: Request) -> None:
        """Handle one request now, in this thread."""
        try:
            if isinstance(request, RunBatch):
                self.run_batch(request.jobs)
            elif isinstance(request, Cancel):
                self.cancel(request.job_id)
            elif isinstance(request, LoadModel):
                self._load(request)
            elif isinstance(request, UnloadModel):
                self._unload(request)
            elif isinstance(request, ListModels):
                self._reply_models(request.request_id)
            elif isinstance(request, Shutdown):
                self._stopping.set()
        except Exception:
            # The loop must outlive any single request; job errors are reported per job.
            log.exception("request %s failed", type(request).__name__)

    def cancel(self, job_id: int) -> None:
        """Cancel a queued or running job (safe from any thread); unknown ids are ignored."""
        with self._lock:
            if job_id in self._known:
                self._cancelled.add(job_id)

    def warm_up(self) -> None:
        """Load what every job needs (the safety checker) before the first job arrives."""
        self.safety.load()

    def _emit(self, event: Event) -> None:
        if isinstance(event, Result | JobError):
            self._ended.add(event.job_id)
        self._send(event)

    # --- models ------------------------------------------------------------------------

    def _reply_models(self, request_id: int, ok: bool = True, message: str = "") -> None:
        loaded = self.registry.loaded()
        if not message:
            message = f"{len(loaded)} model(s) loaded"
        self._emit(ModelsReply(request_id=request_id, ok=ok, message=message, loaded=loaded))

    def _load(self, request: LoadModel) -> None:
        was_loaded = any(m.model == request.model for m in self.registry.loaded())
        try:
            entry = self.registry.get(request.model)
            entry.pipeline_for(request.kind)
        except ModelUnavailable as error:
            self._reply_models(request.request_id, ok=False, message=str(error))
            return
        except WrongModelKind as error:
            if not was_loaded:
                self.registry.unload(request.model)
            self._reply_models(request.request_id, ok=False, message=str(error))
            return
        self._reply_models(request.request_id, message=f"{request.model.name} is loaded")

    def _unload(self, request: UnloadModel) -> None:
        if self.registry.unload(request.model):
            self._reply_models(request.request_id, message=f"{request.model.name} was unloaded")
        else:
            message = f"{request.model.name} was not loaded"
            self._reply_models(request.request_id, ok=False, message=message)

    # --- jobs --------------------------------------------------------------------------

    def _register(self, jobs: Sequence[JobSpec]) -> None:
        with self._lock:
            self._known.update(job.job_id for job in jobs)

    def _finish(self, jobs: Sequence[JobSpec]) -> None:
        with self._lock:
            for job in jobs:
                self._known.discard(job.job_id)
                self._cancelled.discard(job.job_id)

    def is_cancelled(self, job_id: int) -> bool:
        """Whether a cancel arrived for this queued or running job."""
        with self._lock:
            return job_id in self._cancelled

    def _fail(self, job: JobSpec, kind: ErrorKind, message: str) -> None:
        self._emit(JobError(job_id=job.job_id, kind=kind, message=message))

    def run_batch(self, jobs: Sequence[JobSpec]) -> None:
        """Run jobs, compatible ones together; every job ends in a ``Result`` or ``JobError``."""
        self._register(jobs)
        self._ended.clear()
        try:
            runnable = []
            for job in jobs:
                if self.is_cancelled(job.job_id):
                    self._fail(job, ErrorKind.CANCELLED, CANCELLED_MESSAGE)
                    continue
                try:
                    check_job(job, self.settings)
                except BadInput as error:
                    self._fail(job, ErrorKind.BAD_INPUT, str(error))
                    continue
                runnable.append(job)
            plain = [job for job in runnable if not is_comparison(job)]
            for group in group_compatible(plain, self.settings.max_batch_images):
                self._run_group(group)
            lessons = [job for job in runnable if is_comparison(job)]
            if lessons:  # the course's comparisons run panel by panel (engine.comparisons)
                Comparisons(self, self._emit, self._inpaint_inputs).run(lessons)
        except Exception:
            error_id = uuid.uuid4().hex[:8]
            log.exception("batch %s failed (error %s)", _ids(jobs), error_id)
            for job in jobs:
                if job.job_id not in self._ended:
                    self._fail(job, ErrorKind.INTERNAL, _internal_message(error_id))
        finally:
            self._finish(jobs)

    def pipeline_or_fail(self, jobs: Sequence[JobSpec]) -> tuple[LoadedPipelines, Any] | None:
        """The loaded model and the pipeline that run ``jobs`` (one model and kind), loading
        it when needed; when it cannot be had, every job fails with the reason: None."""
        first = jobs[0]
        try:
            entry = self.registry.get(first.model)
            return entry, entry.pipeline_for(first.kind)
        except ModelUnavailable as error:
            kind, message = ErrorKind.MODEL_UNAVAILABLE, str(error)
        except WrongModelKind as error:
            kind, message = ErrorKind.BAD_INPUT, str(error)
        for job in jobs:
            self._fail(job, kind, message)
        return None

    def _run_group(self, jobs: list[JobSpec]) -> None:
        first = jobs[0]
        loaded = self.pipeline_or_fail(jobs)
        if loaded is None:
            return
        entry, pipeline = loaded
        for job in list(jobs):
            if self.is_cancelled(job.job_id):  # while the model was loading
                self._fail(job, ErrorKind.CANCELLED, CANCELLED_MESSAGE)
                jobs.remove(job)
        pictures: dict[int, tuple[Image.Image, Image.Image]] = {}
        if first.kind is JobKind.INPAINT:
            for job in list(jobs):
                try:
                    pictures[job.job_id] = self._inpaint_inputs(job)
                except BadInput as error:
                    self._fail(job, ErrorKind.BAD_INPUT, str(error))
                    jobs.remove(job)
                except ModelUnavailable as error:  # the text-mask model
                    self._fail(job, ErrorKind.MODEL_UNAVAILABLE, str(error))
                    jobs.remove(job)
        for job in jobs:
            self._emit(
                Accepted(
                    job_id=job.job_id,
                    prompt_cut=prompt_cut(pipeline.tokenizer, job.prompt),
                    negative_prompt_cut=prompt_cut(pipeline.tokenizer, job.negative_prompt),
                )
            )
        if jobs:
            self._call(entry, pipeline, jobs, pictures)

    def _inpaint_inputs(self, job: JobSpec) -> tuple[Image.Image, Image.Image]:
        """The job's picture and mask at its size; the mask made from words when it has none."""
        image, mask = load_inpaint_inputs(job, self.settings)
        if mask is None:
            assert job.mask_prompt  # check_job ran first
            mask = self.text_masks.mask(image, job.mask_prompt.strip())
        return image, mask

    def _call(
        self,
        entry: LoadedPipelines,
        pipeline: Any,
        jobs: list[JobSpec],
        pictures: dict[int, tuple[Image.Image, Image.Image]],
    ) -> None:
        steps = _StepReporter(self, jobs)
        first = jobs[0]
        started = time.monotonic()
        try:
            pipeline.scheduler = make_scheduler(first.scheduler, entry.scheduler_config)
            rows = 2 if uses_guidance(pipeline, first.guidance) else 1
            with (
                torch.inference_mode(),
                batch_invariant_kernels(self.device, entry.invariance, rows),
            ):
                if first.kind is JobKind.INPAINT:
                    images = inpaint(pipeline, jobs, [pictures[j.job_id] for j in jobs], steps)
                else:
                    images = text_to_image(pipeline, jobs, steps)
        except torch.OutOfMemoryError:
            images = None
        except Exception:
            error_id = uuid.uuid4().hex[:8]
            log.exception("pipeline call failed for jobs %s (error %s)", _ids(jobs), error_id)
            for job in steps.still_running():
                self._fail(job, ErrorKind.INTERNAL, _internal_message(error_id))
            return
        if images is None:
            self._after_out_of_memory(entry, pipeline, jobs, pictures, steps)
            return
        self._deliver(entry, jobs, images, steps, time.monotonic() - started, pictures)

    def _after_out_of_memory(
        self,
        entry: LoadedPipelines,
        pipeline: Any,
        jobs: list[JobSpec],
        pictures: dict[int, tuple[Image.Image, Image.Image]],
        steps: _StepReporter,
    ) -> None:
        free_device_memory()
        running = steps.still_running()
        if len(running) > 1:
            # One big job must not sink the others: retry each alone. Images do not depend on
            # their batch, so the retried ones are the same pictures.
            log.warning("out of GPU memory with jobs %s; retrying one by one", _ids(running))
            for job in running:
                self._call(entry, pipeline, [job], pictures)
            return
        for job in running:
            log.warning("out of GPU memory on job %s", job.job_id)
            self._fail(job, ErrorKind.OUT_OF_MEMORY, out_of_memory_message(job))

    def _deliver(
        self,
        entry: LoadedPipelines,
        jobs: list[JobSpec],
        images: list[Image.Image],
        steps: _StepReporter,
        seconds: float,
        inputs: dict[int, tuple[Image.Image, Image.Image]],
    ) -> None:
        if len(images) != sum(len(job.seeds) for job in jobs):
            raise RuntimeError("the pipeline returned the wrong number of images")
        # Each job's slice of the batch; a cancelled job's pictures are dropped unchecked (its
        # cancel was reported when it was seen).
        own: list[tuple[JobSpec, list[Image.Image]]] = []
        position = 0
        for job in jobs:
            count = len(job.seeds)
            if not steps.cancelled(job):
                own.append((job, images[position : position + count]))
            position += count
        # An inpainting job also shows its input with the mask outlined: the user's upload,
        # posted by the bot, so it passes the same gate.
        overlays = {
            job.job_id: outline_mask(*inputs[job.job_id]) for job, _ in own if job.job_id in inputs
        }
        made = [image for _, pictures in own for image in pictures]
        checked = self.safety.flags([*made, *overlays.values()])
        overlay_flags = dict(zip(overlays, checked[len(made) :], strict=True))
        flags = iter(checked[: len(made)])
        for job, pictures in own:
            generated = []
            for seed, image in zip(job.seeds, pictures, strict=True):
                flagged = next(flags)
                png = png_with_parameters(
                    obscure(image) if flagged else image,
                    parameters_text(job, seed, entry.revision),
                )
                generated.append(GeneratedImage(seed=seed, png=png, nsfw=flagged))
            self._emit(
                Result(
                    job_id=job.job_id,
                    images=tuple(generated),
                    model_revision=entry.revision,
                    seconds=round(seconds, 3),
                    mask_overlay=_mask_overlay(
                        overlays.get(job.job_id), overlay_flags.get(job.job_id, False)
                    ),
                )
            )


def _mask_overlay(image: Image.Image | None, flagged: bool) -> MaskOverlay | None:
    if image is None:
        return None
    return MaskOverlay(png=preview.png_bytes(obscure(image) if flagged else image), nsfw=flagged)


def _ids(jobs: Sequence[JobSpec]) -> list[int]:
    return [job.job_id for job in jobs]


def _internal_message(error_id: str) -> str:
    # The id ties the user's report to the log line with the traceback.
    return f"something went wrong while making this image (error {error_id})"


class _StepReporter:
    """The pipeline's step callback: progress (throttled), previews, and cancels.

    A cancelled job is reported at once and its pictures are dropped later; the pipeline is
    interrupted only when every job in the call is cancelled. ``total_steps`` counts the
    denoising iterations the pipeline really runs: steps × strength when inpainting, and one
    more than ``steps`` for PNDM.
    """

    def __init__(self, worker: Worker, jobs: list[JobSpec]) -> None:
        self._worker = worker
        self._jobs = jobs
        self._settings = worker.settings
        self._reported_cancelled: set[int] = set()
        self._last_progress = float("-inf")
        self._last_preview = time.monotonic()
        # Where each job's first image sits in the batch: its preview shows that image.
        self._first_image: dict[int, int] = {}
        position = 0
        for job in jobs:
            self._first_image[job.job_id] = position
            position += len(job.seeds)

    def cancelled(self, job: JobSpec) -> bool:
        """Whether the job was cancelled (reporting it now if that was not done yet)."""
        if job.job_id in self._reported_cancelled:
            return True
        if self._worker.is_cancelled(job.job_id):
            self._reported_cancelled.add(job.job_id)
            self._worker._fail(job, ErrorKind.CANCELLED, CANCELLED_MESSAGE)
            return True
        return False

    def still_running(self) -> list[JobSpec]:
        return [job for job in self._jobs if not self.cancelled(job)]

    def __call__(
        self, pipeline: Any, step_index: int, timestep: Any, tensors: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        running = self.still_running()
        if not running:
            pipeline._interrupt = True  # diffusers skips the remaining steps
            return {}
        step, total = step_index + 1, pipeline.num_timesteps
        now = time.monotonic()
        final = step >= total
        if not final and now - self._last_progress < self._settings.progress_interval_s:
            return {}
        self._last_progress = now
        previews: dict[int, bytes] = {}
        if not final and now - self._last_preview >= self._settings.preview_interval_s:
            wanted = [job for job in running if job.preview]
            if wanted:
                self._last_preview = now
                previews = self._previews(wanted, tensors["latents"])
        for job in running:
            self._worker._emit(
                Progress(
                    job_id=job.job_id,
                    step=step,
                    total_steps=total,
                    preview_png=previews.get(job.job_id),
                )
            )
        return {}

    def _previews(self, jobs: list[JobSpec], latents: torch.Tensor) -> dict[int, bytes]:
        max_side = self._settings.preview_max_side
        images = [
            preview.latents_to_image(latents[self._first_image[job.job_id]], max_side)
            for job in jobs
        ]
        # Too small for the safety checker to judge, so always obscured (see engine.preview).
        return {
            job.job_id: preview.png_bytes(preview.obscured(image))
            for job, image in zip(jobs, images, strict=True)
        }

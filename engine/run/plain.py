"""Plain batches: each group of compatible jobs as one pipeline call.

For a group the runner loads the model, drops jobs cancelled meanwhile, loads the pictures
jobs start from, reports ``Accepted``, makes the one call (``engine.run.pipeline_call``, which
for depth-to-image first estimates each job's depth) with per-image prompts and generators
(reporting ``Progress`` with obscured previews and honouring cancels between steps), checks
the pictures (with an inpainting job's outline, a depth job's depth map), and hands the
encoding of each job's ``Result`` to a finishing thread (``engine.run.finishing``), so the next
group's call can start at once. A call that runs out of GPU memory is retried job by job
before a job is failed for it.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

import torch

from engine.images import preview
from engine.images.overlay import outline_mask
from engine.models.registry import LoadedPipelines, ModelUnavailable, free_device_memory
from engine.protocol import (
    DepthMap,
    ErrorKind,
    Event,
    Family,
    JobKind,
    JobSpec,
    MaskOverlay,
    Progress,
    Result,
    family_of_pipeline,
)
from engine.run.batching import group_compatible
from engine.run.context import CANCELLED_MESSAGE, RunContext, internal_message, job_ids
from engine.run.pipeline_call import (
    Checked,
    Made,
    check,
    depth_pictures,
    estimate_depths,
    load_inputs,
    one_call,
    task_images,
)
from engine.tasks.checks import BadInput
from engine.tasks.inpainting import Pictures
from engine.tasks.prompt_embeddings import PromptReader

log = logging.getLogger(__name__)


def out_of_memory_message(spec: JobSpec) -> str:
    """What a user reads when their job did not fit in GPU memory."""
    count = len(spec.seeds)
    images = f"{count} image" if count == 1 else f"{count} images"
    return (
        f"ran out of GPU memory at {spec.width}x{spec.height} with {images}; try fewer or smaller"
    )


def run_plain(context: RunContext, jobs: Sequence[JobSpec]) -> None:
    """Run checked plain jobs, compatible ones together, each group as one call."""
    runner = _PlainRunner(context)
    for group in group_compatible(jobs, context.settings.max_batch_images):
        runner.run_group(group)


class _PlainRunner:
    """Runs groups of plain jobs and reports them through the context."""

    def __init__(self, context: RunContext) -> None:
        self._context = context

    def run_group(self, jobs: list[JobSpec]) -> None:
        """Load the model, take each job's inputs, and make the group's call."""
        context = self._context
        loaded = context.pipeline_or_fail(jobs)
        if loaded is None:
            return
        entry, pipeline = loaded
        for job in list(jobs):
            if context.is_cancelled(job.job_id):  # while the model was loading
                context.fail(job, ErrorKind.CANCELLED, CANCELLED_MESSAGE)
                jobs.remove(job)
        pictures: dict[int, Pictures] = {}
        if jobs and jobs[0].kind.takes_picture:
            for job in list(jobs):
                try:
                    pictures[job.job_id] = load_inputs(job, context.settings, context.text_masks)
                except BadInput as error:
                    context.fail(job, ErrorKind.BAD_INPUT, str(error))
                    jobs.remove(job)
                except ModelUnavailable as error:  # the text-mask model
                    context.fail(job, ErrorKind.MODEL_UNAVAILABLE, str(error))
                    jobs.remove(job)
        prompts = PromptReader(pipeline)
        for job in jobs:
            context.accept(job, prompts)
        # Prompts read as text and as embeddings of each length run apart (they would change
        # each other's pictures: engine.tasks.prompt_embeddings).
        for same in group_compatible(jobs, context.settings.max_batch_images, prompts.windows):
            self._call(entry, pipeline, same, pictures)

    def _call(
        self,
        entry: LoadedPipelines,
        pipeline: Any,
        jobs: list[JobSpec],
        pictures: dict[int, Pictures],
    ) -> None:
        steps = _StepReporter(self._context, jobs)
        started = time.monotonic()
        inputs = [pictures[job.job_id] for job in jobs if job.job_id in pictures]
        images: torch.Tensor | None
        depths: dict[int, torch.Tensor] = {}
        try:
            images_made = sum(len(job.seeds) for job in jobs)
            with one_call(self._context.device, entry, pipeline, jobs[0], images_made):
                # Depth-to-image: estimated here, so the result can show what conditioned it.
                depths = estimate_depths(pipeline, jobs, inputs)
                images = task_images(pipeline, jobs, inputs, steps, depths)
        except torch.OutOfMemoryError:
            images = None  # handled below, once the error (and the tensors it holds) is gone
        except Exception:
            error_id = uuid.uuid4().hex[:8]
            log.exception("pipeline call failed for jobs %s (error %s)", job_ids(jobs), error_id)
            for job in steps.still_running():
                self._context.fail(job, ErrorKind.INTERNAL, internal_message(error_id))
            return
        if images is None:
            self._after_out_of_memory(entry, pipeline, pictures, steps)
            return
        seconds = time.monotonic() - started
        self._deliver(entry, jobs, images, steps, seconds, pictures, depths)

    def _after_out_of_memory(
        self,
        entry: LoadedPipelines,
        pipeline: Any,
        pictures: dict[int, Pictures],
        steps: _StepReporter,
    ) -> None:
        free_device_memory()
        running = steps.still_running()
        if len(running) > 1:
            # One big job must not sink the others: retry each alone. Images do not depend on
            # their batch, so the retried ones are the same pictures.
            log.warning("out of GPU memory with jobs %s; retrying one by one", job_ids(running))
            for job in running:
                self._call(entry, pipeline, [job], pictures)
            return
        for job in running:
            log.warning("out of GPU memory on job %s", job.job_id)
            self._context.fail(job, ErrorKind.OUT_OF_MEMORY, out_of_memory_message(job))

    def _deliver(
        self,
        entry: LoadedPipelines,
        jobs: list[JobSpec],
        images: torch.Tensor,
        steps: _StepReporter,
        seconds: float,
        inputs: dict[int, Pictures],
        depths: dict[int, torch.Tensor],
    ) -> None:
        if len(images) != sum(len(job.seeds) for job in jobs):
            raise RuntimeError("the pipeline returned the wrong number of images")
        # Each job's slice of the batch; a cancelled job's pictures are dropped unchecked (its
        # cancel was reported when it was seen).
        own: list[tuple[JobSpec, torch.Tensor]] = []
        position = 0
        for job in jobs:
            count = len(job.seeds)
            if not steps.cancelled(job):
                own.append((job, images[position : position + count]))
            position += count
        # An inpainting job also shows its input with the mask outlined: the user's upload,
        # posted by the bot, so it passes the same gate.
        overlays = {
            job.job_id: outline_mask(*inputs[job.job_id])
            for job, _ in own
            if job.kind is JobKind.INPAINT and job.job_id in inputs
        }
        # A depth-to-image job also shows its depth map, drawn from the user's upload: the
        # same gate.
        depth_maps = depth_pictures([job for job, _ in own], depths)
        made: list[Made] = [
            (job, seed, pixels)
            for job, pictures in own
            for seed, pixels in zip(job.seeds, pictures, strict=True)
        ]
        checked = check(
            self._context.safety,
            made,
            [*overlays.values(), *depth_maps.values()],
            entry.adapters.hashes(),
        )
        level = self._context.settings.png_compress_level
        overlay_index = {job_id: index for index, job_id in enumerate(overlays)}
        depth_index = {job_id: len(overlays) + i for i, job_id in enumerate(depth_maps)}

        def results() -> list[Event]:
            generated = checked.encode(entry.revision, level)
            events: list[Event] = []
            position = 0
            for job, _ in own:
                count = len(job.seeds)
                index = overlay_index.get(job.job_id)
                images = generated[position : position + count]
                overlay = (
                    None
                    if index is None
                    else mask_overlay(checked, index, level, any(i.nsfw for i in images))
                )
                index = depth_index.get(job.job_id)
                depth_map = None if index is None else _depth_map(checked, index, level)
                events.append(
                    Result(
                        job_id=job.job_id,
                        images=tuple(generated[position : position + count]),
                        model_revision=entry.revision,
                        seconds=round(seconds, 3),
                        mask_overlay=overlay,
                        depth_map=depth_map,
                    )
                )
                position += count
            return events

        self._context.finish_later([job for job, _ in own], results)


def mask_overlay(checked: Checked, index: int, level: int, images_flagged: bool) -> MaskOverlay:
    """The outline picture (``also`` picture ``index``), blurred when the checker flagged it
    or when any of its job's images was flagged: outside the mask, an inpainting keeps the
    upload, so the outline shows what got the result blurred even when its own check is
    clear. A blurred one comes with its original, for the moderators' review."""
    blur = checked.also_flags[index] or images_flagged
    return MaskOverlay(
        png=checked.encode_also(index, level, blur=blur),
        nsfw=blur,
        original_png=checked.encode_also(index, level, blur=False) if blur else None,
    )


def _depth_map(checked: Checked, index: int, level: int) -> DepthMap:
    return DepthMap(png=checked.encode_also(index, level), nsfw=checked.also_flags[index])


class _StepReporter:
    """The pipeline's step callback: progress (throttled), previews, and cancels.

    A cancelled job is reported at once and its pictures are dropped later; the pipeline is
    interrupted only when every job in the call is cancelled. ``total_steps`` counts the
    denoising iterations the pipeline really runs: steps × strength when starting from a
    picture (inpainting, image-to-image), and one
    more than ``steps`` for PNDM.
    """

    def __init__(self, context: RunContext, jobs: list[JobSpec]) -> None:
        self._context = context
        self._jobs = jobs
        self._settings = context.settings
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
        if self._context.is_cancelled(job.job_id):
            self._reported_cancelled.add(job.job_id)
            self._context.fail(job, ErrorKind.CANCELLED, CANCELLED_MESSAGE)
            return True
        return False

    def still_running(self) -> list[JobSpec]:
        """The call's jobs not cancelled so far."""
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
                previews = self._previews(pipeline, wanted, tensors["latents"])
        for job in running:
            self._context.emit(
                Progress(
                    job_id=job.job_id,
                    step=step,
                    total_steps=total,
                    preview_png=previews.get(job.job_id),
                )
            )
        return {}

    def _previews(
        self, pipeline: Any, jobs: list[JobSpec], latents: torch.Tensor
    ) -> dict[int, bytes]:
        # One preview per job, of its first image, all made at once (one copy to the host).
        first = [self._first_image[job.job_id] for job in jobs]
        family = family_of_pipeline(type(pipeline).__name__) or Family.SD
        latents = latents[first]
        if family is Family.FLUX:  # packed; the jobs of one call share a size
            latents = preview.unpack_flux(latents, jobs[0].width, jobs[0].height)
        images = preview.latents_to_images(latents, self._settings.preview_max_side, family)
        # Too small for the safety checker to judge, so always obscured (see engine.preview).
        return {
            job.job_id: preview.png_bytes(preview.obscured(image))
            for job, image in zip(jobs, images, strict=True)
        }

"""Course comparisons: one job, several panels from one seed.

The course shows what each setting does by changing it alone: the same prompt and seed at
several guidance scales, step counts or schedulers (``JobSpec.variants``), and one run's
prediction of the clean image at several of its steps, the "denoising strip"
(``JobSpec.decode_steps``). Each such job is one ``Result`` whose images come seed by seed, each
seed's panels in order.

Every panel keeps its own generator seeded with the job's seed, so panels differ only by the
varied setting, and a panel with the job's own settings is the job's own picture, pixel for
pixel. A pipeline call takes one guidance scale, step count and scheduler, so the panels of one
job run one call each; panels of *different* jobs with equal settings (two students' guidance
sweeps at the same size) share a call, like ordinary batching.

The denoising strip keeps the scheduler's prediction of the clean latents (x0) at the chosen
steps and decodes them with the VAE after the call (``engine.images.clean_images``).

Each call and its finish (safety gate on the GPU's thread, then PNGs with metadata in a
finishing thread) are the ones plain batches use (``engine.run.pipeline_call``).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from engine.images.clean_images import CleanImageCapture, decode_latents
from engine.models.registry import LoadedPipelines, ModelUnavailable, free_device_memory
from engine.protocol import (
    BOUNDS,
    FAMILIES,
    ErrorKind,
    Event,
    Family,
    JobKind,
    JobSpec,
    ModelRef,
    Progress,
    Result,
)
from engine.run.context import CANCELLED_MESSAGE, RunContext, internal_message
from engine.run.pipeline_call import (
    Made,
    check,
    check_inputs,
    load_inputs,
    one_call,
    task_images,
)
from engine.settings import EngineSettings
from engine.tasks.checks import BadInput, check_family
from engine.tasks.inpainting import Pictures
from engine.tasks.prompt_embeddings import PromptReader

log = logging.getLogger(__name__)

# The most panels any comparison has: /compare's X/Y grids (the lessons' own limit is the
# course settings', lower).
MAX_PANELS = BOUNDS.compare_panels.max


def is_comparison(spec: JobSpec) -> bool:
    """Whether the job is a course comparison (run here, not by the plain batch path)."""
    return bool(spec.variants or spec.decode_steps)


def panel_spec(spec: JobSpec, index: int) -> JobSpec:
    """What panel ``index`` of a comparison runs, as a plain job.

    A variant's guidance, steps and scheduler replace the job's, and so do its seed, strength
    and model where it gives them (an X/Y grid's axes); the denoising strip has one run, the
    job itself.
    """
    plain = replace(spec, variants=(), decode_steps=())
    if not spec.variants:
        return plain
    variant = spec.variants[index]
    panel = replace(
        plain, guidance=variant.guidance, steps=variant.steps, scheduler=variant.scheduler
    )
    if variant.seed is not None:
        panel = replace(panel, seeds=(variant.seed,))
    if variant.strength is not None:
        panel = replace(panel, strength=variant.strength)
    if variant.model is not None:
        panel = replace(panel, model=variant.model)
    return panel


def run_spec(panel: JobSpec, family: Family = Family.SD) -> JobSpec:
    """What a panel's pipeline call runs on a model of ``family``.

    diffusers guides only above a scale of 1 (at or below 1 it uses the prompt alone), but the
    course's CFG 0 is the other end: the unconditional prediction alone,
    ε = ε_uncond + 0·(ε_text − ε_uncond). That is a plain run of the unconditional text, the
    negative prompt (usually empty), so that is what a guidance-0 panel runs. A family without
    guidance (FLUX.1 schnell) stores 0 for "none": its panels run as they are.
    """
    if panel.guidance == 0 and FAMILIES[family].guidance is not None:
        return replace(panel, prompt=panel.negative_prompt, negative_prompt="", guidance=1.0)
    return panel


def denoising_steps(spec: JobSpec) -> int:
    """Denoising steps a run really takes: ``steps × strength`` from a picture."""
    if spec.kind.uses_strength:
        return max(1, int(spec.steps * spec.strength))
    return spec.steps


def check_comparison(spec: JobSpec, settings: EngineSettings) -> None:
    """Raise ``BadInput`` when a comparison cannot run; every panel must be a valid job."""
    if spec.variants and spec.decode_steps:
        raise BadInput("a comparison varies settings or shows denoising steps, not both")
    panels = len(spec.variants) or len(spec.decode_steps)
    if panels > MAX_PANELS:
        raise BadInput(f"a comparison has at most {MAX_PANELS} panels (got {panels})")
    for index in range(len(spec.variants)):
        check_inputs(panel_spec(spec, index), settings)
    steps = spec.decode_steps
    if any(not isinstance(s, int) or isinstance(s, bool) or s < 1 for s in steps):
        raise BadInput("denoising steps to show must be whole numbers from 1")
    if list(steps) != sorted(set(steps)):
        raise BadInput("denoising steps to show must be in increasing order, each once")
    if any(v.seed is not None for v in spec.variants) and len(spec.seeds) != 1:
        raise BadInput("a comparison that varies the seed is made from one seed")


@dataclass(eq=False)
class _Panel:
    """One panel of one comparison job: the plain job it shows, and the one it runs."""

    state: _JobState  # its job's
    index: int
    spec: JobSpec  # what its metadata says
    run: JobSpec  # what the pipeline is called with (``run_spec``)

    @property
    def job(self) -> JobSpec:
        return self.state.job

    @property
    def iterations(self) -> int:
        # The pipeline's loop length; PNDM (skipping its Runge-Kutta warm-up) takes one more.
        return denoising_steps(self.run) + (1 if self.run.scheduler == "pndm" else 0)


@dataclass(eq=False)
class _JobState:
    """What one comparison job has so far."""

    job: JobSpec
    panels: list[_Panel] = field(default_factory=list)
    total: int = 0  # pipeline iterations over all panels, for progress
    done: int = 0  # iterations of finished calls
    images: dict[int, torch.Tensor] = field(default_factory=dict)  # panel -> pixels per seed
    revisions: dict[int, str | None] = field(default_factory=dict)  # panel -> commit it ran
    lora_hashes: dict[str, str] = field(default_factory=dict)  # the LoRAs' web UI hashes
    ended: bool = False  # failed or cancelled (reported)
    accepted: bool = False  # its Accepted event is out (at its first model's turn)

    @property
    def complete(self) -> bool:
        return len(self.images) == (len(self.job.variants) or len(self.job.decode_steps))


def _groups(panels: list[_Panel], max_images: int, prompts: PromptReader) -> list[list[_Panel]]:
    """Panels with equal settings together, first seen first, at most ``max_images`` a call.

    Panels whose prompts take different numbers of the text encoder's windows (or go as text)
    stay apart, as plain jobs do (``engine.tasks.prompt_embeddings``).
    """
    chunks: dict[tuple[Any, ...], list[list[_Panel]]] = {}
    order: list[list[_Panel]] = []
    for panel in panels:
        # A strip's run captures its steps, so it batches only with strips of the same steps.
        key = (panel.run.batch_key, panel.job.decode_steps, prompts.windows(panel.run))
        own = chunks.setdefault(key, [])
        size = len(panel.run.seeds)
        if not own or sum(len(p.run.seeds) for p in own[-1]) + size > max_images:
            own.append([])
            order.append(own[-1])
        own[-1].append(panel)
    return order


class Comparisons:
    """Runs comparison jobs and reports them through the context's ``emit``."""

    def __init__(self, context: RunContext) -> None:
        self._context = context
        self._emit = context.emit
        self._settings = context.settings

    def run(self, jobs: Sequence[JobSpec]) -> None:
        """Run checked comparison jobs; each ends in a ``Result`` or a ``JobError``.

        Panels run model by model: an X/Y grid with a model axis has panels on several
        checkpoints, each loaded once for all the panels (of every job) that use it.
        """
        states: list[_JobState] = []
        for job in jobs:
            try:
                check_comparison(job, self._settings)
            except BadInput as error:
                self._fail(job, ErrorKind.BAD_INPUT, str(error))
                continue
            state = _JobState(job)
            for index in range(len(job.variants) or 1):
                shown = panel_spec(job, index)
                state.panels.append(_Panel(state, index, shown, run_spec(shown)))
            state.total = sum(panel.iterations for panel in state.panels)
            states.append(state)
        by_model: dict[tuple[ModelRef, JobKind], list[_Panel]] = {}
        for state in states:
            for panel in state.panels:
                by_model.setdefault((panel.run.model, panel.run.kind), []).append(panel)
        started = time.monotonic()
        pictures: dict[int, Pictures] = {}
        for panels in by_model.values():
            self._run_model(panels, pictures, started)
        for state in states:
            if not state.ended:  # cannot happen; but a job must never be left without an end
                log.error("comparison job %s ended with missing panels", state.job.job_id)
                state.ended = True
                self._fail(state.job, ErrorKind.INTERNAL, "the comparison could not be finished")

    def _fail(self, job: JobSpec, kind: ErrorKind, message: str) -> None:
        self._context.fail(job, kind, message)

    def _cancelled(self, state: _JobState) -> bool:
        """Whether the job was cancelled, reporting it the first time it is seen."""
        if state.ended:
            return True
        if self._context.is_cancelled(state.job.job_id):
            state.ended = True
            self._fail(state.job, ErrorKind.CANCELLED, CANCELLED_MESSAGE)
        return state.ended

    def _run_model(
        self, panels: list[_Panel], pictures: dict[int, Pictures], started: float
    ) -> None:
        """The panels that run on one model (of one or more jobs); a job is delivered once its
        last panel is made."""
        live = [state for state in _states(panels) if not self._cancelled(state)]
        if not live:
            return
        # The model as this group runs it; a failure ends each job once, with the reason.
        # Each job's first panel as shown (its run depends on the family, known once loaded).
        first_runs = [next(p.spec for p in state.panels if p in panels) for state in live]
        checked = list(first_runs)  # the context drops (and fails) a job its family refuses
        loaded = self._context.pipeline_or_fail(checked)
        if loaded is None:
            for state in live:
                state.ended = True
            return
        entry, pipeline = loaded
        for state, run in zip(live, first_runs, strict=True):
            if run not in checked:
                state.ended = True
        # Every panel must be a job the model's family takes (FLUX.1 schnell: steps 1-4, no
        # guidance, its one sampler), not only the first; and it runs as the family runs it.
        for panel in panels:
            if panel.state.ended:
                continue
            try:
                check_family(panel.spec, entry.family)
            except BadInput as refused:
                panel.state.ended = True
                self._fail(panel.job, ErrorKind.BAD_INPUT, str(refused))
                continue
            panel.run = run_spec(panel.spec, entry.family)
        live = [state for state in live if not state.ended]
        prompts = PromptReader(pipeline)
        for state in live:
            job = state.job
            if job.kind.takes_picture and job.job_id not in pictures:
                try:
                    pictures[job.job_id] = load_inputs(
                        job, self._settings, self._context.text_masks
                    )
                except (BadInput, ModelUnavailable) as error:
                    kind = (
                        ErrorKind.BAD_INPUT
                        if isinstance(error, BadInput)
                        else ErrorKind.MODEL_UNAVAILABLE
                    )
                    state.ended = True
                    self._fail(job, kind, str(error))
                    continue
            if not state.accepted:
                state.accepted = True
                self._context.accept(job, prompts)
        runnable = [panel for panel in panels if not panel.state.ended]
        for group in _groups(runnable, self._settings.max_batch_images, prompts):
            running = [panel for panel in group if not self._cancelled(panel.state)]
            if running:
                self._call(entry, pipeline, running, pictures)
            for state in _states(group):
                if not state.ended and state.complete:
                    self._deliver(state, time.monotonic() - started)

    def _call(
        self,
        entry: LoadedPipelines,
        pipeline: Any,
        panels: list[_Panel],
        pictures: dict[int, Pictures],
    ) -> None:
        specs = [panel.run for panel in panels]
        first = specs[0]
        capture: CleanImageCapture | None = None
        inputs = [pictures[panel.job.job_id] for panel in panels if panel.job.job_id in pictures]
        try:
            images_made = sum(len(spec.seeds) for spec in specs)
            with one_call(self._context.device, entry, pipeline, first, images_made):
                decode_steps = panels[0].job.decode_steps  # equal in a group: in the batch key
                if decode_steps:  # wraps the call's fresh scheduler
                    capture = CleanImageCapture(pipeline.scheduler, decode_steps)
                on_step = _Reporter(self, _states(panels), capture)
                images = task_images(pipeline, specs, inputs, on_step)
                strips = self._strips(pipeline, panels, images, capture)
        except torch.OutOfMemoryError:
            free_device_memory()
            log.warning("out of GPU memory on comparison panels of %s", _ids(panels))
            for state in _states(panels):
                if not state.ended:
                    state.ended = True
                    self._fail(state.job, ErrorKind.OUT_OF_MEMORY, _out_of_memory(state.job))
            return
        except Exception:
            error_id = uuid.uuid4().hex[:8]
            log.exception("comparison call failed for jobs %s (error %s)", _ids(panels), error_id)
            for state in _states(panels):
                if not state.ended:
                    state.ended = True
                    message = internal_message(error_id, "this comparison")
                    self._fail(state.job, ErrorKind.INTERNAL, message)
            return
        position = 0
        for panel in panels:
            state = panel.state
            count = len(panel.run.seeds)
            state.done += on_step.iterations
            state.revisions[panel.index] = entry.revision
            state.lora_hashes.update(entry.adapters.hashes())
            if strips is None:
                state.images[panel.index] = images[position : position + count]
            else:
                # The strip is one run: its "panels" are the kept steps, per seed.
                for step_index, pictures_at_step in enumerate(strips):
                    state.images[step_index] = pictures_at_step[position : position + count]
            position += count

    def _strips(
        self,
        pipeline: Any,
        panels: list[_Panel],
        finished: torch.Tensor,
        capture: CleanImageCapture | None,
    ) -> list[torch.Tensor] | None:
        """For a denoising strip, every kept step's pictures (all images of the call)."""
        if capture is None:
            return None
        job = panels[0].job
        run = panels[0].run
        last = denoising_steps(run)
        strips = []
        for step in job.decode_steps:
            if step >= last or step not in capture.kept:
                strips.append(finished)  # the finished picture is the last step's truth
            else:
                strips.append(decode_latents(pipeline, capture.kept[step], run.width, run.height))
        return strips

    def _deliver(self, state: _JobState, seconds: float) -> None:
        job = state.job
        panel_count = len(job.variants) or len(job.decode_steps)
        # Seed by seed, each seed's panels in order; a strip's panels all describe the job. A
        # panel's seed is its own when the seed is what varies.
        made: list[Made] = []
        revisions: list[str | None] = []
        for seed_index in range(len(job.seeds)):
            for index in range(panel_count):
                shown = panel_spec(job, index if job.variants else 0)
                made.append((shown, shown.seeds[seed_index], state.images[index][seed_index]))
                revisions.append(state.revisions[index if job.variants else 0])
        checked = check(self._context.safety, made, lora_hashes=state.lora_hashes)
        state.ended = True
        level = self._settings.png_compress_level
        # The job's own model's commit; a grid of other models only: its first panel's.
        own = [state.revisions[p.index] for p in state.panels if p.run.model == job.model]
        revision = (own or revisions)[0]

        def result() -> list[Event]:
            return [
                Result(
                    job_id=job.job_id,
                    images=tuple(checked.encode(revision, level, revisions)),
                    model_revision=revision,
                    seconds=round(seconds, 3),
                )
            ]

        self._context.finish_later([job], result)


class _Reporter:
    """One call's step callback: overall progress per job, cancels, and the strip's captures."""

    def __init__(
        self, runner: Comparisons, states: list[_JobState], capture: CleanImageCapture | None
    ) -> None:
        self._runner = runner
        self._states = states
        self._capture = capture
        self._interval = runner._settings.progress_interval_s
        self._last = float("-inf")
        self.iterations = 0  # how many the pipeline ran

    def __call__(
        self, pipeline: Any, step_index: int, timestep: Any, tensors: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        step, total = step_index + 1, pipeline.num_timesteps
        self.iterations = step
        if self._capture is not None:
            self._capture.after_step(step)
        running = [s for s in self._states if not self._runner._cancelled(s)]
        if not running:
            pipeline._interrupt = True  # diffusers skips the remaining steps
            return {}
        now = time.monotonic()
        if step < total and now - self._last < self._interval:
            return {}
        self._last = now
        for state in running:
            overall = min(state.done + step, state.total)
            self._runner._emit(
                Progress(job_id=state.job.job_id, step=overall, total_steps=state.total)
            )
        return {}


def _states(panels: list[_Panel]) -> list[_JobState]:
    """The jobs of ``panels``, each once, in order."""
    return list({id(panel.state): panel.state for panel in panels}.values())


def _ids(panels: list[_Panel]) -> list[int]:
    return sorted({panel.job.job_id for panel in panels})


def _out_of_memory(job: JobSpec) -> str:
    return (
        f"ran out of GPU memory making this comparison at {job.width}x{job.height}; "
        "try it on a smaller image"
    )

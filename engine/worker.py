"""The engine's loop: requests in, events out, one batch at a time.

``Worker`` knows nothing about pipes: ``emit`` receives every event, and ``submit`` (safe from
any thread) takes requests. The process loop in ``engine.process`` wires both to frames; tests
and the command line use a ``Worker`` directly.

The worker keeps track of which jobs are queued or running and which were cancelled, answers
model requests, and hands each ``RunBatch`` to the runners (``engine.run.batch``), which check
the jobs, make the pipeline calls and report every job's end.

The thread running ``serve`` drives the GPU. A batch's results are encoded by the worker's
``Finisher`` threads (``engine.run.finishing``) while ``serve`` goes on to the next request, so
the GPU does not wait for PNG encoding. ``handle`` waits for them (the command line and tests
see every event when it returns); ``serve`` waits only before it returns.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Sequence

from engine.images.safety import SafetyChecker
from engine.models.registry import ModelRegistry, ModelUnavailable, WrongModelKind
from engine.protocol import (
    Cancel,
    JobSpec,
    ListModels,
    LoadModel,
    ModelsReply,
    Ready,
    Request,
    RunBatch,
    Shutdown,
    UnloadModel,
)
from engine.run.batch import run_batch
from engine.run.context import Emit, RunContext
from engine.run.finishing import Finisher
from engine.settings import EngineSettings
from engine.tasks.text_mask import TextMasker

log = logging.getLogger(__name__)


class Worker:
    """Handles requests and emits events; owns the model registry and the safety gate.

    ``emit`` is called from the thread running ``handle``/``serve``, from the finishing
    threads (``Result`` events, and errors of jobs whose finishing broke) and, for
    ``ListModels`` answered at once, from the thread calling ``submit``; it must be safe for
    that. Each job's events arrive in order.
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
        self._emit = emit
        self._requests: queue.Queue[Request] = queue.Queue()
        self._lock = threading.Lock()
        self._known: set[int] = set()  # jobs submitted and not finished
        self._cancelled: set[int] = set()
        self._stopping = threading.Event()
        self._finisher = Finisher(settings.finish_threads)

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
        """Handle submitted requests in order until ``Shutdown`` (or, if asked, none are left);
        results still being encoded are out when it returns."""
        try:
            while not self._stopping.is_set():
                try:
                    request = self._requests.get(block=not until_idle)
                except queue.Empty:
                    return
                if self._stopping.is_set():
                    break
                self._dispatch(request)
        finally:
            self._finisher.drain()

    def handle(self, request: Request) -> None:
        """Handle one request now, in this thread; its events are all out when it returns."""
        try:
            self._dispatch(request)
        finally:
            self._finisher.drain()

    def close(self) -> None:
        """Wait for results still being encoded, then stop the finishing threads."""
        self._finisher.close()

    def _dispatch(self, request: Request) -> None:
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

    def is_cancelled(self, job_id: int) -> bool:
        """Whether a cancel arrived for this queued or running job."""
        with self._lock:
            return job_id in self._cancelled

    def warm_up(self) -> None:
        """Load what every job needs (the safety checkers) before the first job arrives."""
        self.safety.load()
        self.safety.second_opinion.load()

    def run_batch(self, jobs: Sequence[JobSpec]) -> None:
        """Run jobs, compatible ones together; every job ends in a ``Result`` or ``JobError``,
        some of them from the finishing threads after this returns (``handle`` waits)."""
        self._register(jobs)
        try:
            run_batch(self._run_context(), jobs)
        finally:
            self._finish(jobs)

    # --- jobs --------------------------------------------------------------------------

    def _run_context(self) -> RunContext:
        return RunContext(
            settings=self.settings,
            device=self.device,
            registry=self.registry,
            safety=self.safety,
            text_masks=self.text_masks,
            emit=self._emit,
            is_cancelled=self.is_cancelled,
            hand_off=self._finisher.submit,
        )

    def _register(self, jobs: Sequence[JobSpec]) -> None:
        with self._lock:
            self._known.update(job.job_id for job in jobs)

    def _finish(self, jobs: Sequence[JobSpec]) -> None:
        with self._lock:
            for job in jobs:
                self._known.discard(job.job_id)
                self._cancelled.discard(job.job_id)

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
        if request.adapter:
            held = self.registry.unload_adapter(request.adapter)
            message = f"{request.adapter} was taken out of {len(held)} loaded model(s)"
            self._reply_models(request.request_id, ok=bool(held), message=message)
            return
        if self.registry.unload(request.model):
            self._reply_models(request.request_id, message=f"{request.model.name} was unloaded")
        else:
            message = f"{request.model.name} was not loaded"
            self._reply_models(request.request_id, ok=False, message=message)

"""Loaded pipelines by model, under a memory budget, least recently used unloaded first.

Every model loads through ``from_pretrained`` from a Hugging Face id or a local folder, as the
pipeline of its family (``engine.protocol.FAMILIES``: SD 1.x/2.x, SDXL, FLUX.1 schnell), which
``model_index.json`` names; any other class, custom pipeline code included, is refused before a
weight is read or downloaded (``engine.load_rules``). A
text-to-image checkpoint also inpaints and starts from a picture (image-to-image): those
pipelines are built from the same components (``from_pipe``), so they cost no extra memory. A
dedicated inpainting checkpoint (a UNet with 9 input channels) only inpaints, and a depth
checkpoint (SD 2 depth: a 5-channel UNet beside a depth estimator) only runs depth-to-image
(``StableDiffusionDepth2ImgPipeline``, its own class in its ``model_index.json``). Pipelines are
loaded without their own safety checker; the engine's safety gate checks every image the same
way. Only safetensors weights are downloaded or loaded (``SAFETENSORS_ONLY``); a model that has
none is refused with a reason that says so.
"""

from __future__ import annotations

import functools
import gc
import json
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoPipelineForImage2Image,
    AutoPipelineForInpainting,
    AutoPipelineForText2Image,
    DiffusionPipeline,
    StableDiffusionDepth2ImgPipeline,
    StableDiffusionUpscalePipeline,
)

from engine.load_rules import LoadRefused, check_folder
from engine.models.adapters import LoadedAdapters
from engine.models.fast_path import FastPathReport, FastPathSettings, apply_fast_path
from engine.models.hub_check import check_hub_model
from engine.models.invariance import PerImageLinear, make_batch_invariant
from engine.models.schedulers import SchedulerStore
from engine.protocol import FAMILIES, Family, JobKind, LoadedModel, ModelRef, family_of_pipeline
from engine.settings import SAFETENSORS_ONLY, EngineSettings

log = logging.getLogger(__name__)

_GB = 1024**3


class ModelUnavailable(Exception):
    """A model cannot be used; ``str(error)`` is the user-safe reason."""


class WrongModelKind(Exception):
    """The model cannot do the asked task (a text-to-image job on an inpainting checkpoint)."""


def module_bytes(pipeline: DiffusionPipeline) -> int:
    """Bytes of parameters and buffers over all of a pipeline's modules."""
    total = 0
    for component in pipeline.components.values():
        if isinstance(component, torch.nn.Module):
            for tensor in (*component.parameters(), *component.buffers()):
                total += tensor.numel() * tensor.element_size()
    return total


def family_of(pipeline: object) -> Family | None:
    """The family of a loaded pipeline (text-to-image, image-to-image or inpainting)."""
    return family_of_pipeline(type(pipeline).__name__)


def _about_safetensors(error: BaseException | None) -> bool:
    """Whether loading failed for want of safetensors weights (diffusers and transformers say
    so in their message, somewhere along the chain of causes)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if "safetensors" in str(error):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def free_device_memory() -> None:
    """Return cached blocks to the driver after an unload or an out-of-memory error."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass
class LoadedPipelines:
    """One model's pipelines and what the engine needs to run them."""

    ref: ModelRef
    # TEXT_TO_IMAGE (can also inpaint and start from a picture), INPAINT (a dedicated
    # checkpoint), DEPTH_TO_IMAGE or UPSCALE (each only that)
    kind: JobKind
    family: Family
    base: DiffusionPipeline
    scheduler_config: Any  # the checkpoint's own, kept to build per-job schedulers from
    revision: str | None  # the commit actually loaded; None for local folders
    bytes: int
    invariance: list[PerImageLinear]
    adapters: LoadedAdapters  # LoRAs and embeddings loaded into ``base``'s modules
    # The schedulers its calls ran, each reset to its built state before a call.
    schedulers: SchedulerStore = field(default_factory=SchedulerStore, repr=False)
    fast_path: FastPathReport | None = field(default=None, repr=False)
    _inpaint: DiffusionPipeline | None = field(default=None, repr=False)
    _image_to_image: DiffusionPipeline | None = field(default=None, repr=False)

    def pipeline_for(self, kind: JobKind) -> DiffusionPipeline:
        """The pipeline for a task; raises ``WrongModelKind`` when this model cannot do it."""
        if (kind is JobKind.UPSCALE) != (self.kind is JobKind.UPSCALE):
            if kind is JobKind.UPSCALE:
                raise WrongModelKind(f"{self.ref.name} is not an upscaler; it cannot upscale")
            raise WrongModelKind(f"{self.ref.name} is an upscaler; it can only upscale pictures")
        depth = JobKind.DEPTH_TO_IMAGE
        if (self.kind is depth or kind is depth) and kind is not self.kind:
            what = (
                "is a depth-to-image model; it only runs /depth"
                if self.kind is depth
                else "is not a depth-to-image model (it has no depth estimator)"
            )
            raise WrongModelKind(f"{self.ref.name} {what}")
        if kind in (JobKind.UPSCALE, JobKind.DEPTH_TO_IMAGE):
            return self.base
        if kind is not JobKind.INPAINT and self.kind is JobKind.INPAINT:
            what = "from text alone" if kind is JobKind.TEXT_TO_IMAGE else "from a whole picture"
            raise WrongModelKind(
                f"{self.ref.name} is an inpainting model; it cannot make images {what}"
            )
        traits = FAMILIES[self.family]
        if kind not in traits.kinds:
            raise WrongModelKind(f"{traits.label} models do not do {kind.value.replace('_', '-')}")
        if kind is JobKind.TEXT_TO_IMAGE:
            return self.base
        if kind is JobKind.IMAGE_TO_IMAGE:
            if self._image_to_image is None:
                # The same modules as ``base`` (and so its fast path and batch invariance).
                self._image_to_image = AutoPipelineForImage2Image.from_pipe(self.base)
                self._image_to_image.set_progress_bar_config(disable=True)
            return self._image_to_image
        if self._inpaint is None:
            self._inpaint = AutoPipelineForInpainting.from_pipe(self.base)
            self._inpaint.set_progress_bar_config(disable=True)
        return self._inpaint

    def describe(self) -> LoadedModel:
        return LoadedModel(model=self.ref, kind=self.kind, bytes=self.bytes, revision=self.revision)


def _pipeline_class(folder: Path) -> str | None:
    """The pipeline class a diffusers folder names in its ``model_index.json``."""
    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # from_pretrained then says what is wrong
    name = index.get("_class_name") if isinstance(index, dict) else None
    return name if isinstance(name, str) else None


def _end_warm_up(report: FastPathReport) -> None:
    """Let the background warm-up finish the bucket it is compiling and skip the rest, so no
    other thread calls the modules while an adapter changes them. Buckets already compiled
    stay; torch.compile's guards see the changed modules and compile again when needed."""
    if report.background is not None and not report.background.done:
        log.info("stopping the background warm-up: an adapter changes the model")
        report.background.stop()
        report.background.wait()


def _snapshot_commit(folder: Path) -> str | None:
    # The Hugging Face cache keeps each download under .../snapshots/<commit hash>/.
    return folder.name if folder.parent.name == "snapshots" else None


class ModelRegistry:
    """Loads, keeps and unloads pipelines; used from the engine's one worker thread.

    ``loaded()`` may be called from any thread: it returns a snapshot kept under a lock.
    """

    def __init__(self, settings: EngineSettings) -> None:
        self._settings = settings
        self._device = settings.torch_device()
        self._dtype = settings.torch_dtype()
        self._budget = settings.memory_budget_bytes()
        self._entries: OrderedDict[ModelRef, LoadedPipelines] = OrderedDict()
        self._lock = threading.Lock()
        self._snapshot: tuple[LoadedModel, ...] = ()

    @property
    def budget_bytes(self) -> int | None:
        return self._budget

    def loaded(self) -> tuple[LoadedModel, ...]:
        """What is loaded, least recently used first."""
        with self._lock:
            return self._snapshot

    def get(self, ref: ModelRef) -> LoadedPipelines:
        """The model's pipelines, loading them first when needed; marks the model as used."""
        key = self._same_weights(ref)
        if key is None:
            key, entry = ref, self._load(ref)
        else:
            entry = self._entries[key]
        self._entries.move_to_end(key)
        self._publish()
        return entry

    def _same_weights(self, ref: ModelRef) -> ModelRef | None:
        """The loaded entry ``ref`` means, if any.

        A reroll pins the commit its parent actually ran (``revision`` = that hash) while the
        model was loaded as "latest" (``revision`` None): the same files, not a second copy.
        Models under other names stay separate, so admins see and unload what they named.
        """
        if ref in self._entries:
            return ref
        if ref.revision is None:
            return None
        for key, entry in self._entries.items():
            if (key.name, key.source, entry.revision) == (ref.name, ref.source, ref.revision):
                return key
        return None

    def unload(self, ref: ModelRef) -> list[ModelRef]:
        """Unload the model (matched by reference, else by name); returns what was unloaded."""
        matches = (
            [ref] if ref in self._entries else [r for r in self._entries if r.name == ref.name]
        )
        for match in matches:
            self._drop(match)
        if matches:
            free_device_memory()
        self._publish()
        return matches

    def unload_adapter(self, name: str) -> list[ModelRef]:
        """Take the adapter ``name`` (a LoRA's name or an embedding's token) out of every
        loaded model; returns the models it was in."""
        return [
            ref for ref, entry in self._entries.items() if entry.adapters.unload(entry.base, name)
        ]

    def _drop(self, ref: ModelRef) -> None:
        entry = self._entries.pop(ref)
        if entry.fast_path is not None and entry.fast_path.background is not None:
            # Its memory returns once the bucket being compiled is done.
            entry.fast_path.background.stop()
        log.info("unloaded %s (%.2f GB)", ref.name, entry.bytes / _GB)

    def _publish(self) -> None:
        snapshot = tuple(entry.describe() for entry in self._entries.values())
        with self._lock:
            self._snapshot = snapshot

    def _make_room(self, needed: int, name: str) -> None:
        if self._budget is None:
            return
        if needed > self._budget:
            raise ModelUnavailable(
                f"{name} needs {needed / _GB:.1f} GB, more than the engine's memory budget of "
                f"{self._budget / _GB:.1f} GB"
            )
        evicted = False
        while (
            self._entries and sum(e.bytes for e in self._entries.values()) + needed > self._budget
        ):
            oldest = next(iter(self._entries))
            log.info("memory budget: unloading %s to make room for %s", oldest.name, name)
            self._drop(oldest)
            evicted = True
        if evicted:
            free_device_memory()

    def _load(self, ref: ModelRef) -> LoadedPipelines:
        log.info("loading %s from %s", ref.name, ref.source)
        try:
            pipeline, revision = self._from_pretrained(ref)
        except LoadRefused as error:
            log.warning("refused to load %s from %s: %s", ref.name, ref.source, error)
            raise ModelUnavailable(f"could not load the model {ref.name}: {error}") from error
        except Exception as error:
            log.exception("could not load %s from %s", ref.name, ref.source)
            reason = f"could not load the model {ref.name}"
            if _about_safetensors(error):
                reason += (
                    ": it has no .safetensors weights (pickled .bin or .ckpt files are refused)"
                )
            raise ModelUnavailable(reason) from error
        family = family_of(pipeline)
        if family is None:
            raise ModelUnavailable(f"{ref.name} is not of a model family this engine runs")
        unet = getattr(pipeline, "unet", None)
        kind = JobKind.TEXT_TO_IMAGE
        if isinstance(pipeline, StableDiffusionDepth2ImgPipeline):
            kind = JobKind.DEPTH_TO_IMAGE
        elif isinstance(pipeline, StableDiffusionUpscalePipeline):
            kind = JobKind.UPSCALE
        elif unet is not None and unet.config.in_channels == 9:
            kind = JobKind.INPAINT
            pipeline = AutoPipelineForInpainting.from_pipe(pipeline)
        size = module_bytes(pipeline)
        # Measured on the CPU, so an over-budget model never touches the GPU.
        self._make_room(size, ref.name)
        try:
            pipeline.to(self._device)
        except torch.OutOfMemoryError as error:
            del pipeline
            free_device_memory()
            raise ModelUnavailable(f"not enough GPU memory to load {ref.name}") from error
        pipeline.set_progress_bar_config(disable=True)
        # Bit-exact batching on the CPU, speed on CUDA (engine.models.fast_path); compiled
        # buckets warm in the background by default, while jobs run uncompiled.
        fast_path = FastPathSettings.from_engine(self._settings, self._device)
        if kind is JobKind.UPSCALE:
            # Its VAE decodes four times the picture's sides: in tiles always, so a 512²
            # picture becomes 2048² within the budget (a recipe does the same). Not compiled:
            # the warm-up calls are text-to-image calls.
            fast_path = replace(
                fast_path, compile_unet=False, compile_vae=False, vae_tiling_min_pixels=0
            )
        # Both work on a UNet and its VAE; FLUX's transformer runs as diffusers has it, so a
        # FLUX job's pixels may depend on its batch in the last bits (the bot batches a FLUX
        # job only with jobs of the same settings, and a recipe runs one job alone).
        report = FastPathReport(invariance=[])
        if unet is not None:
            invariance = (
                make_batch_invariant(unet, pipeline.vae) if fast_path.batch_invariance else []
            )
            report = apply_fast_path(pipeline, fast_path, self._device, invariance)
        entry = LoadedPipelines(
            ref=ref,
            kind=kind,
            family=family,
            base=pipeline,
            scheduler_config=pipeline.scheduler.config,
            revision=revision,
            bytes=size,
            invariance=report.invariance,
            adapters=LoadedAdapters(
                self._settings, family, functools.partial(_end_warm_up, report)
            ),
            fast_path=report,
        )
        self._entries[ref] = entry
        log.info(
            "loaded %s (%s, %s, %.2f GB, revision %s)", ref.name, family, kind, size / _GB, revision
        )
        return entry

    def _from_pretrained(self, ref: ModelRef) -> tuple[DiffusionPipeline, str | None]:
        # None for the safety checker skips downloading and loading it; the engine's own gate
        # runs instead. Its feature extractor (a small JSON file) is downloaded, since in a depth
        # checkpoint the component of that name prepares pictures for the depth estimator.
        # Other pipelines load neither.
        skip_safety: dict[str, Any] = {"safety_checker": None, "feature_extractor": None}
        folder = Path(ref.source)
        revision = ref.revision
        if not folder.is_dir():
            if not self._settings.offline:
                # Before anything is downloaded: what the Hub lists must pass the rules.
                check_hub_model(ref.source, ref.revision, self._settings)
            folder = Path(
                DiffusionPipeline.download(
                    ref.source,
                    variant=self._settings.variant,
                    **self._settings.hub_options(ref.revision),
                    safety_checker=None,
                )
            )
            revision = _snapshot_commit(folder) or ref.revision
        # The files are here now (a Hub download fetched only safetensors and configs); their
        # pipeline class and code are checked before any of them is read as weights.
        check_folder(folder, self._settings.max_model_gb, self._settings.variant)
        # No ``trust_remote_code`` and no ``custom_pipeline``: only diffusers' own classes.
        common: dict[str, Any] = {"dtype": self._dtype, "variant": self._settings.variant}
        # Depth checkpoints and the upscaler are no text-to-image pipelines; model_index.json
        # names their class.
        pipeline_class = _pipeline_class(folder)
        if pipeline_class == StableDiffusionDepth2ImgPipeline.__name__:
            pipeline = StableDiffusionDepth2ImgPipeline.from_pretrained(
                folder, **common, **SAFETENSORS_ONLY
            )
        elif pipeline_class == StableDiffusionUpscalePipeline.__name__:
            # It takes no requires_safety_checker, and its invisible watermark is none of the
            # engine's business either.
            pipeline = StableDiffusionUpscalePipeline.from_pretrained(
                folder, **common, watermarker=None, **SAFETENSORS_ONLY, **skip_safety
            )
        else:
            pipeline = AutoPipelineForText2Image.from_pretrained(
                folder, **common, requires_safety_checker=False, **SAFETENSORS_ONLY, **skip_safety
            )
        return pipeline, revision

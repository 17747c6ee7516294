"""One pipeline call and its finish, shared by every runner; the one place runners meet tasks.

The call: the jobs' scheduler (a fresh one per call), inference mode, and the batch-invariant
kernels around the task's own pipeline call (``engine.tasks``), whose decoded pictures stay on
the device as 8-bit pixels. The finish, in two halves: ``check`` (on the GPU's thread) runs the
safety checker over every picture at once where the pixels are and copies them to host memory in
one transfer; ``Checked.encode`` (in a finishing thread, ``engine.run.finishing``) asks the
second opinion about the flagged ones (``engine.images.second_opinion``), obscures the
flagged pictures and writes each picture's parameters into its PNG, so nothing the checker
flags leaves the engine unobscured.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch
from PIL import Image

from engine.images.metadata import parameters_text, png_with_parameters
from engine.images.pixels import Picture, to_pixels
from engine.images.preview import png_bytes
from engine.images.safety import SafetyChecker, obscure
from engine.images.second_opinion import SecondOpinion, blurred
from engine.models.invariance import batch_invariant_kernels
from engine.models.registry import LoadedPipelines
from engine.models.schedulers import make_scheduler
from engine.protocol import Family, GeneratedImage, JobKind, JobSpec, SafetyVerdict
from engine.settings import EngineSettings
from engine.tasks import depth_to_image, image_to_image, inpainting, text_to_image, upscaling
from engine.tasks.inpainting import Pictures
from engine.tasks.text_mask import TextMasker
from engine.tasks.text_to_image import StepCallback

# A picture to deliver: the job its metadata describes, its seed, and its pixels (uint8,
# (3, height, width), on the device that made them).
Made = tuple[JobSpec, int, torch.Tensor]


def check_inputs(spec: JobSpec, settings: EngineSettings) -> None:
    """The checks of the task that runs ``spec``; ``BadInput`` with a user-safe reason."""
    if spec.kind is JobKind.INPAINT:
        inpainting.check_inputs(spec, settings)
    elif spec.kind is JobKind.IMAGE_TO_IMAGE:
        image_to_image.check_inputs(spec, settings)
    elif spec.kind is JobKind.DEPTH_TO_IMAGE:
        depth_to_image.check_inputs(spec, settings)
    elif spec.kind is JobKind.UPSCALE:
        upscaling.check_inputs(spec, settings)
    else:
        text_to_image.check_inputs(spec, settings)


def load_inputs(spec: JobSpec, settings: EngineSettings, text_masks: TextMasker) -> Pictures:
    """The (picture, mask) a job that takes a picture runs on, at its size (``BadInput``, or
    ``ModelUnavailable`` when the text-mask model is needed and cannot be loaded)."""
    if spec.kind is JobKind.IMAGE_TO_IMAGE:
        return image_to_image.load_inputs(spec, settings)
    if spec.kind is JobKind.DEPTH_TO_IMAGE:
        return depth_to_image.load_inputs(spec, settings)
    if spec.kind is JobKind.UPSCALE:
        return upscaling.load_inputs(spec, settings)
    return inpainting.load_inputs(spec, settings, text_masks)


def estimate_depths(
    pipeline: Any, jobs: Sequence[JobSpec], pictures: Sequence[Pictures]
) -> dict[int, torch.Tensor]:
    """Each depth-to-image job's estimated depth by job id (none for other kinds), for
    ``task_images`` and ``depth_pictures``."""
    if not jobs or jobs[0].kind is not JobKind.DEPTH_TO_IMAGE:
        return {}
    return {
        job.job_id: depth_to_image.estimate_depth(pipeline, picture)
        for job, (picture, _) in zip(jobs, pictures, strict=True)
    }


def depth_pictures(
    jobs: Sequence[JobSpec], depths: Mapping[int, torch.Tensor]
) -> dict[int, Image.Image]:
    """The depth maps to show beside the jobs' images, grey at each job's size, by job id."""
    return {
        job.job_id: depth_to_image.depth_picture(depths[job.job_id], (job.width, job.height))
        for job in jobs
        if job.job_id in depths
    }


def uses_guidance(pipeline: Any, guidance: float) -> bool:
    """Whether the call runs classifier-free guidance (two UNet rows per image)."""
    unet = getattr(pipeline, "unet", None)
    if unet is None:
        return False  # FLUX.1 schnell: guidance-distilled, one transformer pass per step
    # diffusers' own rule for Stable Diffusion pipelines.
    return guidance > 1 and unet.config.time_cond_proj_dim is None


@contextmanager
def one_call(
    device: torch.device,
    entry: LoadedPipelines,
    pipeline: Any,
    first: JobSpec,
    images: int | None = None,
) -> Iterator[None]:
    """Around one pipeline call for jobs like ``first``: their scheduler, as freshly built (a
    scheduler keeps state between steps), inference mode and the batch-invariant kernels
    (``images``: how many the call makes, when known)."""
    config = entry.scheduler_config
    if entry.family is Family.FLUX:
        # Its own flow-matching Euler scheduler, the only one it runs (``FAMILIES``).
        own = type(entry.base.scheduler)
        pipeline.scheduler = entry.schedulers.fresh(own, lambda: own.from_config(config))
    else:
        name = first.scheduler
        pipeline.scheduler = entry.schedulers.fresh(name, lambda: make_scheduler(name, config))
    rows = 2 if uses_guidance(pipeline, first.guidance) else 1
    with torch.inference_mode(), batch_invariant_kernels(device, entry.invariance, rows, images):
        yield


def task_images(
    pipeline: Any,
    jobs: Sequence[JobSpec],
    pictures: Sequence[Pictures],
    on_step: StepCallback,
    depths: Mapping[int, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Pixels for ``jobs`` (job by job, seed by seed) from the task's one pipeline call: uint8
    ``(images, 3, height, width)`` on the pipeline's device.

    ``pictures`` holds each inpainting, image-to-image, depth-to-image or upscale job's (image,
    mask), in the order of ``jobs``; it is empty for text-to-image. ``depths``: each
    depth-to-image job's ``estimate_depths`` by job id, when the caller estimated them (to show
    them); else the task estimates them. An upscale's pixels are ``kind.scale`` times the
    jobs' size. Call it inside ``one_call``.
    """
    if jobs[0].kind is JobKind.UPSCALE:
        decoded = upscaling.upscale(pipeline, jobs, pictures, on_step, "pt")
        return to_pixels(torch.stack(list(decoded)))
    if jobs[0].kind is JobKind.DEPTH_TO_IMAGE:
        decoded = depth_to_image.depth_to_image(
            pipeline,
            jobs,
            pictures,
            on_step,
            "pt",
            [depths[job.job_id] for job in jobs] if depths else (),
        )
        return to_pixels(torch.stack(list(decoded)))
    if jobs[0].kind is JobKind.IMAGE_TO_IMAGE:
        decoded = image_to_image.image_to_image(pipeline, jobs, pictures, on_step, "pt")
        return to_pixels(torch.stack(list(decoded)))
    if jobs[0].kind is JobKind.INPAINT:
        decoded = inpainting.inpaint(pipeline, jobs, pictures, on_step, output_type="pt")
        # Outside the mask: the user's own pixels, not a VAE round trip of them.
        return inpainting.composite(to_pixels(torch.stack(list(decoded))), jobs, pictures)
    decoded = text_to_image.text_to_image(pipeline, jobs, on_step, output_type="pt")
    return to_pixels(torch.stack(list(decoded)))


@dataclass(frozen=True)
class Checked:
    """Pictures the first safety checker has judged, in host memory: all that encoding needs.

    ``pixels`` are ``(height, width, 3)`` uint8 arrays, one per made picture, with the first
    checker's ``first_flags``; ``also`` are the other pictures checked beside them. The second
    opinion judges the flagged ones when the verdicts are first read (``verdicts``, ``flags``,
    ``also_flags``): in a finishing thread, on the CPU, while the GPU makes the next batch.
    """

    made: list[tuple[JobSpec, int]]
    pixels: list[torch.Tensor]
    first_flags: list[bool]
    first_scores: list[float | None]
    also: list[Image.Image]
    also_first_flags: list[bool]
    second: SecondOpinion
    lora_hashes: dict[str, str] = field(default_factory=dict)  # by name, for the metadata

    @cached_property
    def verdicts(self) -> list[SafetyVerdict]:
        """Each made picture's verdicts, both checkers'."""
        return self.second.verdicts(
            self.first_flags, lambda i: self.pixels[i].numpy(), self.first_scores
        )

    @cached_property
    def flags(self) -> list[bool]:
        """Which made pictures to obscure: the verdicts under the policy."""
        return [blurred(self.second.policy, verdict) for verdict in self.verdicts]

    @cached_property
    def also_flags(self) -> list[bool]:
        """Which of ``also`` to obscure."""
        verdicts = self.second.verdicts(self.also_first_flags, lambda i: self.also[i])
        return [blurred(self.second.policy, verdict) for verdict in verdicts]

    def encode(
        self, revision: str | None, level: int, revisions: Sequence[str | None] | None = None
    ) -> list[GeneratedImage]:
        """The made pictures as PNGs at zlib ``level``, carrying their parameters, each obscured
        when the gate flagged it; a flagged one also as it was, for the moderators.
        ``revisions``: each picture's model commit, where they differ (a comparison across
        models); else ``revision`` for all."""
        each = list(revisions) if revisions is not None else [revision] * len(self.made)
        generated = []
        for (spec, seed), pixels, verdict, flagged, commit in zip(
            self.made, self.pixels, self.verdicts, self.flags, each, strict=True
        ):
            image = Image.fromarray(pixels.numpy())
            parameters = parameters_text(spec, seed, commit, self.lora_hashes)
            generated.append(
                GeneratedImage(
                    seed=seed,
                    png=png_with_parameters(
                        obscure(image) if flagged else image, parameters, level
                    ),
                    nsfw=flagged,
                    verdict=verdict,
                    original_png=png_with_parameters(image, parameters, level) if flagged else None,
                )
            )
        return generated

    def encode_also(self, index: int, level: int, *, blur: bool | None = None) -> bytes:
        """Picture ``index`` of ``also`` as PNG bytes, obscured when the checker flagged it
        (``blur``: obscured or not whatever the checker said)."""
        image = self.also[index]
        blur = self.also_flags[index] if blur is None else blur
        return png_bytes(obscure(image) if blur else image, level)


def check(
    safety: SafetyChecker,
    made: Sequence[Made],
    also_checked: Sequence[Image.Image] = (),
    lora_hashes: dict[str, str] | None = None,
) -> Checked:
    """Judge ``made`` with the first safety checker and copy their pixels to host memory.

    The checker judges every picture where it is; the second opinion comes later, from host
    memory (``Checked``). ``also_checked`` are other pictures the bot will post beside them (an
    inpainting job's outlined input); they go through the same gate. ``lora_hashes``: the
    loaded LoRAs' web UI hashes, which the metadata names.
    """
    pictures: list[Picture] = [pixels for _, _, pixels in made]
    flags, scores = safety.judge([*pictures, *also_checked])
    if len(flags) != len(made) + len(also_checked):
        raise RuntimeError("the safety checker returned the wrong number of flags")
    return Checked(
        made=[(spec, seed) for spec, seed, _ in made],
        pixels=_to_host([pixels for _, _, pixels in made]),
        first_flags=flags[: len(made)],
        first_scores=scores[: len(made)],
        also=list(also_checked),
        also_first_flags=flags[len(made) :],
        second=safety.second_opinion,
        lora_hashes=lora_hashes or {},
    )


def _to_host(pictures: list[torch.Tensor]) -> list[torch.Tensor]:
    """``(3, h, w)`` device pixels as ``(h, w, 3)`` host pixels, in one copy when they are all
    the same size (a batch's always are)."""
    if not pictures:
        return []
    if all(p.shape == pictures[0].shape for p in pictures):
        return list(torch.stack(pictures).permute(0, 2, 3, 1).contiguous().cpu().unbind(0))
    return [p.permute(1, 2, 0).contiguous().cpu() for p in pictures]

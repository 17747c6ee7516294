"""Checks on what an admin types into `/models add`: a name, a source and a revision.

A source is a Hugging Face id (``org/name``) or a local folder given as a full path. A folder
must already hold a diffusers pipeline (``model_index.json``), so an admin cannot point the
engine at an arbitrary path by a slip; its UNet config tells the kind, so a wrong kind is
refused here instead of at load time. A Hugging Face id can only be checked by loading it.

The folder checks run on the bot's machine; they assume the engine runs there too (the local
child process), which is the default setup.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.ui.errors import UserInputError
from bot.ui.model_options import KIND_LABEL, MAX_NAME_CHARS
from engine.protocol import JobKind, is_folder_source

_NAME = re.compile(rf"[A-Za-z0-9._-]{{1,{MAX_NAME_CHARS}}}")
# Hugging Face's own rules: letters, digits, "-", "_", "." per part, up to 96 characters,
# and never ".." or "--".
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
_REVISION = re.compile(r"[A-Za-z0-9._/-]{1,100}")
_MAX_CONFIG_BYTES = 1024 * 1024  # model_index.json and unet/config.json are a few KB
_INPAINT_IN_CHANNELS = 9  # latents + mask + masked-image latents: a dedicated inpainting UNet
_UPSCALER_CLASS = "StableDiffusionUpscalePipeline"  # what model_index.json names the x4 upscaler


@dataclass(frozen=True)
class CheckedSource:
    """A source ready to store."""

    source: str  # the id as given, or the folder's full resolved path
    is_folder: bool
    note: str = ""  # something the admin should know before relying on it


def check_name(name: str) -> str:
    """A short model name: letters, digits, ``.``, ``_`` and ``-``."""
    name = name.strip()
    if not _NAME.fullmatch(name):
        raise UserInputError(
            f"A model name is 1-{MAX_NAME_CHARS} characters: letters, digits, `.`, `_` and `-` "
            "(for example `sd15-anime`)."
        )
    return name


def parse_kind(value: str) -> JobKind:
    """The kind an option named, with a plain refusal for anything else."""
    kind = next((kind for kind in KIND_LABEL if kind.value == value), None)
    if kind is None:
        *others, last = KIND_LABEL.values()
        raise UserInputError(f"The kind is {', '.join(others)} or {last}.")
    return kind


def check_hub_id(source: str) -> str:
    """A Hugging Face id of the shape ``org/name``."""
    if not _HUB_ID.fullmatch(source) or ".." in source or "--" in source:
        raise UserInputError(
            f"`{source}` is neither a Hugging Face id like "
            "`stable-diffusion-v1-5/stable-diffusion-v1-5` nor a full path to a local folder "
            "(starting with `/`)."
        )
    return source


def check_revision(revision: str | None, *, is_folder: bool) -> str | None:
    """A branch, tag or commit of a Hugging Face repository; folders have none."""
    if revision is None or not revision.strip():
        return None
    revision = revision.strip()
    if is_folder:
        raise UserInputError(
            "A revision only applies to a Hugging Face id; a local folder has just one version."
        )
    if not _REVISION.fullmatch(revision) or ".." in revision:
        raise UserInputError(
            "A revision is a branch, tag or commit, like `main`, `fp16` or a commit hash."
        )
    return revision


async def check_source(source: str, kind: JobKind) -> CheckedSource:
    """Check a source before it is stored; folders are read in a thread (disk access)."""
    source = source.strip()
    if is_folder_source(source):
        return await asyncio.to_thread(inspect_folder, source, kind)
    return CheckedSource(check_hub_id(source), is_folder=False)


def inspect_folder(source: str, kind: JobKind) -> CheckedSource:
    """Refuse a folder that is missing, not a diffusers pipeline, or of another kind."""
    path = Path(source).expanduser()
    try:
        # Resolved, so the store and the audit log show where the weights really are.
        folder = path.resolve(strict=True)
    except (OSError, RuntimeError):
        raise UserInputError(f"There is no folder `{source}` on the bot's machine.") from None
    if not folder.is_dir():
        raise UserInputError(
            f"`{folder}` is a file. Give the folder that holds `model_index.json` "
            "(single-file checkpoints are not supported)."
        )
    index = _read_json(folder / "model_index.json")
    if index is None:
        raise UserInputError(
            f"`{folder}` does not look like a diffusers pipeline: it has no readable "
            "`model_index.json`."
        )
    if not index.get("unet"):
        raise UserInputError(
            f"`{folder}` is not a UNet pipeline (Stable Diffusion 1.x, 2.x or XL), "
            "so the engine cannot run it."
        )
    unet = _read_json(folder / "unet" / "config.json")
    if unet is None:
        raise UserInputError(f"`{folder}` looks incomplete: `unet/config.json` is missing.")
    found = (
        # A depth checkpoint's pipeline holds a depth estimator beside its 5-channel UNet.
        JobKind.DEPTH_TO_IMAGE
        if index.get("depth_estimator")
        else JobKind.INPAINT
        if unet.get("in_channels") == _INPAINT_IN_CHANNELS
        else JobKind.TEXT_TO_IMAGE
    )
    if index.get("_class_name") == _UPSCALER_CLASS:
        found = JobKind.UPSCALE
    # A depth checkpoint or an upscaler does nothing else, and nothing else does their work.
    single_purpose = (JobKind.DEPTH_TO_IMAGE, JobKind.UPSCALE)
    if found is not kind and (found in single_purpose or kind in single_purpose):
        what = (
            {
                JobKind.DEPTH_TO_IMAGE: "is a depth-to-image checkpoint (it has a depth estimator)",
                JobKind.UPSCALE: "is an x4 upscaler",
            }[found]
            if found in single_purpose
            else {
                JobKind.DEPTH_TO_IMAGE: "is not a depth-to-image checkpoint (no depth estimator)",
                JobKind.UPSCALE: "is not an x4 upscaler",
            }[kind]
        )
        raise UserInputError(
            f"`{folder}` {what}, so it cannot be added as {KIND_LABEL[kind]}. "
            f"Add it with kind {KIND_LABEL[found]}."
        )
    if found is JobKind.INPAINT and kind is JobKind.TEXT_TO_IMAGE:
        raise UserInputError(
            f"`{folder}` is an inpainting checkpoint (its UNet takes 9 input channels), so it "
            "cannot make images from text alone. Add it with kind inpainting."
        )
    note = ""
    if found is JobKind.TEXT_TO_IMAGE and kind is JobKind.INPAINT:
        note = (
            "This is a text-to-image checkpoint: it inpaints with the same weights, but a "
            "dedicated inpainting checkpoint usually blends edits in better."
        )
    return CheckedSource(str(folder), is_folder=True, note=note)


def _read_json(path: Path) -> dict[str, Any] | None:
    """A small JSON object from ``path``; None when missing, too big or not an object."""
    try:
        if not path.is_file() or path.stat().st_size > _MAX_CONFIG_BYTES:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None

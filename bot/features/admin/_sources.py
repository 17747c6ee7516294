"""Checks on what an admin types into `/models add`: a name, a source and a revision.

A source is a Hugging Face id (``org/name``) or a local folder given as a full path. A folder
must already hold a diffusers pipeline (``model_index.json``), so an admin cannot point the
engine at an arbitrary path by a slip. Its ``model_index.json`` names the family (SD 1.x/2.x,
SDXL, FLUX.1 schnell) and the loading rules (``engine.load_rules``: no custom code, safetensors
only) are checked here, with the engine's own words; its UNet config tells the kind, so a wrong
kind is refused here instead of at load time. For a Hugging Face id, only its
``model_index.json`` is read (the family); the engine checks the rest before downloading.

The folder checks run on the bot's machine; they assume the engine runs there too (the local
child process), which is the default setup.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from pathlib import Path

from bot.ui.errors import UserInputError
from bot.ui.model_options import KIND_LABEL, MAX_NAME_CHARS
from engine.load_rules import LoadRefused, check_folder, check_index, read_json
from engine.protocol import FAMILIES, Family, JobKind, is_folder_source

HUB_READ_TIMEOUT_S = 10.0  # reading model_index.json from the Hub: a few KB
_NAME = re.compile(rf"[A-Za-z0-9._-]{{1,{MAX_NAME_CHARS}}}")
# Hugging Face's own rules: letters, digits, "-", "_", "." per part, up to 96 characters,
# and never ".." or "--".
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
_REVISION = re.compile(r"[A-Za-z0-9._/-]{1,100}")
# What model_index.json names the depth-to-image checkpoints and the x4 upscaler.
_DEPTH_CLASS = "StableDiffusionDepth2ImgPipeline"
_UPSCALER_CLASS = "StableDiffusionUpscalePipeline"


@dataclass(frozen=True)
class CheckedSource:
    """A source ready to store."""

    source: str  # the id as given, or the folder's full resolved path
    is_folder: bool
    family: Family = Family.SD
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


async def check_source(source: str, kind: JobKind, revision: str | None = None) -> CheckedSource:
    """Check a source before it is stored; folders and the Hub are read in a thread."""
    source = source.strip()
    if is_folder_source(source):
        return await asyncio.to_thread(inspect_folder, source, kind)
    hub_id = check_hub_id(source)
    try:
        family = await asyncio.wait_for(
            asyncio.to_thread(hub_family, hub_id, revision), HUB_READ_TIMEOUT_S
        )
    except TimeoutError:  # the Hub retries a lost network for longer; the engine checks anyway
        family = None
    if family is None:
        return CheckedSource(
            hub_id,
            is_folder=False,
            note=(
                "Its model_index.json could not be read from the Hub now, so it is stored as "
                f"{FAMILIES[Family.SD].label}; the engine checks what it really is when it loads."
            ),
        )
    _check_family_kind(hub_id, family, kind)
    return CheckedSource(hub_id, is_folder=False, family=family)


def hub_family(hub_id: str, revision: str | None) -> Family | None:
    """The family a Hub model's ``model_index.json`` names (a few KB, nothing else is
    fetched); None when it cannot be read now (offline, gated, missing). The engine applies
    every loading rule again before it downloads a weight (``engine.load_rules``)."""
    from huggingface_hub import hf_hub_download  # the bot's only Hub read, a few KB

    try:
        index = read_json(Path(hf_hub_download(hub_id, "model_index.json", revision=revision)))
        if index is None:
            return None
        return check_index(index)
    except LoadRefused as error:
        raise UserInputError(f"`{hub_id}` cannot be offered: {error}.") from None
    except Exception:  # offline, gated, missing: the Hub's errors are many
        return None


def _check_family_kind(where: str, family: Family, kind: JobKind) -> None:
    traits = FAMILIES[family]
    if kind not in traits.kinds:
        raise UserInputError(
            f"`{where}` is a {traits.label} model, which does not do "
            f"{KIND_LABEL.get(kind, kind.value)} here."
        )


def inspect_folder(source: str, kind: JobKind) -> CheckedSource:
    """Refuse a folder that is missing, not a diffusers pipeline, breaks a loading rule
    (``engine.load_rules``: custom code, pickled weights) or is of another kind."""
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
    if read_json(folder / "model_index.json") is None:
        raise UserInputError(
            f"`{folder}` does not look like a diffusers pipeline: it has no readable "
            "`model_index.json`."
        )
    try:
        # The size cap is the engine's (ENGINE_MAX_MODEL_GB); it applies it when loading.
        inspected = check_folder(folder, max_gb=None)
    except LoadRefused as error:
        raise UserInputError(f"`{folder}` cannot be offered: {error}.") from None
    _check_family_kind(str(folder), inspected.family, kind)
    index = read_json(folder / "model_index.json") or {}
    found = JobKind.INPAINT if inspected.inpainting else JobKind.TEXT_TO_IMAGE
    if index.get("_class_name") == _DEPTH_CLASS or index.get("depth_estimator"):
        # A depth checkpoint holds a depth estimator beside its 5-channel UNet.
        found = JobKind.DEPTH_TO_IMAGE
    elif index.get("_class_name") == _UPSCALER_CLASS:
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
    return CheckedSource(str(folder), is_folder=True, family=inspected.family, note=note)

"""What a suggested model must be before admins see it: a diffusers pipeline of a class the
engine runs, safetensors weights only, no code of its own, under the size cap.

The same rules judge a local folder and a Hugging Face repository, from the same facts: the
files and their sizes, ``model_index.json``, and the model card's front matter (for the
licence). A refusal says which rule failed.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from bot.features.admin._sources import check_hub_id
from bot.ui.errors import UserInputError
from engine.protocol import JobKind, is_folder_source

# The pipeline classes (model_index.json's ``_class_name``) the engine runs, and their kind.
KNOWN_PIPELINES = {
    "StableDiffusionPipeline": JobKind.TEXT_TO_IMAGE,
    "StableDiffusionInpaintPipeline": JobKind.INPAINT,
}
PICKLE_SUFFIXES = frozenset({".bin", ".ckpt", ".pt", ".pth", ".pkl", ".pickle"})
_MAX_SMALL_FILE = 1024 * 1024  # model_index.json and README.md are a few KB
_LICENCE = re.compile(r"^licen[cs]e:\s*['\"]?([^'\"\n]+?)['\"]?\s*$", re.MULTILINE)
_GB = 1024**3


@dataclass(frozen=True)
class CheckedSuggestion:
    source: str  # the Hub id, or the folder's resolved path
    kind: JobKind
    pipeline: str
    bytes: int
    licence: str  # "" when the model card names none


def judge(
    source: str,
    files: Sequence[tuple[str, int]],
    index: dict[str, Any] | None,
    readme: str | None,
    max_bytes: int,
) -> CheckedSuggestion:
    """Apply the rules to a model's files ((path, bytes)), its model_index.json and README."""
    if index is None:
        raise UserInputError(
            "That is not a diffusers pipeline: it has no readable `model_index.json` "
            "(single-file checkpoints are not taken as suggestions)."
        )
    pipeline = str(index.get("_class_name", ""))
    if pipeline not in KNOWN_PIPELINES:
        raise UserInputError(
            f"That is a `{pipeline or 'unknown'}` pipeline; the bot runs "
            f"{' and '.join(f'`{name}`' for name in KNOWN_PIPELINES)}."
        )
    suffixes = {path: PurePosixPath(path).suffix for path, _ in files}
    if pickled := sorted(p for p, suffix in suffixes.items() if suffix in PICKLE_SUFFIXES):
        raise UserInputError(
            f"It holds pickled weights (`{pickled[0]}`): only .safetensors weights are "
            "accepted, since loading a pickle can run code."
        )
    if code := sorted(p for p, suffix in suffixes.items() if suffix == ".py"):
        raise UserInputError(
            f"It ships its own code (`{code[0]}`): the bot never runs a model's own code."
        )
    if not any(suffix == ".safetensors" for suffix in suffixes.values()):
        raise UserInputError("It has no .safetensors weights.")
    total = sum(size for _, size in files)
    if total > max_bytes:
        raise UserInputError(
            f"It is {total / _GB:.1f} GB; a suggestion may be at most {max_bytes / _GB:g} GB."
        )
    found = _LICENCE.search(_front_matter(readme or ""))
    return CheckedSuggestion(
        source, KNOWN_PIPELINES[pipeline], pipeline, total, found.group(1) if found else ""
    )


def _front_matter(card: str) -> str:
    """The YAML between a model card's opening ``---`` lines ("" when it has none)."""
    if not card.startswith("---"):
        return ""
    end = card.find("\n---", 3)
    return card[3:end] if end > 0 else ""


async def check_suggestion(source: str, max_bytes: int, folder: str = "") -> CheckedSuggestion:
    """Read the model's facts (a subfolder of ``folder`` on the bot's machine, or the Hub) and
    judge them."""
    source = source.strip()
    if is_folder_source(source):
        return await asyncio.to_thread(_judge_folder, source, max_bytes, folder)
    return await asyncio.to_thread(_judge_hub, check_hub_id(source), max_bytes)


def _judge_folder(source: str, max_bytes: int, allowed: str) -> CheckedSuggestion:
    # Outside the one shared folder, the same answer whatever is there: a path's existence is
    # not for students to learn.
    outside = UserInputError(
        f"Suggest a Hugging Face id (org/name){' or a folder under ' + allowed if allowed else ''}."
    )
    if not allowed:
        raise outside
    try:
        folder = Path(source).expanduser().resolve(strict=True)
    except (OSError, RuntimeError):
        folder = None
    root = Path(allowed).expanduser().resolve()
    if folder is None or root not in folder.parents:
        raise outside
    if not folder.is_dir():
        raise UserInputError(f"`{source}` is not a folder holding a diffusers pipeline.")
    files = [
        (path.relative_to(folder).as_posix(), path.stat().st_size)
        for path in folder.rglob("*")
        if path.is_file()
    ]
    return judge(
        str(folder),
        files,
        _json(_small_text(folder / "model_index.json")),
        _small_text(folder / "README.md"),
        max_bytes,
    )


def _judge_hub(repo_id: str, max_bytes: int) -> CheckedSuggestion:
    """The same facts from the Hub: the file list with sizes (nothing is downloaded but the
    two small files)."""
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError

    try:
        info = HfApi().model_info(repo_id, files_metadata=True)
        files = [(s.rfilename, s.size or 0) for s in info.siblings or ()]
        names = {name for name, _ in files}
        index = readme = None
        if "model_index.json" in names:
            index = _json(Path(hf_hub_download(repo_id, "model_index.json")).read_text("utf-8"))
        if "README.md" in names:
            readme = Path(hf_hub_download(repo_id, "README.md")).read_text("utf-8")
    except (HfHubHTTPError, OSError, ValueError):
        raise UserInputError(
            f"Could not read `{repo_id}` on the Hugging Face Hub (missing, private, or the Hub "
            "is out of reach)."
        ) from None
    return judge(repo_id, files, index, readme, max_bytes)


def _small_text(path: Path) -> str | None:
    try:
        if not path.is_file() or path.stat().st_size > _MAX_SMALL_FILE:
            return None
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _json(text: str | None) -> dict[str, Any] | None:
    try:
        data = json.loads(text) if text else None
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None

"""What a model's files must be before any of them is loaded: the rules both processes apply.

Standard library only, beside ``engine.protocol``: the bot checks a folder when an admin adds
it (``bot.features.admin._sources``), and the engine checks the same rules again before it reads
a weight, for a folder or for what the Hub lists before anything is downloaded
(``engine.models.hub_check``). Each refusal says which rule failed:

1. the pipeline is one diffusers ships for a family this engine runs (``model_index.json``'s
   ``_class_name``, ``engine.protocol.FAMILIES``), and every component is a class from diffusers
   or transformers: a model naming anything else asks for custom code, which is never run
   (and ``trust_remote_code`` is never passed);
2. no Python files: a repository that ships ``.py`` files means them as custom pipeline code;
3. weights are safetensors: a component with only pickled weights (``.bin``, ``.ckpt``, ``.pt``)
   is refused, since unpickling runs code;
4. the safetensors weights together stay under the size cap;
5. a FLUX.1 model is a guidance-distilled one like [schnell] (no guidance embedding): [dev]-style
   checkpoints need a guidance option this family does not offer, and ship under a licence
   that is not open.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.protocol import FAMILIES, Family, family_of_pipeline

_GB = 1024**3
_MAX_CONFIG_BYTES = 1024 * 1024  # model_index.json and component configs are a few KB
PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl")
# Libraries a component may come from; anything else is a module of the repository's own.
_LIBRARIES = {"diffusers", "transformers", None}
# The network that denoises, per family: the one component every pipeline of it has.
_DENOISERS = {Family.SD: "unet", Family.SDXL: "unet", Family.FLUX: "transformer"}
# Components the engine does not load (its own safety gate runs instead).
_SKIPPED = {"safety_checker", "feature_extractor"}


class LoadRefused(ValueError):
    """A model breaks a loading rule; ``str(error)`` says which, safe to show to an admin."""


@dataclass(frozen=True)
class Inspected:
    """What the rules found out about a model that passes them."""

    family: Family
    bytes: int  # of the safetensors weights the engine would load
    inpainting: bool  # a dedicated inpainting checkpoint (a UNet with 9 input channels)


def read_json(path: Path) -> dict[str, Any] | None:
    """A small JSON object from ``path``; None when missing, too big or not an object."""
    try:
        if not path.is_file() or path.stat().st_size > _MAX_CONFIG_BYTES:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def check_index(index: Mapping[str, Any]) -> Family:
    """Rule 1: the family ``model_index.json`` names, with only library components."""
    class_name = index.get("_class_name")
    family = family_of_pipeline(class_name)
    if family is None:
        known = ", ".join(traits.label for traits in FAMILIES.values())
        raise LoadRefused(
            f"its model_index.json names the pipeline `{class_name}`, which is not a diffusers "
            f"pipeline of a family this bot runs ({known}); custom pipeline code is never loaded"
        )
    for name, entry in index.items():
        if name.startswith("_") or not isinstance(entry, list) or len(entry) != 2:
            continue
        if name in _SKIPPED:
            continue  # never loaded (SD 1.5 names its checker's module, `stable_diffusion`)
        library = entry[0]
        if library not in _LIBRARIES:
            raise LoadRefused(
                f"its component `{name}` comes from `{library}`, not diffusers or transformers; "
                "custom code is never loaded"
            )
    denoiser = _DENOISERS[family]
    if not isinstance(index.get(denoiser), list) or not index[denoiser][0]:
        raise LoadRefused(
            f"its model_index.json names no `{denoiser}`, which a {FAMILIES[family].label} "
            "pipeline needs"
        )
    return family


def check_files(
    index: Mapping[str, Any],
    files: Mapping[str, int],
    max_gb: float | None,
    configs: Mapping[str, Mapping[str, Any]] | None = None,
    variant: str | None = None,
) -> Inspected:
    """Every rule, over the model's ``model_index.json``, its files (path inside the model ->
    bytes) and, when at hand, its components' ``config.json`` files by component name.

    The size counts the weights of ``variant`` (e.g. ``fp16``), which is what gets loaded."""
    family = check_index(index)
    code = sorted(path for path in files if path.endswith(".py"))
    if code:
        raise LoadRefused(f"it ships Python files (`{code[0]}`), custom code the engine never runs")
    components = [
        name
        for name, entry in index.items()
        if not name.startswith("_")
        and isinstance(entry, list)
        and entry[0]
        and name not in _SKIPPED
    ]
    total = 0
    for component in components:
        inside = {path: size for path, size in files.items() if path.startswith(f"{component}/")}
        safe = {path: size for path, size in inside.items() if path.endswith(".safetensors")}
        pickled = sorted(path for path in inside if path.endswith(PICKLE_SUFFIXES))
        if pickled and not safe:
            raise LoadRefused(
                f"its `{component}` has only pickled weights (`{pickled[0]}`); only "
                ".safetensors weights are loaded, since unpickling can run code"
            )
        total += sum(_loaded(safe, variant).values())
    if max_gb is not None and total > max_gb * _GB:
        raise LoadRefused(
            f"its weights are {total / _GB:.1f} GB, over the size cap of {max_gb:g} GB"
        )
    configs = configs or {}
    transformer = configs.get("transformer", {})
    if family is Family.FLUX and transformer.get("guidance_embeds"):
        raise LoadRefused(
            "it is a FLUX.1 [dev]-style model (it embeds a guidance scale); only "
            "guidance-distilled ones like FLUX.1 [schnell] are offered"
        )
    unet = configs.get("unet", {})
    return Inspected(family, total, inpainting=unet.get("in_channels") == 9)


def _variant_of(path: str) -> str | None:
    """``fp16`` in ``unet/diffusion_pytorch_model.fp16.safetensors`` (or a shard of it)."""
    parts = path.rsplit("/", 1)[-1].split(".")
    return parts[1].split("-", 1)[0] if len(parts) > 2 else None


def _loaded(weights: Mapping[str, int], variant: str | None) -> Mapping[str, int]:
    """The weight files of ``variant``; all of them when the component has none of it."""
    chosen = {path: size for path, size in weights.items() if _variant_of(path) == variant}
    return chosen or weights


def check_folder(folder: Path, max_gb: float | None, variant: str | None = None) -> Inspected:
    """Every rule, over a local folder that holds a diffusers pipeline."""
    index = read_json(folder / "model_index.json")
    if index is None:
        raise LoadRefused("it has no readable model_index.json (not a diffusers pipeline)")
    files = {
        str(path.relative_to(folder).as_posix()): path.stat().st_size
        for path in folder.rglob("*")
        if path.is_file()
    }
    configs = {
        name: config
        for name in ("unet", "transformer")
        if (config := read_json(folder / name / "config.json")) is not None
    }
    return check_files(index, files, max_gb, configs, variant)

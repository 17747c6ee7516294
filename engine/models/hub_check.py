"""The loading rules (``engine.load_rules``) over a Hugging Face repository, before download.

Reads what the Hub lists (each file's path and size) and the few small JSON files the rules
need (``model_index.json``, the UNet's or transformer's ``config.json``), so a pickle-only,
custom-code or oversized model is refused without fetching a weight.
"""

from __future__ import annotations

import json
from typing import Any

from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError

from engine.load_rules import LoadRefused, check_files
from engine.settings import EngineSettings


def _small_json(repo: str, path: str, revision: str | None, settings: EngineSettings) -> Any:
    try:
        local = hf_hub_download(repo, path, revision=revision, cache_dir=settings.cache_dir)
    except EntryNotFoundError:
        return None
    with open(local, encoding="utf-8") as file:
        return json.load(file)


def check_hub_model(repo: str, revision: str | None, settings: EngineSettings) -> None:
    """Raise ``LoadRefused`` when the repository breaks a loading rule."""
    info = HfApi().model_info(repo, revision=revision, files_metadata=True)
    files = {sibling.rfilename: sibling.size or 0 for sibling in info.siblings or ()}
    index = _small_json(repo, "model_index.json", revision, settings)
    if not isinstance(index, dict):
        raise LoadRefused("it has no model_index.json (not a diffusers pipeline)")
    configs = {}
    for component in ("unet", "transformer"):
        if f"{component}/config.json" in files:
            config = _small_json(repo, f"{component}/config.json", revision, settings)
            if isinstance(config, dict):
                configs[component] = config
    check_files(index, files, settings.max_model_gb, configs, settings.variant)

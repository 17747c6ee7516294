"""Admins' LoRAs and embeddings: checks on what `/models add` is given for one, and its lines
in `/models-list`.

An adapter's source is a Hugging Face id, a local folder holding a ``.safetensors`` file, or a
local ``.safetensors`` file; pickled weights (``.bin``, ``.pt``, ``.ckpt``) are refused, as the
engine would refuse them. Its name is what prompts write (``<lora:name:0.8>``); an embedding is
used by its token (``<name>`` unless the admin gives another).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from pathlib import Path

from bot.features.admin._sources import check_hub_id
from bot.store.models import Adapter
from bot.ui.errors import UserInputError
from engine.prompt_syntax import ADAPTER_NAME, LORA_OPEN, lora_token
from engine.protocol import FAMILIES, MODEL_FAMILIES, AdapterKind, Family, is_folder_source

ADAPTER_KIND_LABEL = {AdapterKind.LORA: "LoRA", AdapterKind.EMBEDDING: "embedding"}
_TOKEN = re.compile(r"[^\s,()\[\]:\\]{2,60}")


def parse_adapter_kind(value: str) -> AdapterKind | None:
    """The adapter kind an option named; None for a model's kind."""
    try:
        return AdapterKind(value)
    except ValueError:
        return None


def check_adapter_name(name: str) -> str:
    """A name prompts can write: letters, digits, ``_`` and ``-``, up to 40."""
    name = name.strip()
    if not ADAPTER_NAME.fullmatch(name):
        raise UserInputError(
            "An adapter's name is what prompts write, as in <lora:name:0.8>: 1-40 letters, "
            "digits, `_` and `-`, starting with a letter or digit (for example `ink-style`)."
        )
    return name


def check_family(family: str | None, kind: AdapterKind) -> str:
    """A family adapters are made for (``MODEL_FAMILIES``) that takes adapters of ``kind``."""
    family = family or next(iter(MODEL_FAMILIES))
    if family not in MODEL_FAMILIES:
        raise UserInputError(f"The family is one of: {', '.join(MODEL_FAMILIES)}.")
    if kind is AdapterKind.EMBEDDING and not FAMILIES[Family(family)].embeddings:
        raise UserInputError(
            f"{MODEL_FAMILIES[family]} models take no embeddings (their T5 text encoder has "
            "no textual inversion); LoRAs fit them."
        )
    return family


def check_token(kind: AdapterKind, name: str, token: str | None) -> str:
    """An embedding's token (``<name>`` by default); LoRAs have none."""
    if kind is AdapterKind.LORA:
        if token:
            raise UserInputError(f"A LoRA has no token: prompts use it as {lora_token(name, 0.8)}.")
        return ""
    token = (token or f"<{name}>").strip()
    if not _TOKEN.fullmatch(token) or token.startswith(LORA_OPEN):
        raise UserInputError(
            "An embedding's token is the word prompts write for it, 2-60 characters without "
            "spaces, commas, brackets or colons (for example `<ink-style>`)."
        )
    return token


async def check_adapter_source(source: str) -> str:
    """A Hugging Face id, or the resolved path of a local safetensors file or folder."""
    source = source.strip()
    if not is_folder_source(source):
        return check_hub_id(source)
    return await asyncio.to_thread(_inspect_local, source)


def _inspect_local(source: str) -> str:
    try:
        path = Path(source).expanduser().resolve(strict=True)
    except (OSError, RuntimeError):
        raise UserInputError(
            f"There is no file or folder `{source}` on the bot's machine."
        ) from None
    if path.is_file():
        if path.suffix != ".safetensors":
            raise UserInputError(
                f"`{path.name}` is not a .safetensors file; pickled weights (.bin, .pt, .ckpt) "
                "are refused."
            )
        return str(path)
    if not any(path.glob("*.safetensors")):
        raise UserInputError(
            f"`{path}` holds no .safetensors file; pickled weights (.bin, .pt, .ckpt) are refused."
        )
    return str(path)


def adapter_lines(adapters: Iterable[Adapter], *, admin: bool) -> list[str]:
    """``/models-list``'s adapters: how prompts use each one, its family; sources for admins."""
    lines = ["__LoRAs and embeddings__"]
    for adapter in adapters:
        use = lora_token(adapter.name, 1.0) if adapter.kind is AdapterKind.LORA else adapter.token
        line = (
            f"• **{adapter.name}** · {ADAPTER_KIND_LABEL[adapter.kind]} · "
            f"{MODEL_FAMILIES.get(adapter.family, adapter.family)} · `{use}`"
        )
        if not adapter.enabled:
            line += " · disabled"
        if admin:
            line += f" · `{adapter.source}`"
        lines.append(line)
    if len(lines) == 1:
        lines.append("• none yet")
    return lines

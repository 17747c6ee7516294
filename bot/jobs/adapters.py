"""Which LoRAs and embeddings a job applies, read from its prompts against what admins offer.

A prompt names LoRAs as the web UI does, ``<lora:name:0.8>``, and uses an embedding by writing
its token (``<my-style>``). Before a job exists, each LoRA must be offered (enabled), be a LoRA
and fit the model's family; the refusal names the ones that can be used. The job keeps what it
applies by value (``AdapterRef``), so a reroll applies the same files, and refuses when an
admin has since withdrawn one.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.store.models import Adapter
from bot.store.repository import Repository
from bot.ui import render
from bot.ui.errors import UserInputError
from engine.prompt_syntax import PromptSyntaxError, loras
from engine.protocol import BOUNDS, MODEL_FAMILIES, AdapterKind, AdapterRef

__all__ = ["require_still_offered", "resolve_adapters"]


def _family_name(family: str) -> str:
    return MODEL_FAMILIES.get(family, family)


def _offered_loras(offered: Sequence[Adapter], family: str) -> str:
    names = [a.name for a in offered if a.kind is AdapterKind.LORA and a.family == family]
    return render.name_list(names) if names else "none yet"


async def resolve_adapters(
    repo: Repository, prompt: str, negative_prompt: str, model_name: str, family: str
) -> tuple[AdapterRef, ...]:
    """The adapters the prompts ask for: the prompt's LoRAs in order, then the embeddings whose
    tokens either prompt writes. ``UserInputError`` naming what is wrong otherwise."""
    try:
        uses = loras(prompt)
        in_negative = loras(negative_prompt)
    except PromptSyntaxError as error:
        raise UserInputError(f"The prompt {error.reason}") from None
    if in_negative:
        raise UserInputError(
            "LoRAs go in the prompt, not in the negative prompt: move "
            f"<lora:{in_negative[0].name}:…> to the prompt."
        )
    if len(uses) > BOUNDS.loras_per_job:
        raise UserInputError(
            f"At most {BOUNDS.loras_per_job} LoRAs at once; the prompt names {len(uses)}."
        )
    # Every LoRA and embedding token has a “<”: most prompts need no read of the table.
    words = f"{prompt} {negative_prompt}"
    offered = await repo.list_adapters(enabled_only=True) if "<" in words else []
    by_name = {adapter.name: adapter for adapter in offered}
    chosen: list[AdapterRef] = []
    for use in uses:
        adapter = by_name.get(use.name)
        if adapter is None or adapter.kind is not AdapterKind.LORA:
            what = (
                f"“{use.name}” is an embedding: write its token {adapter.token} in the prompt."
                if adapter is not None
                else f"There is no LoRA called “{render.short(use.name, 40)}”."
            )
            raise UserInputError(f"{what} LoRAs you can use: {_offered_loras(offered, family)}.")
        if adapter.family != family:
            raise UserInputError(
                f"The LoRA “{use.name}” is made for {_family_name(adapter.family)} models; "
                f"{model_name} is a {_family_name(family)} model. LoRAs that fit it: "
                f"{_offered_loras(offered, family)}."
            )
        chosen.append(adapter.ref(use.weight))
    for adapter in offered:
        if adapter.kind is not AdapterKind.EMBEDDING or adapter.token not in words:
            continue
        if adapter.family != family:
            raise UserInputError(
                f"The embedding {adapter.token} is made for {_family_name(adapter.family)} "
                f"models; {model_name} is a {_family_name(family)} model."
            )
        chosen.append(adapter.ref())
    return tuple(chosen)


async def require_still_offered(
    repo: Repository, job_id: int, adapters: Sequence[AdapterRef]
) -> None:
    """Refuse to make job ``job_id`` again when an adapter it applied is no longer offered."""
    for ref in adapters:
        adapter = await repo.get_adapter(ref.name)
        if adapter is None or not adapter.enabled:
            raise UserInputError(
                f"Job #{job_id} used the {'LoRA' if ref.kind is AdapterKind.LORA else 'embedding'} "
                f"“{ref.name}”, which is no longer offered."
            )

"""LoRAs and textual-inversion embeddings on a loaded model, through diffusers' own calls.

A model's pipelines share one UNet, text encoder and tokenizer (``from_pipe``), so adapters are
loaded into the text-to-image pipeline once and serve every task of that model; the base model
is never reloaded for them. A LoRA is loaded with ``load_lora_weights(adapter_name=...)`` the
first time a job asks for it and stays loaded (the least recently used goes past
``ENGINE_MAX_LOADED_LORAS``); before each call ``set_adapters`` turns on exactly the job's
LoRAs at their weights, or ``disable_lora`` turns them all off. An embedding is added to the
tokenizer and text encoder with ``load_textual_inversion(token=...)`` and stays there; prompts
without its token never see it. Only safetensors files are read.

The families differ in where a LoRA goes (SD's and SDXL's UNet, FLUX.1's transformer; diffusers'
loaders know each pipeline's modules) and in embeddings: SDXL's carry one vector set per CLIP
text encoder, each loaded into its own encoder; FLUX.1 takes none (``FamilyTraits.embeddings``:
its T5 encoder has no textual inversion, and the job is refused before it gets here).
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from engine.protocol import AdapterKind, AdapterRef, Family, is_folder_source
from engine.settings import EngineSettings

log = logging.getLogger(__name__)


class AdapterUnavailable(Exception):
    """An adapter could not be loaded; ``str(error)`` is the user-safe reason."""


def _source_options(source: str, settings: EngineSettings) -> tuple[str, dict[str, Any]]:
    """What diffusers' loaders take for ``source``: a local file is named by its folder and
    ``weight_name``; a Hub id gets the engine's offline switch and cache."""
    options: dict[str, Any] = {}  # the loaders ask for safetensors only themselves
    if not is_folder_source(source):
        options.update(local_files_only=settings.offline, cache_dir=settings.cache_dir)
        return source, options
    path = Path(source).expanduser()
    if path.is_file():
        if path.suffix != ".safetensors":
            raise AdapterUnavailable("only .safetensors adapter files are loaded")
        options["weight_name"] = path.name
        return str(path.parent), options
    return str(path), options


_HASH_BLOCK = 1024 * 1024

# An SDXL embedding's two vector sets (the layout SDXL's textual-inversion training and the web
# UI write): the key in its file, then the pipeline's text encoder and tokenizer it goes into.
_SDXL_ENCODERS = (
    ("clip_l", "text_encoder", "tokenizer"),
    ("clip_g", "text_encoder_2", "tokenizer_2"),
)


def lora_hash(source: str) -> str | None:
    """The AUTOMATIC1111 web UI's short hash of a LoRA (what its "Lora hashes" metadata holds):
    the first 12 hex digits of the SHA-256 of a safetensors file's tensors, after its header.
    None for a Hub id (its file is the Hub's business) or a folder without exactly one file."""
    if not is_folder_source(source):
        return None
    path = Path(source).expanduser()
    if path.is_dir():
        files = list(path.glob("*.safetensors"))
        if len(files) != 1:
            return None
        path = files[0]
    digest = hashlib.sha256()
    with path.open("rb") as file:
        header = int.from_bytes(file.read(8), "little")
        file.seek(8 + header)
        while block := file.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()[:12]


class LoadedAdapters:
    """The adapters loaded into one model's modules, and which LoRAs a call turns on."""

    def __init__(
        self,
        settings: EngineSettings,
        family: Family,
        before_change: Callable[[], None] = lambda: None,
    ) -> None:
        """``family`` is the model's: it decides how an embedding is loaded.

        ``before_change`` runs before modules change shape (a LoRA's layers added or removed,
        the tokenizer grown): the fast path's background warm-up, which calls the same modules
        from its own thread, must be over first."""
        self._settings = settings
        self._family = family
        self._before_change = before_change
        self._loras: OrderedDict[str, str] = OrderedDict()  # name -> source, oldest first
        self._tokens: dict[str, str] = {}  # embedding token -> source
        self._hashes: dict[str, str] = {}  # LoRA name -> its web UI hash, where it has one

    @property
    def loras(self) -> tuple[str, ...]:
        """The LoRAs loaded, least recently used first."""
        return tuple(self._loras)

    def hashes(self) -> dict[str, str]:
        """The loaded LoRAs' web UI hashes by name (a copy: results are encoded later)."""
        return dict(self._hashes)

    def apply(self, pipeline: Any, adapters: Sequence[AdapterRef]) -> None:
        """Load what ``adapters`` need and turn on exactly their LoRAs, at their weights.

        ``AdapterUnavailable`` when one cannot be loaded; the model is left as it was."""
        for adapter in adapters:
            if adapter.kind is AdapterKind.EMBEDDING:
                self._embedding(pipeline, adapter)
        loras = [a for a in adapters if a.kind is AdapterKind.LORA]
        for lora in loras:
            self._lora(pipeline, lora, keep={a.name for a in loras})
        if not self._loras:
            return
        if loras:
            pipeline.enable_lora()
            pipeline.set_adapters([a.name for a in loras], [a.weight for a in loras])
        else:
            pipeline.disable_lora()

    def unload(self, pipeline: Any, name: str) -> bool:
        """Take the adapter ``name`` (a LoRA, or an embedding by its token) out of the model."""
        if name in self._loras:
            self._before_change()
            pipeline.delete_adapters([name])
            del self._loras[name]
            self._hashes.pop(name, None)
            return True
        if name in self._tokens:
            self._before_change()
            self._unload_embedding(pipeline, name)
            del self._tokens[name]
            return True
        return False

    def _lora(self, pipeline: Any, lora: AdapterRef, keep: set[str]) -> None:
        if self._loras.get(lora.name) == lora.source:
            self._loras.move_to_end(lora.name)
            return
        if lora.name in self._loras:  # the same name, other files: an admin replaced it
            self.unload(pipeline, lora.name)
        while len(self._loras) >= self._settings.max_loaded_loras:
            oldest = next((name for name in self._loras if name not in keep), None)
            if oldest is None:  # the job alone needs more: they stay loaded until it is done
                break
            log.info("unloading the LoRA %s to make room for %s", oldest, lora.name)
            self.unload(pipeline, oldest)
        where, options = _source_options(lora.source, self._settings)
        self._before_change()
        try:
            pipeline.load_lora_weights(
                where, adapter_name=lora.name, use_safetensors=True, **options
            )
        except Exception as error:
            log.exception("could not load the LoRA %s from %s", lora.name, lora.source)
            self._forget_partial(pipeline, lora.name)
            raise AdapterUnavailable(f"could not load the LoRA {lora.name}") from error
        self._loras[lora.name] = lora.source
        try:
            if (short := lora_hash(lora.source)) is not None:
                self._hashes[lora.name] = short
        except OSError:
            log.exception("could not hash the LoRA %s", lora.name)
        log.info("loaded the LoRA %s", lora.name)

    def _embedding(self, pipeline: Any, embedding: AdapterRef) -> None:
        token = embedding.token
        if self._tokens.get(token) == embedding.source:
            return
        if token in self._tokens:
            self.unload(pipeline, token)
        where, options = _source_options(embedding.source, self._settings)
        self._before_change()
        try:
            if self._family is Family.SDXL:
                self._load_sdxl_embedding(pipeline, token, where, options)
            else:
                pipeline.load_textual_inversion(where, token=token, use_safetensors=True, **options)
        except Exception as error:
            log.exception("could not load the embedding %s from %s", token, embedding.source)
            raise AdapterUnavailable(f"could not load the embedding {embedding.name}") from error
        self._tokens[token] = embedding.source
        log.info("loaded the embedding %s as %s", embedding.name, token)

    @staticmethod
    def _load_sdxl_embedding(
        pipeline: Any, token: str, where: str, options: dict[str, Any]
    ) -> None:
        """Both of an SDXL embedding's vector sets under ``token``, each into its own encoder
        (diffusers' two ``load_textual_inversion`` calls); none of them when one fails."""
        # diffusers' own reader: a local file or a Hub download, safetensors only.
        from diffusers.loaders.textual_inversion import load_textual_inversion_state_dicts

        (state,) = load_textual_inversion_state_dicts([where], use_safetensors=True, **options)
        if missing := [key for key, _, _ in _SDXL_ENCODERS if key not in state]:
            raise ValueError(f"not an SDXL embedding: it has no {' or '.join(missing)}")
        loaded: list[tuple[str, str]] = []
        try:
            for key, encoder, tokenizer in _SDXL_ENCODERS:
                pipeline.load_textual_inversion(
                    state[key],  # a tensor read above, from safetensors only
                    token=token,
                    use_safetensors=True,
                    text_encoder=getattr(pipeline, encoder),
                    tokenizer=getattr(pipeline, tokenizer),
                )
                loaded.append((encoder, tokenizer))
        except Exception:
            for encoder, tokenizer in loaded:
                pipeline.unload_textual_inversion(
                    token,
                    text_encoder=getattr(pipeline, encoder),
                    tokenizer=getattr(pipeline, tokenizer),
                )
            raise

    def _unload_embedding(self, pipeline: Any, token: str) -> None:
        if self._family is not Family.SDXL:
            pipeline.unload_textual_inversion(token)
            return
        for _, encoder, tokenizer in _SDXL_ENCODERS:
            pipeline.unload_textual_inversion(
                token,
                text_encoder=getattr(pipeline, encoder),
                tokenizer=getattr(pipeline, tokenizer),
            )

    @staticmethod
    def _forget_partial(pipeline: Any, name: str) -> None:
        """A failed load may leave an adapter half made, in any of the modules it reaches (the
        UNet or FLUX.1's transformer, a text encoder); leave none behind."""
        try:
            if any(name in names for names in pipeline.get_list_adapters().values()):
                pipeline.delete_adapters([name])
        except Exception:
            log.exception("could not clean up after the LoRA %s", name)

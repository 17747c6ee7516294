"""Prompts for the text encoder: weighted pieces and prompts past its window, through compel.

A prompt is read into (text, weight) pieces by ``engine.prompt_syntax`` (the web UI's
``(word:1.3)``). A job whose prompts are plain (no weights) and fit CLIP's window (77 tokens
with the start and end markers) goes to the pipeline as text: diffusers encodes it itself,
so its pictures are exactly what they were before weights existed. Any other job is encoded
by compel, which scales each token's embedding by its weight and, for a long prompt, encodes
windows of at most 75 tokens (split at a sentence, else a phrase, else a word) and joins them.

Jobs whose embeddings span different numbers of windows never share a call
(``windows`` is part of the runners' grouping): padding a one-window prompt to three windows
would add tokens the UNet attends to and change its picture, and an image must not depend on
what it was batched with. Inside one job, the positive and negative prompts are padded to the
same length with empty windows, as compel does it (a ``/recipe`` script does the same).

SDXL reads a prompt with two CLIP encoders side by side: one compel per encoder (the
penultimate hidden states, not normalised, as diffusers takes them), their embeddings joined
on the last axis, plus the second encoder's pooled embedding of the prompt's words (compel
does not weight it; like diffusers it sees the first window only). FLUX.1 reads prompts
as text always: compel has no FLUX path, so its weights are refused
(``engine.tasks.checks.check_family``), and a prompt longer than its T5 encoder reads is
refused too (``PromptReader.check``) rather than silently cut.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Sequence
from typing import Any

import torch
from compel import Compel, ReturnedEmbeddingsType
from compel.prompt_parser import Conjunction, FlattenedPrompt, Fragment

from engine.prompt_syntax import is_plain, parse, plain_text
from engine.protocol import (
    FAMILIES,
    FLUX_MAX_SEQUENCE_LENGTH,
    Family,
    JobSpec,
    family_of_pipeline,
)
from engine.tasks.checks import BadInput

__all__ = ["PromptReader"]

_SPACED_PUNCTUATION = re.compile(r" ([,.;:!?])")

# Each prompt's windows, by tokenizer: a job's prompts are read by several readers (its
# ``Accepted``, the grouping, the call's arguments), and tokenizing is what a reading costs. The
# key holds the tokens added to the tokenizer (textual-inversion embeddings come and go), the
# one part of it that changes; a model unloaded takes its entries with it.
_WINDOWS: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], tuple[str, ...]]] = (
    weakref.WeakKeyDictionary()
)
_MAX_WINDOWS = 1024  # prompts remembered per tokenizer; then it starts again


def _per_image(jobs: Sequence[JobSpec], values: Sequence[Any]) -> list[Any]:
    return [value for job, value in zip(jobs, values, strict=True) for _ in job.seeds]


class PromptReader:
    """compel over one pipeline's tokenizers and text encoders.

    Stable Diffusion 1.x and 2.x have one CLIP text encoder, whose last hidden states (already
    layer-normalised) are the prompt embeddings. SDXL has two, read by one ``Compel`` each
    (``_compels_for``); their embeddings are joined, and the second one's pooled embedding goes
    beside them.

    Families without weighted prompts (``FamilyTraits.weighted_prompts``: FLUX.1) get their
    prompts as text, always; the checks refuse weights for them
    (``engine.tasks.checks.check_family``), and FLUX.1, which takes no negative prompt, gets none.
    """

    def __init__(self, pipeline: Any) -> None:
        self._pipeline = pipeline
        self._family = family_of_pipeline(type(pipeline).__name__) or Family.SD
        self._traits = FAMILIES[self._family]
        self._compels = _compels_for(pipeline) if self._traits.weighted_prompts else ()
        # The first encoder's compel splits the windows (SDXL's two tokenizers share CLIP's
        # vocabulary, so both split alike) and pads the embeddings.
        self._compel = self._compels[0] if self._compels else None
        self._pools = self._family is Family.SDXL
        self._tokenizer = pipeline.tokenizer
        self._window = int(self._tokenizer.model_max_length)
        self._chunks = _WINDOWS.setdefault(self._tokenizer, {})

    def chunks(self, prompt: str) -> tuple[str, ...]:
        """The text of each window a long prompt is split into; ``()`` when it fits one."""
        if self._compel is None:
            return ()
        key = (prompt, tuple(self._tokenizer.added_tokens_encoder.items()))
        known = self._chunks.get(key)
        if known is None:
            pieces = parse(prompt)
            provider = self._compel.conditioning_provider
            ids, _, _ = provider.get_token_ids_and_expand_weights(
                [p.text for p in pieces], [p.weight for p in pieces], device="cpu"
            )
            windows = ids.reshape(-1, self._window).tolist()
            known = (
                tuple(self._window_text(window) for window in windows) if len(windows) > 1 else ()
            )
            if len(self._chunks) >= _MAX_WINDOWS:
                self._chunks.clear()
            self._chunks[key] = known
        return known

    def check(self, job: JobSpec) -> None:
        """``BadInput`` for a prompt this pipeline would silently cut: FLUX.1's T5 reads
        ``FLUX_MAX_SEQUENCE_LENGTH`` tokens and drops the rest (compel cannot window it)."""
        if self._family is not Family.FLUX:
            return
        tokens = len(self._pipeline.tokenizer_2(plain_text(parse(job.prompt))).input_ids)
        if tokens > FLUX_MAX_SEQUENCE_LENGTH:
            raise BadInput(
                f"{self._traits.label} reads at most {FLUX_MAX_SEQUENCE_LENGTH} tokens of a "
                f"prompt and yours is {tokens}; shorten it (the words past that would be "
                "ignored)"
            )

    def windows(self, job: JobSpec) -> int:
        """How many windows ``job``'s embeddings span; 0 when it goes to the pipeline as text.

        Jobs with different answers run in different calls.
        """
        if all(self._as_text(prompt) for prompt in (job.prompt, job.negative_prompt)):
            return 0
        return max(1, *(len(self.chunks(prompt)) for prompt in (job.prompt, job.negative_prompt)))

    def call_arguments(self, jobs: Sequence[JobSpec]) -> dict[str, Any]:
        """The prompts of the call, per image: as text, or as compel's embeddings."""
        if self._compel is None or not any(self.windows(job) for job in jobs):
            texts = {
                "prompt": _per_image(jobs, [plain_text(parse(job.prompt)) for job in jobs]),
                "negative_prompt": _per_image(
                    jobs, [plain_text(parse(job.negative_prompt)) for job in jobs]
                ),
            }
            if not self._traits.negative_prompt:
                del texts["negative_prompt"]
            return texts
        positives, negatives = [], []
        for job in jobs:
            pair = self._padded(
                [self._embeddings(job.prompt), self._embeddings(job.negative_prompt)]
            )
            positives += [pair[0]] * len(job.seeds)
            negatives += [pair[1]] * len(job.seeds)
        # The runners group jobs by ``windows``, so this padding changes nothing; it keeps a
        # call whose jobs differ from failing on mismatched shapes.
        padded = self._padded([*positives, *negatives])
        arguments = {
            "prompt_embeds": torch.cat(padded[: len(positives)]),
            "negative_prompt_embeds": torch.cat(padded[len(positives) :]),
        }
        if self._pools:
            arguments["pooled_prompt_embeds"] = torch.cat(
                _per_image(jobs, [self._pooled(job.prompt) for job in jobs])
            )
            arguments["negative_pooled_prompt_embeds"] = torch.cat(
                _per_image(jobs, [self._pooled(job.negative_prompt) for job in jobs])
            )
        return arguments

    def _as_text(self, prompt: str) -> bool:
        return self._compel is None or (is_plain(parse(prompt)) and not self.chunks(prompt))

    def _embeddings(self, prompt: str) -> torch.Tensor:
        """``(1, tokens, dim)``: the prompt's pieces, weighted, in as many windows as needed;
        SDXL's two encoders' side by side."""
        assert self._compels  # only jobs with windows get here
        # compel's own structures, not its prompt syntax: the pieces' text goes to the
        # tokenizer as it is.
        fragments = [Fragment(piece.text, piece.weight) for piece in parse(prompt)]
        conjunction = Conjunction([FlattenedPrompt(fragments)])
        return torch.cat(
            [c.build_conditioning_tensor_for_conjunction(conjunction)[0] for c in self._compels],
            dim=-1,
        )

    def _padded(self, embeddings: list[torch.Tensor]) -> list[torch.Tensor]:
        """``embeddings`` padded to the longest with windows of the empty prompt."""
        assert self._compel is not None
        empty = torch.cat([c.conditioning_provider.empty_z for c in self._compels], dim=-1)
        return list(self._compel.pad_conditioning_tensors_to_same_length(embeddings, empty))

    def _pooled(self, prompt: str) -> torch.Tensor:
        """SDXL's second encoder's pooled embedding of the prompt's words (unweighted, first
        window), as diffusers makes it from text."""
        provider = self._compels[-1].conditioning_provider
        return provider.get_pooled_embeddings([plain_text(parse(prompt))])

    def _window_text(self, ids: list[int]) -> str:
        """A window's words: its tokens between the start marker and the first end marker."""
        start = 1 if ids and ids[0] == self._tokenizer.bos_token_id else 0
        end = ids.index(self._tokenizer.eos_token_id, start)
        # CLIP's decoder puts a space before punctuation ("snow , golden"); people do not.
        return _SPACED_PUNCTUATION.sub(r"\1", str(self._tokenizer.decode(ids[start:end])).strip())


def _compels_for(pipeline: Any) -> tuple[Compel, ...]:
    """compel for each of the pipeline's text encoders, never truncating (long prompts get
    windows).

    SDXL gets one ``Compel`` per encoder rather than compel's list form, which prints a
    deprecation notice (on the engine's stdout) and cannot pad embeddings to the same length.
    """
    if getattr(pipeline, "text_encoder_2", None) is not None:
        # diffusers' SDXL takes both encoders' penultimate hidden states, not normalised.
        return tuple(
            Compel(
                tokenizer=tokenizer,
                text_encoder=encoder,
                returned_embeddings_type=ReturnedEmbeddingsType.PENULTIMATE_HIDDEN_STATES_NON_NORMALIZED,
                truncate_long_prompts=False,
            )
            for tokenizer, encoder in (
                (pipeline.tokenizer, pipeline.text_encoder),
                (pipeline.tokenizer_2, pipeline.text_encoder_2),
            )
        )
    return (
        Compel(
            tokenizer=pipeline.tokenizer,
            text_encoder=pipeline.text_encoder,
            returned_embeddings_type=ReturnedEmbeddingsType.LAST_HIDDEN_STATES_NORMALIZED,
            truncate_long_prompts=False,
        ),
    )

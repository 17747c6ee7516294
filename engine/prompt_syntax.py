"""Weighted prompts as the AUTOMATIC1111 web UI writes them, read into (text, weight) pieces.

``(word)`` makes ``word`` 1.1 times as strong, ``[word]`` 1/1.1 as strong, ``(word:1.3)`` 1.3
times; brackets nest and their factors multiply (``((word))`` is 1.21). ``\\(``, ``\\)``,
``\\[``, ``\\]`` and ``\\\\`` are the characters themselves. Brackets with nothing to weight
(``()``, ``(:1.3)``) weigh nothing and vanish, as in the web UI. The engine turns the pieces
into embeddings with compel (``engine.tasks.prompt_embeddings``); a ``/recipe`` script carries
the same pieces.

Where the web UI silently reads a mistake literally (an unclosed bracket weights the rest of the
prompt; ``(cat:abc)`` weights the text “cat:abc”), this module refuses it, naming the place:
a student sees what went wrong instead of a picture that quietly ignores their intent. So the
bot refuses such a prompt before a job exists, and the engine checks it again. The web UI's
prompt editing (``[cat:dog:0.5]``) is refused the same way; ``BREAK`` and ``|`` are plain words.

``<lora:name:0.8>`` applies the LoRA ``name`` at weight 0.8 (1 when the weight is left out), as
in the web UI: ``loras`` reads them, and ``parse`` leaves them out of the text the encoder sees.
A textual-inversion token such as ``<my-style>`` is an ordinary word of the prompt.

Standard library only: the bot imports this module beside ``engine.protocol``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.protocol import BOUNDS, number_text

UP = 1.1  # what ``(word)`` multiplies by; ``[word]`` divides by it
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)")
# A weight: a colon, a number (spaces allowed around it) and the closing bracket.
_WEIGHT = re.compile(r":\s*([^()\[\]\\:]*?)\s*\)")
_SNIPPET = 12  # characters of the prompt quoted on each side of a mistake
LORA_OPEN = "<lora:"
# ``<lora:name>`` or ``<lora:name:weight>``; what may sit between the colons is checked after.
_LORA = re.compile(r"<lora:([^:<>]*)(?::([^:<>]*))?>")
# An adapter's name: what admins may call one and prompts write (no spaces, colons or brackets).
ADAPTER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}")


@dataclass(frozen=True)
class Piece:
    """A run of the prompt's text and how strongly the model should attend to it."""

    text: str
    weight: float = 1.0


class PromptSyntaxError(ValueError):
    """A prompt whose brackets or weights cannot be read; ``reason`` completes “The prompt …”.

    ``position`` is the 1-based character the mistake is at.
    """

    def __init__(self, reason: str, position: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.position = position


@dataclass(frozen=True)
class LoraUse:
    """A ``<lora:name:weight>`` of a prompt."""

    name: str
    weight: float


def loras(prompt: str) -> tuple[LoraUse, ...]:
    """The prompt's ``<lora:…>`` tokens in order; ``PromptSyntaxError`` when one cannot be read
    (no closing “>”, a bad name, a weight that is not a number or outside
    ``BOUNDS.lora_weight``) or a LoRA is named twice."""
    found: list[LoraUse] = []
    index = prompt.find(LORA_OPEN)
    while index >= 0:
        use, end = _read_lora(prompt, index)
        if any(other.name == use.name for other in found):
            raise PromptSyntaxError(
                f"names the LoRA “{use.name}” twice (at character {index + 1}); give it once, "
                "with one weight.",
                index + 1,
            )
        found.append(use)
        index = prompt.find(LORA_OPEN, end)
    return tuple(found)


def without_loras(prompt: str) -> str:
    """The prompt with its ``<lora:…>`` tokens taken out (assumed readable: see ``loras``)."""
    return _LORA.sub("", prompt)


def lora_token(name: str, weight: float) -> str:
    """How a prompt writes a LoRA: ``<lora:name:0.8>``."""
    return f"<lora:{name}:{number_text(weight)}>"


def _read_lora(prompt: str, index: int) -> tuple[LoraUse, int]:
    """The ``<lora:…>`` that starts at ``index``, and where it ends."""
    match = _LORA.match(prompt, index)
    if match is None:
        raise PromptSyntaxError(
            f"has a “{LORA_OPEN}” at character {index + 1} ({_around(prompt, index)}) that is "
            "not closed with “>”: write <lora:name:0.8>.",
            index + 1,
        )
    name, weight_text = match.group(1).strip(), match.group(2)
    if not ADAPTER_NAME.fullmatch(name):
        raise PromptSyntaxError(
            f"has a LoRA without a readable name at character {index + 1} "
            f"({_around(prompt, index)}): write <lora:name:0.8>.",
            index + 1,
        )
    weight = BOUNDS.lora_weight.default
    if weight_text is not None:
        weight_text = weight_text.strip()
        if not _NUMBER.fullmatch(weight_text) or float(weight_text) not in BOUNDS.lora_weight:
            raise PromptSyntaxError(
                f"gives the LoRA “{name}” the weight “{weight_text}” at character {index + 1}; "
                f"LoRA weights go from {number_text(BOUNDS.lora_weight.min)} to "
                f"{number_text(BOUNDS.lora_weight.max)} (0 turns it off, 1 is full strength).",
                index + 1,
            )
        weight = float(weight_text)
    return LoraUse(name, weight), match.end()


def parse(prompt: str) -> tuple[Piece, ...]:
    """``prompt`` as pieces of equal weight, in order, neighbours of equal weight merged.

    Raises ``PromptSyntaxError`` on an unbalanced bracket, a weight that is not a number or is
    outside ``BOUNDS.prompt_weight``, the web UI's prompt editing, or a ``<lora:…>`` that does
    not read. ``<lora:…>`` tokens are not text: they are left out of the pieces.
    """
    pieces: list[list[object]] = []  # [text, weight], weights multiplied as brackets close
    open_brackets: list[tuple[str, int, int]] = []  # (bracket, where, first piece inside)
    text: list[str] = []  # characters of the piece being read

    def flush() -> None:
        if text:
            pieces.append(["".join(text), 1.0])
            text.clear()

    def close(index: int, factor: float) -> None:
        flush()
        _, _, first = open_brackets.pop()
        for piece in pieces[first:]:
            piece[1] = float(piece[1]) * factor  # type: ignore[arg-type]  # [str, float] pairs

    index = 0
    while index < len(prompt):
        char = prompt[index]
        if prompt.startswith(LORA_OPEN, index):
            index = _read_lora(prompt, index)[1]
            continue
        if char == "\\" and index + 1 < len(prompt) and prompt[index + 1] in "()[]\\":
            text.append(prompt[index + 1])
            index += 2
            continue
        if char in "([":
            flush()
            open_brackets.append((char, index, len(pieces)))
        elif char == ":" and open_brackets and open_brackets[-1][0] == "[":
            raise PromptSyntaxError(
                f"uses “:” inside “[…]” at character {index + 1} ({_around(prompt, index)}): "
                "that is the web UI's prompt editing, which this bot does not do. Write "
                "(word:0.8) to weaken a word.",
                index + 1,
            )
        elif char == ":" and open_brackets and open_brackets[-1][0] == "(":
            weight = _WEIGHT.match(prompt, index)
            if weight is None:  # no “:number)” follows: the colon is text, as in the web UI
                text.append(char)
                index += 1
                continue
            at = weight.start(1) + 1 if weight.group(1) else weight.end()  # 1-based
            if not _NUMBER.fullmatch(weight.group(1)):
                raise PromptSyntaxError(
                    f"has a weight that is not a number at character {at} "
                    f"({_around(prompt, index)}): after “:” comes a number such as 1.3, then "
                    "“)”; a colon meant as text goes outside the brackets.",
                    at,
                )
            value = float(weight.group(1))
            if value not in BOUNDS.prompt_weight:
                raise PromptSyntaxError(
                    f"has the weight {weight.group(1)} at character {at} "
                    f"({_around(prompt, index)}); weights go from "
                    f"{number_text(BOUNDS.prompt_weight.min)} to "
                    f"{number_text(BOUNDS.prompt_weight.max)} (1 leaves a word as it is).",
                    at,
                )
            close(index, value)
            index = weight.end()
            continue
        elif char in ")]":
            opener = "(" if char == ")" else "["
            if not open_brackets or open_brackets[-1][0] != opener:
                _stray(prompt, index, open_brackets)
            close(index, UP if char == ")" else 1 / UP)
        else:
            text.append(char)
        index += 1
    if open_brackets:
        _unclosed(prompt, *open_brackets[-1][:2])
    flush()
    return _merged(pieces)


def is_plain(pieces: tuple[Piece, ...]) -> bool:
    """Whether every piece has weight 1: the pipeline can read the text as it is."""
    return all(piece.weight == 1.0 for piece in pieces)


def plain_text(pieces: tuple[Piece, ...]) -> str:
    """The text of the pieces without their weights (escapes and brackets gone)."""
    return "".join(piece.text for piece in pieces)


def _merged(pieces: list[list[object]]) -> tuple[Piece, ...]:
    merged: list[Piece] = []
    for text, weight in pieces:
        assert isinstance(text, str) and isinstance(weight, float)
        if merged and merged[-1].weight == weight:
            merged[-1] = Piece(merged[-1].text + text, weight)
        elif text:
            merged.append(Piece(text, weight))
    return tuple(merged) or (Piece(""),)


def _around(prompt: str, index: int) -> str:
    """The prompt near ``index``, quoted, with “…” where it was cut."""
    start, end = max(0, index - _SNIPPET), min(len(prompt), index + _SNIPPET + 1)
    return f"“{'…' if start else ''}{prompt[start:end]}{'…' if end < len(prompt) else ''}”"


def _unclosed(prompt: str, bracket: str, index: int) -> None:
    closer = ")" if bracket == "(" else "]"
    raise PromptSyntaxError(
        f"has a “{bracket}” at character {index + 1} ({_around(prompt, index)}) that is never "
        f"closed: close it with “{closer}”, or write \\{bracket} for the character itself.",
        index + 1,
    )


def _stray(prompt: str, index: int, open_brackets: list[tuple[str, int, int]]) -> None:
    char = prompt[index]
    if open_brackets:
        bracket, where, _ = open_brackets[-1]
        expected = ")" if bracket == "(" else "]"
        reason = (
            f"closes the “{bracket}” at character {where + 1} with “{char}” at character "
            f"{index + 1} ({_around(prompt, index)}): close it with “{expected}”."
        )
    else:
        reason = (
            f"has a “{char}” at character {index + 1} ({_around(prompt, index)}) that closes "
            f"nothing: remove it, or write \\{char} for the character itself."
        )
    raise PromptSyntaxError(reason, index + 1)

"""The web UI's prompt syntax, read the way AUTOMATIC1111 reads it, mistakes refused."""

from __future__ import annotations

import pytest

from engine.prompt_syntax import (
    LoraUse,
    Piece,
    PromptSyntaxError,
    is_plain,
    loras,
    parse,
    plain_text,
)

UP, DOWN = 1.1, 1 / 1.1


def weights(prompt: str) -> list[tuple[str, float]]:
    return [(piece.text, round(piece.weight, 4)) for piece in parse(prompt)]


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("a cat on a hill", [("a cat on a hill", 1.0)]),
        ("a (cat:1.3) on a hill", [("a ", 1.0), ("cat", 1.3), (" on a hill", 1.0)]),
        ("(cat)", [("cat", UP)]),
        ("[cat]", [("cat", round(DOWN, 4))]),
        # Nesting multiplies, as in the web UI.
        ("((cat))", [("cat", 1.21)]),
        ("[[cat]]", [("cat", round(DOWN * DOWN, 4))]),
        ("(a (b:1.2) c:1.5)", [("a ", 1.5), ("b", 1.8), (" c", 1.5)]),
        ("((cat:1.2))", [("cat", 1.32)]),
        (
            "(masterpiece, best quality:1.2), cat",
            [("masterpiece, best quality", 1.2), (", cat", 1)],
        ),
        ("(cat : 1.2 )", [("cat ", 1.2)]),
        ("(cat:.5)", [("cat", 0.5)]),
        ("(cat:0)", [("cat", 0.0)]),
        # Escapes are the characters themselves.
        (r"a \(cat\) and \[dog\]", [("a (cat) and [dog]", 1.0)]),
        (r"a \\(cat)", [("a \\", 1.0), ("cat", UP)]),
        (r"a \ b", [("a \\ b", 1.0)]),
        # Weights without a word, and empty brackets, weigh nothing and vanish.
        ("a (:1.3) cat", [("a  cat", 1.0)]),
        ("a () [] cat", [("a   cat", 1.0)]),
        # A colon outside brackets, or followed by more text before the weight, is text.
        ("time: 5pm", [("time: 5pm", 1.0)]),
        ("(a:b:1.2)", [("a:b", 1.2)]),
        # Neighbours of equal weight join.
        ("(a)(b)", [("ab", UP)]),
        ("", [("", 1.0)]),
        ("BREAK a|b", [("BREAK a|b", 1.0)]),  # the web UI's BREAK and | are plain words here
    ],
)
def test_reads_what_web_ui_users_write(prompt: str, expected: list[tuple[str, float]]) -> None:
    assert weights(prompt) == [(text, round(weight, 4)) for text, weight in expected]


@pytest.mark.parametrize(
    ("prompt", "position", "says"),
    [
        ("a (cat:abc) here", 8, "a weight that is not a number at character 8"),
        ("(cat:1.2.3)", 6, "not a number"),
        ("(cat:)", 6, "not a number"),
        ("(photo: a cat)", 9, "a colon meant as text goes outside the brackets"),
        ("a (cat on a hill", 3, "a “(” at character 3 (“a (cat on a hil…”) that is never closed"),
        ("a [cat", 3, "a “[” at character 3"),
        ("((cat)", 1, "never closed"),
        ("a cat)", 6, "a “)” at character 6 (“a cat)”) that closes nothing"),
        ("a cat]", 6, "write \\] for the character itself"),
        ("(cat]", 5, "closes the “(” at character 1 with “]” at character 5"),
        ("[cat:dog:0.5]", 5, "prompt editing"),
        ("(cat:2.5)", 6, "the weight 2.5 at character 6"),
        ("(cat:-1)", 6, "weights go from 0 to 2"),
    ],
)
def test_refuses_mistakes_naming_the_place(prompt: str, position: int, says: str) -> None:
    with pytest.raises(PromptSyntaxError) as refused:
        parse(prompt)
    assert refused.value.position == position
    assert says in refused.value.reason


def test_a_long_prompt_is_quoted_around_the_mistake_only() -> None:
    prompt = "a very long description of a landscape (with hills:x) and more words after it"
    with pytest.raises(PromptSyntaxError) as refused:
        parse(prompt)
    reason = refused.value.reason
    assert "(“… (with hills:x) and more …”)" in reason and prompt not in reason


def test_plain_pieces_and_their_text() -> None:
    assert is_plain(parse(r"a \(cat\)")) and plain_text(parse(r"a \(cat\)")) == "a (cat)"
    assert not is_plain(parse("a (cat)"))
    assert plain_text(parse("a (cat:1.3) (:2)")) == "a cat "
    assert parse("x") == (Piece("x"),)


def test_loras_are_read_in_order_and_left_out_of_the_text() -> None:
    prompt = "a (cat:1.2) <lora:ink:0.8>, <lora:film> at dusk"
    assert loras(prompt) == (LoraUse("ink", 0.8), LoraUse("film", 1.0))
    assert plain_text(parse(prompt)) == "a cat ,  at dusk"


@pytest.mark.parametrize(
    ("prompt", "says"),
    [
        ("a <lora:ink:2.5>", "the weight “2.5” at character 3; LoRA weights go from 0 to 2"),
        ("a <lora:ink:x>", "the weight “x”"),
        ("a <lora:ink", "not closed with “>”"),
        ("a <lora: :1>", "without a readable name"),
        ("<lora:ink:1> <lora:ink:0.5>", "names the LoRA “ink” twice"),
    ],
)
def test_lora_mistakes_are_refused(prompt: str, says: str) -> None:
    with pytest.raises(PromptSyntaxError) as refused:
        loras(prompt)
        parse(prompt)
    assert says in refused.value.reason

"""Secrets never reach the log, and stored file names cannot leave their folders."""

import logging

import pytest

from bot.jobs.image_store import ImageStore
from bot.jobs.inputs import InputStore
from bot.logging_setup import RedactSecrets

TOKEN = "MTIzNDU2Nzg5.secret.token-value"


def test_the_token_is_redacted_from_messages_arguments_and_tracebacks():
    record = logging.LogRecord(
        "discord", logging.ERROR, __file__, 1, "login with %s", (TOKEN,), None
    )
    try:
        raise RuntimeError(f"bad token {TOKEN}")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    assert RedactSecrets([TOKEN]).filter(record)
    formatted = logging.Formatter().format(record)
    assert TOKEN not in formatted
    assert "login with [redacted]" in formatted and "bad token [redacted]" in formatted


def test_records_without_secrets_are_left_alone():
    record = logging.LogRecord("bot", logging.INFO, __file__, 1, "job %d done", (5,), None)
    assert RedactSecrets([TOKEN]).filter(record)
    assert record.getMessage() == "job 5 done" and record.args == (5,)


@pytest.mark.parametrize("name", ["../escape.png", "/etc/passwd", "2026-01-01/../../x.png"])
def test_image_store_refuses_paths_outside_its_folder(tmp_path, name):
    store = ImageStore(tmp_path / "images")
    with pytest.raises(ValueError, match="outside the image folder"):
        store.resolve(name)


@pytest.mark.parametrize("ref", ["../x.png", "ab/../../x.png", "/etc/passwd", "ab/notahash.png"])
def test_input_store_accepts_only_its_own_references(tmp_path, ref):
    with pytest.raises(ValueError):
        InputStore(tmp_path / "inputs").resolve(ref)

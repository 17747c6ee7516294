"""In-memory files for Discord release their bytes when their block ends."""

from __future__ import annotations

import gc

import pytest

from bot.ui.attachments import InMemoryFiles


def test_buffers_are_closed_on_leaving_even_after_discord_py_closed_its_files():
    gc.disable()  # the point is what happens without the cyclic collector
    try:
        with InMemoryFiles() as uploads:
            files = [uploads.file(b"x" * 1000, "a.png"), uploads.file(b"y", "b.png", spoiler=True)]
            for file in files:
                file.close()  # what discord.py does after a request: it leaves the cycle
            assert not any(file.fp.closed for file in files)
        assert all(file.fp.closed for file in files)
        assert files[1].filename == "SPOILER_b.png"
    finally:
        gc.enable()


def test_buffers_are_closed_when_the_send_fails():
    with pytest.raises(RuntimeError), InMemoryFiles() as uploads:
        file = uploads.file(b"x", "a.png")
        raise RuntimeError("Discord refused")
    assert file.fp.closed

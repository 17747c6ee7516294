"""One private message per admin command, edited as the work goes on."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

import discord

from bot.ui.interactions import is_expired_token, reply

log = logging.getLogger(__name__)


async def say(interaction: discord.Interaction, content: str) -> None:
    """Show ``content`` in the command's answer: the first answer, else an edit of it.

    Long waits (unloading after a queue drains) can outlive the interaction token; then the
    words go where ``bot.interactions.reply`` sends them, so they are not lost.
    """
    if not interaction.response.is_done():
        await interaction.response.send_message(content, ephemeral=True)
        return
    try:
        await interaction.edit_original_response(content=content)
    except discord.HTTPException as error:
        if not is_expired_token(error):
            raise
        await reply(interaction, content, ephemeral=True)


@contextlib.asynccontextmanager
async def ticking(
    interaction: discord.Interaction, every_s: float, text: Callable[[float], str]
) -> AsyncIterator[None]:
    """Edit the answer every ``every_s`` seconds with ``text(elapsed)`` while the body runs.

    The engine reports no progress while it loads a model; a clock at least shows that the
    bot is still waiting on it and for how long.
    """
    started = time.monotonic()

    async def tick() -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                await interaction.edit_original_response(content=text(time.monotonic() - started))
            except discord.HTTPException as error:
                # A missed tick is harmless; the outcome is sent (or falls back) on its own.
                log.debug("could not show progress: %s", error)

    task = asyncio.create_task(tick(), name=f"progress-{interaction.id}")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

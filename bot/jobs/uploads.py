"""An inpainting job's attachments: downloaded, checked, fitted and named by content.

Nothing is written here: the files are stored only once the job row (and its limits) passed,
so a refused job leaves nothing on disk.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import discord

from bot.jobs import inputs
from bot.jobs.inputs import InputStore
from bot.jobs.job_request import Uploads
from bot.ui.errors import UserInputError


@dataclass(frozen=True)
class ReadUploads:
    """The job fields the uploads fill in, and the files to store once the job exists."""

    fields: dict[str, Any]
    files: list[tuple[str, bytes]]


async def download(attachment: discord.Attachment, what: str) -> bytes:
    """The attachment's bytes, with a user-facing error when Discord does not give them."""
    try:
        return await attachment.read()
    except discord.HTTPException:
        raise UserInputError(
            f"I could not download the {what} from Discord; please try again."
        ) from None


async def read_uploads(uploads: Uploads, store: InputStore) -> ReadUploads:
    """Download, check and fit the picture and mask; name them as they would be stored."""
    image_data = await download(uploads.image, "image")
    mask_data = await download(uploads.mask, "mask") if uploads.mask is not None else None
    fitted = await asyncio.to_thread(
        inputs.prepare_inputs, image_data, mask_data, uploads.mask_prompt
    )
    files = [await store.encode(fitted.image)]
    if fitted.mask is not None:
        files.append(await store.encode(fitted.mask))
    width, height = fitted.size
    fields = {
        "image_ref": files[0][0],
        "mask_ref": files[1][0] if len(files) > 1 else None,
        "mask_prompt": uploads.mask_prompt,
        "width": width,
        "height": height,
    }
    return ReadUploads(fields, files)

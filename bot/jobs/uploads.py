"""An inpainting or image-to-image job's attachments: downloaded, checked, fitted and named by
content.

Nothing is written here: the files are stored only once the job row (and its limits) passed,
so a refused job leaves nothing on disk. Decoding runs in the decoder's worker processes,
bounded in CPU time, never in the threads that save other users' results.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import discord

from bot.jobs.decoding import PictureDecoder
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


async def read_uploads(uploads: Uploads, decoder: PictureDecoder) -> ReadUploads:
    """Download the picture and mask, then check, fit and name them in ``decoder``'s workers."""
    image_data = await download(uploads.image, "image")
    mask_data = await download(uploads.mask, "mask") if uploads.mask is not None else None
    decoded = await decoder.decode(
        image_data, mask_data, uploads.mask_prompt, whole=not uploads.repaint_area
    )
    files = decoded.files
    width, height = decoded.size
    fields = {
        "image_ref": files[0][0],
        "mask_ref": files[1][0] if len(files) > 1 else None,
        "mask_prompt": uploads.mask_prompt,
        "width": width,
        "height": height,
    }
    return ReadUploads(fields, files)

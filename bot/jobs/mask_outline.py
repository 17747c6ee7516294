"""The extra picture under an inpainting result: the input with the repainted area outlined.

The engine draws it (and runs it through the safety gate, since it shows the user's upload;
it is blurred too when the job's images are, since they keep the upload outside the mask);
this module only names it and says what it is. A blurred one's original waits for a
moderator's card like a flagged image's (``bot.jobs.reviews``).
"""

from __future__ import annotations

from bot.jobs.upload_fit import UploadFile
from bot.store.models import Job
from bot.ui import render
from engine.protocol import Result

OUTLINE_NAME = "mask_outline.png"
# Said of a blurred outline; a moderator's release takes it out of the caption.
OUTLINE_BLURRED = (
    "; it is blurred and hidden: the safety checker flagged it or your images (outside the "
    "repainted area they show the same picture)"
)


def outline_upload(result: Result) -> UploadFile | None:
    """The outline picture as a file to post, or None when the result has none."""
    overlay = result.mask_overlay
    if overlay is None:
        return None
    return UploadFile(OUTLINE_NAME, overlay.png, overlay.nsfw)


def outline_note(job: Job, result: Result) -> str:
    """One caption line telling what the outline picture shows."""
    overlay = result.mask_overlay
    if overlay is None:
        return ""
    line = f"🖍️ `{OUTLINE_NAME}`: your image with the repainted area outlined"
    if job.mask_prompt:
        line += f" (found from the words {render.quote_prompt(job.mask_prompt, 100)})"
    if overlay.nsfw:
        line += OUTLINE_BLURRED
    return line + "."

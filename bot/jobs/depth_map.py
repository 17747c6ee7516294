"""The extra picture under a depth-to-image result: the depth the images were conditioned on.

The engine estimates and draws it (and runs it through the safety gate, since it is made from
the user's upload); this module only names it and says what it is.
"""

from __future__ import annotations

from bot.jobs.upload_fit import UploadFile
from engine.protocol import Result

DEPTH_MAP_NAME = "depth_map.png"


def depth_map_upload(result: Result) -> UploadFile | None:
    """The depth map as a file to post, or None when the result has none."""
    depth = result.depth_map
    if depth is None:
        return None
    return UploadFile(DEPTH_MAP_NAME, depth.png, depth.nsfw)


def depth_map_note(result: Result) -> str:
    """One caption line telling what the depth map shows."""
    depth = result.depth_map
    if depth is None:
        return ""
    line = (
        f"🗺️ `{DEPTH_MAP_NAME}`: the depth the model estimated from your picture and kept "
        "(light is near, dark is far)"
    )
    if depth.nsfw:
        line += "; the safety checker flagged it, so it is blurred and hidden"
    return line + "."

"""What the stub recorded about the requests it served."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .models.entities import Upload


@dataclass(frozen=True)
class RecordedRequest:
    """One HTTP request the bot made, with the stub's answer.

    ``path`` is relative to the API base (``/channels/1/messages``) for REST routes and the
    full path otherwise. ``known`` is false for routes the stub does not implement.
    """

    method: str
    path: str
    query: dict[str, str]
    json: Any
    files: tuple[Upload, ...]
    status: int
    known: bool
    error: dict[str, Any] | None = None
    injected: bool = False

    def describe(self) -> str:
        """``METHOD path -> status`` plus the error, for failure messages."""
        text = f"{self.method} {self.path} -> {self.status}"
        if self.injected:
            text += " (injected fault)"
        if self.error:
            text += f" {self.error}"
        return text

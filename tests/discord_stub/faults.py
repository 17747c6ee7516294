"""Fault injection: make the next matching requests fail the way Discord fails.

A fault answers *instead of* the route, so the bot sees exactly one failed attempt per
injected failure and discord.py's own retry logic (sleep and retry on 5xx, ``retry_after`` on
429) is what gets exercised.
"""

from __future__ import annotations

import math
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .responses import json_response

_TOKEN = re.compile(r"(\{[^/{}]+\}|\*\*|\*)")


def compile_route_pattern(pattern: str | re.Pattern[str]) -> re.Pattern[str]:
    """A regex for a route pattern.

    ``{name}`` and ``*`` match one path segment, ``**`` any run of segments, everything else
    literally: ``/channels/{channel_id}/messages``, ``/webhooks/*/*/messages/@original``,
    ``/interactions/**``. A compiled regex is used as is (with ``fullmatch``).
    """
    if isinstance(pattern, re.Pattern):
        return pattern
    parts = []
    for piece in _TOKEN.split(pattern):
        if piece == "**":
            parts.append(".*")
        elif piece == "*" or (piece.startswith("{") and piece.endswith("}")):
            parts.append("[^/]+")
        else:
            parts.append(re.escape(piece))
    return re.compile("".join(parts))


@dataclass
class Fault:
    """One injected failure rule; ``hits`` counts the requests it answered."""

    method: str
    pattern: re.Pattern[str]
    status: int
    remaining: int
    retry_after: float = 0.05
    is_global: bool = False
    code: int = 0
    message: str | None = None
    # Close the connection instead of answering, as a dropped connection would (discord.py
    # raises aiohttp.ServerDisconnectedError and does not retry): "before" the request takes
    # effect, or "after" it (the message is made, only the answer is lost).
    drop: str = ""
    hits: int = 0
    served_at: list[float] = field(default_factory=list)

    def matches(self, method: str, path: str) -> bool:
        """Whether this rule applies to ``method path`` and has uses left."""
        return (
            self.remaining > 0
            and self.method in ("*", method.upper())
            and self.pattern.fullmatch(path) is not None
        )

    def response(self) -> web.Response:
        """The error response, with rate-limit headers for 429 like Discord sends them."""
        if self.status == 429:
            body: dict[str, Any] = {
                "message": self.message or "You are being rate limited.",
                "retry_after": self.retry_after,
                "global": self.is_global,
                "code": self.code,
            }
            headers = {
                "Retry-After": str(math.ceil(self.retry_after)),
                "X-RateLimit-Limit": "5",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": f"{time.time() + self.retry_after:.3f}",
                "X-RateLimit-Reset-After": f"{self.retry_after:.3f}",
                "X-RateLimit-Bucket": "stub-bucket",
                "X-RateLimit-Scope": "global" if self.is_global else "user",
                # discord.py treats a 429 without Via as a Cloudflare ban and does not retry.
                "Via": "1.1 google",
            }
            if self.is_global:
                headers["X-RateLimit-Global"] = "true"
            return json_response(body, status=429, headers=headers)
        default = f"{self.status}: {'Internal Server Error' if self.status >= 500 else 'Error'}"
        body = {"message": self.message or default, "code": self.code}
        return json_response(body, status=self.status)


@dataclass
class Chaos:
    """Random transient failures on a fraction of REST calls (soak tests): seeded, so a run
    can be repeated; 429s carry a short ``retry_after`` and 5xx are retried by discord.py."""

    rate: float
    statuses: tuple[int, ...]
    random: random.Random
    hits: int = 0
    # Also close the connection on this fraction of the requests that show a job (message
    # sends and edits, interaction answers), half before and half after they take effect.
    drop_rate: float = 0.0
    drops: int = 0

    def roll(self, method: str, path: str) -> Fault | None:
        if path.startswith("/gateway"):
            return None
        pattern = re.compile(re.escape(path))
        if self.drop_rate and _SHOWS_A_JOB.match(path) and self.random.random() < self.drop_rate:
            self.drops += 1
            return Fault(method.upper(), pattern, 0, 0, drop=self.random.choice(_DROPS))
        if self.random.random() >= self.rate:
            return None
        self.hits += 1
        status = self.random.choice(self.statuses)
        return Fault(method.upper(), pattern, status, 0)


_SHOWS_A_JOB = re.compile(r"/(channels/\d+/messages|webhooks/|interactions/)")
_DROPS = ("before", "after")


class FaultInjector:
    """The active fault rules, consumed first-come first-served."""

    def __init__(self) -> None:
        self.faults: list[Fault] = []
        self.chaos: Chaos | None = None

    def add(
        self,
        method: str,
        route: str | re.Pattern[str],
        *,
        status: int,
        times: int,
        retry_after: float,
        is_global: bool,
        code: int,
        message: str | None,
        drop: str = "",
    ) -> Fault:
        """Register a rule; see :meth:`DiscordStub.fail_next`."""
        fault = Fault(
            method.upper(),
            compile_route_pattern(route),
            status,
            times,
            retry_after,
            is_global,
            code,
            message,
            drop,
        )
        self.faults.append(fault)
        return fault

    def take(self, method: str, path: str) -> Fault | None:
        """The first rule matching this request, with one use consumed."""
        for fault in self.faults:
            if fault.matches(method, path):
                fault.remaining -= 1
                fault.hits += 1
                fault.served_at.append(time.monotonic())
                return fault
        return self.chaos.roll(method, path) if self.chaos else None

    def clear(self) -> None:
        """Drop all rules."""
        self.faults.clear()

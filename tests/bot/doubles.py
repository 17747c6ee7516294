"""Doubles for discord.py's and the project's classes, held to the real ones' shapes.

A double made with ``create_autospec(..., spec_set=True)`` refuses an attribute the real class
does not have and a call its signature would refuse, so a renamed method or a typo fails the
test that uses it. A hand-written double for a Protocol is checked against it by mypy: this
file is in ``[tool.mypy] files``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast
from unittest import mock

import aiohttp
import discord

from bot.features.admin._engine_ops import ModelEngine
from bot.jobs.engine_client import EngineClient
from engine.protocol import JobKind, LoadedModel, ModelRef, ModelsReply

MB = 1024 * 1024


def member(
    user_id: int, name: str, *, roles: Sequence[str] = (), manage_guild: bool = False
) -> discord.Member:
    """A guild member with these roles (by name) and, or not, Manage Server."""
    double: Any = mock.create_autospec(discord.Member, instance=True, spec_set=True)
    double.id = user_id
    double.display_name = name
    double.guild_permissions = discord.Permissions(manage_guild=manage_guild)
    double.roles = []
    for role_name in roles:
        role = mock.create_autospec(discord.Role, instance=True, spec_set=True)
        role.name = role_name
        double.roles.append(role)
    return cast(discord.Member, double)


def interaction_by(
    user: discord.Member,
    *,
    channel_id: int = 1,
    guild_id: int = 10,
    locale: discord.Locale = discord.Locale.american_english,
) -> discord.Interaction:
    """An interaction from ``user`` in a guild channel, in ``locale``."""
    double: Any = mock.create_autospec(discord.Interaction, instance=True, spec_set=True)
    double.user = user
    double.channel_id = channel_id
    double.guild_id = guild_id
    double.locale = locale
    return cast(discord.Interaction, double)


def http_response(status: int, reason: str) -> aiohttp.ClientResponse:
    """What discord.HTTPException reads of a failed request's response."""
    double: Any = mock.create_autospec(aiohttp.ClientResponse, instance=True, spec_set=True)
    double.status = status
    double.reason = reason
    return cast(aiohttp.ClientResponse, double)


def engine_client(**facts: object) -> EngineClient:
    """An EngineClient that says ``facts`` (``ready=True, pid=99``, ...) and does nothing.

    Spec'd from an instance, so the attributes its ``__init__`` sets (``restarts``,
    ``last_ready``) are there and a misspelt one is refused.
    """
    double: Any = mock.create_autospec(EngineClient(), spec_set=True)
    for name, value in facts.items():
        setattr(double, name, value)
    return cast(EngineClient, double)


class ScriptedModels:
    """A ModelEngine that keeps a set of loaded models, as the engine's registry does."""

    def __init__(self) -> None:
        self.ready = True
        self.loaded: dict[ModelRef, LoadedModel] = {}
        self.hang_listing = False
        self.requests: list[tuple[str, str]] = []

    def _reply(self, ok: bool = True, message: str = "") -> ModelsReply:
        return ModelsReply(1, ok, message, tuple(self.loaded.values()))

    async def list_models(self) -> ModelsReply:
        if self.hang_listing:
            await asyncio.sleep(60)
        return self._reply()

    async def load_model(
        self, model: ModelRef, kind: JobKind, *, replicas: int | None = None
    ) -> ModelsReply:
        self.requests.append(
            ("load", model.name if replicas is None else f"{model.name}@{replicas}")
        )
        if model.source == "broken":
            return self._reply(False, f"could not load the model {model.name}")
        self.loaded[model] = LoadedModel(model, kind, 3 * MB)
        return self._reply(message=f"{model.name} is loaded")

    async def unload_model(self, model: ModelRef, *, adapter: str = "") -> ModelsReply:
        if adapter:
            self.requests.append(("unload adapter", adapter))
            return self._reply(True)
        self.requests.append(("unload", model.name))
        # As the engine: the exact reference, else every model with that name.
        found = (
            [model] if model in self.loaded else [r for r in self.loaded if r.name == model.name]
        )
        for ref in found:
            del self.loaded[ref]
        return self._reply(bool(found))


# What mypy holds the hand-written double to: a renamed or re-shaped request fails here.
_SCRIPTED_MODELS_IS_A: type[ModelEngine] = ScriptedModels

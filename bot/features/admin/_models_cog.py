"""/models-list for everyone; /models for admins: add, load, unload, choose and remove models.

The admin group carries Discord's default permission (Manage Server), so members do not see
it; a server owner may give it to an admin role in the server's Integrations settings. That is
a convenience, not the check: every admin subcommand runs inside ``admin_action``, the admin
check in code, then one audit entry however it ends. Answers are private: they are for the
person who asked, and a busy class channel does not need them.
"""

from __future__ import annotations

import contextlib

import discord
from discord import app_commands
from discord.ext import commands

from bot.features.admin import _render as text
from bot.features.admin._access import AuditedAction, admin_action
from bot.features.admin._adapters import (
    ADAPTER_KIND_LABEL,
    adapter_lines,
    check_adapter_name,
    check_adapter_source,
    check_family,
    check_token,
    parse_adapter_kind,
)
from bot.features.admin._engine_ops import ModelEngine, ModelOps
from bot.features.admin._replies import say, ticking
from bot.features.admin._sources import (
    MAX_NAME_CHARS,
    check_name,
    check_revision,
    check_source,
    parse_kind,
)
from bot.jobs.engine_client import EngineUnavailable
from bot.services import Services
from bot.store.models import Model
from bot.store.repository import StoreError
from bot.ui import render
from bot.ui.checks import is_admin
from bot.ui.errors import UserInputError
from bot.ui.model_options import KIND_LABEL, ModelName
from engine.prompt_syntax import lora_token
from engine.protocol import FAMILIES, MODEL_FAMILIES, AdapterKind, is_folder_source

KIND_CHOICES = [
    app_commands.Choice(name=label, value=kind.value) for kind, label in KIND_LABEL.items()
]
# /models add also takes LoRAs and embeddings (bot.features.admin._adapters).
ADD_KIND_CHOICES = KIND_CHOICES + [
    app_commands.Choice(name=label, value=kind.value) for kind, label in ADAPTER_KIND_LABEL.items()
]
FAMILY_CHOICES = [
    app_commands.Choice(name=label, value=family) for family, label in MODEL_FAMILIES.items()
]
PROGRESS_EVERY_S = 5.0  # how often a long load shows its clock
DRAIN_TIMEOUT_S = 600.0  # the longest an unload waits for queued jobs (tokens live 15 minutes)
NAME_HELP = "The model's name in the bot (see /models-list)"
# Hidden from members by default (Discord); the check in code decides (admin_action).
ADMIN_DEFAULT = discord.Permissions(manage_guild=True)


class ModelsCog(commands.Cog):
    """`/models-list`, and the admins' `/models` command group."""

    models = app_commands.Group(
        name="models",
        description="Admins: the models the bot offers",
        guild_only=True,
        # guild_only alone sets only the old dm_permission on a group; this is the context.
        allowed_contexts=app_commands.AppCommandContext(guild=True),
        default_permissions=ADMIN_DEFAULT,
    )

    def __init__(self, services: Services) -> None:
        self.services = services
        # EngineClient has these requests; the scheduler's narrower type does not say so.
        engine: ModelEngine = services.engine  # type: ignore[assignment]  # an EngineClient
        self.ops = ModelOps(services.repo, engine)
        self.progress_every_s = PROGRESS_EVERY_S
        self.drain_timeout_s = DRAIN_TIMEOUT_S

    def _audited(
        self, interaction: discord.Interaction, action: str, target: str = ""
    ) -> contextlib.AbstractAsyncContextManager[AuditedAction]:
        return admin_action(
            interaction,
            self.services.settings.discord,
            self.services.repo,
            f"models.{action}",
            target,
        )

    async def _model(self, name: str) -> Model:
        model = await self.services.repo.get_model(name)
        if model is None:
            names = sorted(m.name for m in await self.services.repo.list_models())
            listing = render.name_list(names) if names else "none yet"
            raise UserInputError(
                f"There is no model named “{render.short(name, MAX_NAME_CHARS)}”. "
                f"Models: {listing}."
            )
        return model

    # --- everyone ----------------------------------------------------------------------

    @app_commands.command(
        name="models-list", description="The models you can use, and which are loaded"
    )
    @app_commands.guild_only()
    async def list_models(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        admin = is_admin(interaction.user, self.services.settings.discord)
        # Admins also see disabled models, and where each one comes from.
        models = await self.services.repo.list_models(enabled_only=not admin)
        adapters = await self.services.repo.list_adapters(enabled_only=not admin)
        loaded = await self.ops.loaded()
        lines = adapter_lines(adapters, admin=admin)
        await say(interaction, text.model_list(models, loaded, admin=admin, adapters=lines))

    # --- admins: the table -------------------------------------------------------------

    @models.command(name="add", description="Admins: offer a new model")
    @app_commands.describe(
        name=f"A short name people pick it by (letters, digits, . _ -; up to {MAX_NAME_CHARS})",
        source="A Hugging Face id (org/name) or the full path of a local diffusers folder "
        "(a LoRA or embedding: also a .safetensors file)",
        kind="What it is: a text-to-image, inpainting, depth-to-image or x4 upscaler model, "
        "a LoRA or an embedding",
        revision="Hugging Face only: a branch, tag or commit (default: main)",
        family="LoRA or embedding: the model family it fits (default Stable Diffusion 1.x)",
        token="Embedding: the word prompts write for it (default <name>)",
    )
    @app_commands.choices(kind=ADD_KIND_CHOICES, family=FAMILY_CHOICES)
    async def add(
        self,
        interaction: discord.Interaction,
        name: app_commands.Range[str, 1, 100],
        source: app_commands.Range[str, 1, 500],
        kind: str,
        revision: app_commands.Range[str, 1, 100] | None = None,
        family: str | None = None,
        token: app_commands.Range[str, 1, 60] | None = None,
    ) -> None:
        async with self._audited(interaction, "add", name) as action:
            adapter_kind = parse_adapter_kind(kind)
            if adapter_kind is not None:
                if revision:
                    raise UserInputError("A revision is for models; pin an adapter by its file.")
                await self._add_adapter(
                    interaction, action, name, source, adapter_kind, family, token
                )
                return
            if family or token:
                raise UserInputError("family and token are for LoRAs and embeddings.")
            name = check_name(name)
            job_kind = parse_kind(kind)
            await interaction.response.defer(ephemeral=True, thinking=True)
            pinned = check_revision(revision, is_folder=is_folder_source(source.strip()))
            checked = await check_source(source, job_kind, pinned)
            try:
                model = await self.services.repo.add_model(
                    name, checked.source, job_kind, pinned, checked.family
                )
            except StoreError as error:
                raise UserInputError(str(error)) from None
            where = checked.source + (f" @ {pinned}" if pinned else "")
            label = KIND_LABEL[job_kind]
            family = FAMILIES[checked.family].label
            action.succeeded(f"added {family} {label} model from {where}")
            lines = [f"✅ Added **{name}** ({label}) from `{where}`. Family: {family}."]
            if model.is_default:
                lines.append(f"It is the default {label} model: there was none before.")
            if checked.note:
                lines.append(checked.note)
            lines.append(f"`/models load {name}` loads it now and shows whether it works.")
            await say(interaction, "\n".join(lines))

    async def _add_adapter(
        self,
        interaction: discord.Interaction,
        action: AuditedAction,
        name: str,
        source: str,
        kind: AdapterKind,
        family: str | None,
        token: str | None,
    ) -> None:
        name = check_adapter_name(name)
        family = check_family(family, kind)
        token = check_token(kind, name, token)
        await interaction.response.defer(ephemeral=True, thinking=True)
        checked = await check_adapter_source(source)
        if await self.services.repo.get_model(name) is not None:
            raise UserInputError(
                f"A model is already called {name}; give the adapter another name."
            )
        try:
            await self.services.repo.add_adapter(name, kind, checked, family, token)
        except StoreError as error:
            raise UserInputError(str(error)) from None
        label = ADAPTER_KIND_LABEL[kind]
        action.succeeded(f"added {label} for {family} from {checked}")
        use = lora_token(name, 0.8) if kind is AdapterKind.LORA else token
        await say(
            interaction,
            f"✅ Added the {label} **{name}** ({MODEL_FAMILIES[family]}) from `{checked}`. "
            f"Prompts use it as `{use}`; it loads with the first job that does.",
        )

    async def _adapter_change(
        self, interaction: discord.Interaction, action: AuditedAction, name: str, change: str
    ) -> bool:
        """``/models enable|disable|remove`` of an adapter (a name no model has): False when
        ``name`` is not one. Disabling or removing takes it out of the engine at once."""
        repo = self.services.repo
        if (
            await repo.get_model(name) is not None
            or (adapter := await repo.get_adapter(name)) is None
        ):
            return False
        await interaction.response.defer(ephemeral=True, thinking=True)
        label = ADAPTER_KIND_LABEL[adapter.kind]
        if change == "remove":
            await repo.remove_adapter(name)
            done = "removed"
        else:
            await repo.set_adapter_enabled(name, change == "enable")
            done = f"{change}d"
        unloaded = ""
        if change != "enable":
            held = adapter.token if adapter.kind is AdapterKind.EMBEDDING else name
            try:
                if await self.ops.unload_adapter(held):
                    unloaded = " and taken out of the engine"
            except (EngineUnavailable, TimeoutError):
                unloaded = "; the engine did not answer, so it may stay loaded until it restarts"
        action.succeeded(f"{label} {done}{unloaded}")
        await say(interaction, f"✅ The {label} **{name}** is {done}{unloaded}.")
        return True

    @models.command(name="default", description="Admins: the model used when none is picked")
    @app_commands.describe(name=NAME_HELP, kind="Optional check: the kind it becomes default for")
    @app_commands.choices(kind=KIND_CHOICES)
    async def default(
        self, interaction: discord.Interaction, name: ModelName, kind: str | None = None
    ) -> None:
        async with self._audited(interaction, "default", name) as action:
            await interaction.response.defer(ephemeral=True, thinking=True)
            model = await self._model(name)
            label = KIND_LABEL[model.kind]
            if kind is not None and parse_kind(kind) is not model.kind:
                # A model has one kind; the default it can be follows from it.
                raise UserInputError(
                    f"{name} is a {label} model, so it can only be the {label} default."
                )
            previous = await self.services.repo.default_model(model.kind)
            if previous is not None and previous.name == name:
                action.succeeded(f"already the {label} default")
                await say(interaction, f"**{name}** already is the default {label} model.")
                return
            try:
                await self.services.repo.set_default_model(name)
            except StoreError as error:
                raise UserInputError(str(error)) from None
            was = f" (was {previous.name})" if previous else ""
            action.succeeded(f"now the {label} default{was}")
            await say(
                interaction,
                f"✅ **{name}** is now the default {label} model{was}. "
                "Jobs already queued keep the model they asked for.",
            )

    @models.command(name="enable", description="Admins: offer a disabled model again")
    @app_commands.describe(name=NAME_HELP)
    async def enable(self, interaction: discord.Interaction, name: ModelName) -> None:
        async with self._audited(interaction, "enable", name) as action:
            if await self._adapter_change(interaction, action, name, "enable"):
                return
            await interaction.response.defer(ephemeral=True, thinking=True)
            model = await self._model(name)
            if model.enabled:
                action.succeeded("already enabled")
                await say(interaction, f"**{name}** is already enabled.")
                return
            await self._set_enabled(name, True)
            action.succeeded("enabled")
            await say(interaction, f"✅ **{name}** is enabled: people can pick it again.")

    @models.command(name="disable", description="Admins: stop offering a model; queued jobs finish")
    @app_commands.describe(name=NAME_HELP)
    async def disable(self, interaction: discord.Interaction, name: ModelName) -> None:
        async with self._audited(interaction, "disable", name) as action:
            if await self._adapter_change(interaction, action, name, "disable"):
                return
            await interaction.response.defer(ephemeral=True, thinking=True)
            model = await self._model(name)
            if not model.enabled:
                action.succeeded("already disabled")
                await say(interaction, f"**{name}** is already disabled.")
                return
            await self._set_enabled(name, False)
            pending = await self.ops.jobs_using(name)
            still = ""
            if pending:
                still = f"; {text.plural(pending, 'queued job')} for it will still finish"
            action.succeeded(f"disabled{still}")
            await say(
                interaction,
                f"✅ **{name}** is disabled: nobody can pick it for new jobs{still}. "
                f"It stays in memory until `/models unload {name}` or the engine needs the room.",
            )

    async def _set_enabled(self, name: str, enabled: bool) -> None:
        try:
            await self.services.repo.set_model_enabled(name, enabled)
        except StoreError as error:
            raise UserInputError(str(error)) from None

    @models.command(name="remove", description="Admins: forget a model (queued jobs finish)")
    @app_commands.describe(name=NAME_HELP)
    async def remove(self, interaction: discord.Interaction, name: ModelName) -> None:
        async with self._audited(interaction, "remove", name) as action:
            if await self._adapter_change(interaction, action, name, "remove"):
                return
            await interaction.response.defer(ephemeral=True, thinking=True)
            try:
                model = await self.services.repo.remove_model(name)
            except StoreError as error:
                raise UserInputError(str(error)) from None
            # Its jobs carry the model by value and may still run; after them, nothing will
            # ask for it again, so its memory can go.
            await say(interaction, f"✅ Removed **{name}**; freeing its memory…")
            freed = await self._unload_when_unused(interaction, model.name, "unloading it")
            action.succeeded(f"removed. {freed}")
            await say(interaction, f"✅ Removed **{name}**: nobody can pick it now. {freed}")

    # --- admins: the engine ------------------------------------------------------------

    @models.command(name="load", description="Admins: load a model into the engine now")
    @app_commands.describe(
        name=NAME_HELP, replicas="With engine replicas (Ray): on how many (default: all)"
    )
    async def load(
        self,
        interaction: discord.Interaction,
        name: ModelName,
        replicas: app_commands.Range[int, 1, 256] | None = None,
    ) -> None:
        async with self._audited(interaction, "load", name) as action:
            await interaction.response.defer(ephemeral=True, thinking=True)
            model = await self._model(name)
            if not model.enabled:
                raise UserInputError(f"{name} is disabled; `/models enable {name}` first.")
            await say(interaction, f"⏳ Loading **{name}**…")
            try:
                async with ticking(
                    interaction,
                    self.progress_every_s,
                    lambda s: f"⏳ Loading **{name}**… {text.human_duration(s)}",
                ):
                    outcome = await self.ops.load(model, replicas)
            except (EngineUnavailable, TimeoutError) as error:
                # Said in the same message, so "Loading…" does not stay on screen.
                problem = text.engine_problem(name, error)
                action.failed(f"failed: {problem}")
                await say(interaction, f"❌ {problem}")
                return
            ok, audited, message = text.load_report(model, outcome)
            if ok:
                action.succeeded(audited)
            else:
                action.failed(audited)
            await say(interaction, message)

    @models.command(name="unload", description="Admins: free a model's memory (after its jobs)")
    @app_commands.describe(name=NAME_HELP)
    async def unload(self, interaction: discord.Interaction, name: ModelName) -> None:
        async with self._audited(interaction, "unload", name) as action:
            await interaction.response.defer(ephemeral=True, thinking=True)
            model = await self._model(name)
            await say(interaction, f"⏳ Unloading **{name}**…")
            outcome = await self._unload_when_unused(interaction, model.name, "unloading")
            action.succeeded(outcome)
            await say(interaction, f"✅ {outcome}")

    async def _unload_when_unused(
        self, interaction: discord.Interaction, name: str, doing: str
    ) -> str:
        """Wait for the model's queued and running jobs, unload it, and say what happened."""

        async def waiting(count: int) -> None:
            await say(
                interaction,
                f"⏳ Waiting for {text.plural(count, 'queued or running job')} for **{name}** "
                f"to finish before {doing}…",
            )

        waited = await self.ops.jobs_using(name)
        left = await self.ops.wait_until_unused(name, self.drain_timeout_s, waiting)
        try:
            outcome = await self.ops.unload(name)
        except EngineUnavailable:
            return f"The image engine is not running, so {name} is not in memory."
        after = f" after {text.plural(waited, 'job')} for it finished" if waited else ""
        if left:
            after = (
                f" after waiting {text.human_duration(self.drain_timeout_s)}; "
                f"{text.plural(left, 'job')} for it will load it again when they run"
            )
        if not outcome.unloaded:
            return f"{name} was not loaded, so there was no memory to free{after}."
        return f"Unloaded {name} and freed {text.human_bytes(outcome.freed_bytes)}{after}."

    # --- admins: the log ---------------------------------------------------------------

    @models.command(name="log", description="Admins: the latest admin actions")
    @app_commands.describe(count="How many entries (default 10)")
    async def audit_log(
        self, interaction: discord.Interaction, count: app_commands.Range[int, 1, 25] = 10
    ) -> None:
        async with admin_action(
            interaction,
            self.services.settings.discord,
            self.services.repo,
            "models.log",
            audit_success=False,  # reading the log is not an action worth logging
        ):
            await interaction.response.defer(ephemeral=True, thinking=True)
            entries = await self.services.repo.latest_audit(count)
            await say(interaction, text.audit_log(entries))

    # --- autocomplete ------------------------------------------------------------------

    @load.autocomplete("name")
    @unload.autocomplete("name")
    @default.autocomplete("name")
    async def _model_names(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return await self._names(interaction, current, adapters=False)

    @enable.autocomplete("name")
    @disable.autocomplete("name")
    @remove.autocomplete("name")
    async def _model_and_adapter_names(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return await self._names(interaction, current, adapters=True)

    async def _names(
        self, interaction: discord.Interaction, current: str, *, adapters: bool
    ) -> list[app_commands.Choice[str]]:
        # Only admins can use these commands; nobody else needs the disabled models' names.
        if not is_admin(interaction.user, self.services.settings.discord):
            return []
        typed = current.casefold()
        choices = [
            app_commands.Choice(name=text.choice_label(model), value=model.name)
            for model in sorted(await self.services.repo.list_models(), key=lambda m: m.name)
            if typed in model.name.casefold()
        ]
        if adapters:
            choices += [
                app_commands.Choice(
                    name=f"{a.name} ({ADAPTER_KIND_LABEL[a.kind]}"
                    f"{', disabled' if not a.enabled else ''})",
                    value=a.name,
                )
                for a in await self.services.repo.list_adapters()
                if typed in a.name.casefold()
            ]
        return choices[:25]  # Discord shows at most 25

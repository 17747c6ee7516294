"""The test-facing API: start the stub, act as Discord users, and observe the bot.

Everything runs on the test's event loop (no threads), every wait is bounded, and a timeout
says what the stub did receive.
"""

from __future__ import annotations

import contextlib
import functools
import random
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from .client import ClientHost
from .components import SELECT_TYPES, modal_submission, select_data
from .faults import Chaos, Fault, FaultInjector, compile_route_pattern
from .files import FileLike
from .gateway import ConnectionRecord, GatewayHub
from .interactions import DEFAULT_TIMEOUT, InteractionHandle
from .models.commands import OptionType, SyncRecord, build_invocation
from .models.entities import (
    CallbackType,
    Channel,
    ComponentType,
    Guild,
    GuildSpec,
    InteractionType,
    Message,
    Role,
    User,
)
from .models.validation import DiscordError
from .patching import patch_discord
from .records import RecordedRequest
from .rest import RestApi
from .server import StubServer
from .state import StubState
from .waiting import Signal

if TYPE_CHECKING:
    import discord

JSON = dict[str, Any]
#: a guild given by object, id or name; ``None`` is the first configured guild
GuildRef = Guild | int | str | None
DEFAULT_TOKEN = "stub-bot-token"


class DiscordStub(ClientHost):
    """A Discord-compatible server on 127.0.0.1 plus the controls tests need.

    Use as ``async with DiscordStub() as stub:``. By default it points discord.py at itself
    (see :meth:`patch_discord`) and, on exit, fails the test if the bot called routes the stub
    does not know or if the stub itself failed (``strict``).
    """

    def __init__(
        self,
        *,
        guilds: Sequence[GuildSpec] | None = None,
        token: str | None = DEFAULT_TOKEN,
        bot_name: str = "Diffusion Bot",
        patch: bool = True,
        strict: bool = True,
        callback_deadline: float = 3.0,
        token_lifetime: float = 15 * 60.0,
        attachment_size_limit: int = 10 * 1024 * 1024,
        heartbeat_interval: float = 41.25,
        default_timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        """Configure the stub; nothing listens until it is entered.

        ``token=None`` accepts any bot token. ``callback_deadline`` is the time the bot has for
        the interaction callback (3 s on Discord), ``token_lifetime`` how long the interaction
        webhook works (15 min). ``default_timeout`` bounds the driver's own waits.
        """
        self.signal = Signal()
        self.state = StubState(
            guild_specs=[GuildSpec()] if guilds is None else guilds,
            signal=self.signal,
            bot_name=bot_name,
            attachment_size_limit=attachment_size_limit,
        )
        self.faults = FaultInjector()
        self.callback_deadline = callback_deadline
        self.token_lifetime = token_lifetime
        self.default_timeout = default_timeout
        self.strict = strict
        self._token = token
        self._patch = patch
        self.gateway = GatewayHub(
            self.state,
            self.signal,
            token=token,
            heartbeat_interval_ms=int(heartbeat_interval * 1000),
        )
        self.rest = RestApi(
            self.state,
            self.faults,
            token=token,
            gateway_url=lambda: self.gateway_url,
            callback_deadline=lambda: self.callback_deadline,
            token_lifetime=lambda: self.token_lifetime,
        )
        self.server = StubServer(self.rest, self.gateway)
        self._exit = contextlib.ExitStack()
        #: a guild member without roles, used when a test does not name a user
        self.default_user = (
            self.state.add_user("student", guild=self.state.default_guild)
            if self.state.guilds
            else None
        )

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen, and patch discord.py's base URLs if asked to."""
        await self.server.start()
        self.state.base_url = self.server.url
        self.gateway.resume_url = self.gateway_url
        if self._patch:
            self._exit.enter_context(self.patch_discord())

    async def stop(self) -> None:
        """Stop serving and undo the patching."""
        try:
            await self.server.stop()
        finally:
            self._exit.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
        if self.strict and exc is None:
            self.assert_no_surprises()

    def assert_no_surprises(self) -> None:
        """Fail if the bot used routes the stub does not implement, or the stub broke."""
        problems = [f"unknown route: {r.describe()}" for r in self.unknown_requests]
        problems += [f"stub internal error: {e}" for e in self.state.internal_errors]
        if problems:
            raise AssertionError(
                "discord stub saw problems (pass strict=False to allow):\n  "
                + "\n  ".join(problems)
            )

    # -- addresses ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return self.server.url

    @property
    def api_base(self) -> str:
        """The REST base URL (``Route.BASE``): ``http://127.0.0.1:<port>/api/v10``."""
        return self.server.api_base

    @property
    def gateway_url(self) -> str:
        """The gateway websocket URL: ``ws://127.0.0.1:<port>/gateway``."""
        return self.server.gateway_url

    @property
    def token(self) -> str:
        """A bot token the stub accepts."""
        return self._token or DEFAULT_TOKEN

    def patch_discord(self) -> contextlib.AbstractContextManager[None]:
        """Point discord.py's REST, gateway and CDN base URLs here (restored on exit)."""
        return patch_discord(self.api_base, self.gateway_url, self.url)

    # -- the world ------------------------------------------------------------------------------

    @property
    def bot_user(self) -> User:
        """The bot's user (its id is also the application id)."""
        return self.state.bot

    @property
    def application_id(self) -> int:
        """The bot's application id."""
        return self.state.application_id

    @property
    def guild(self) -> Guild:
        """The first configured guild."""
        return self.state.default_guild

    def add_user(
        self,
        name: str,
        *,
        roles: Iterable[str | Role] = (),
        locale: str = "en-US",
        permissions: int | discord.Permissions | None = None,
        guild: GuildRef = None,
        nick: str | None = None,
        global_name: str | None = None,
    ) -> User:
        """A new member of ``guild`` (default: the first) with roles given by name.

        ``permissions`` (an int or a ``discord.Permissions``) overrides the permissions that
        interactions report for this user; by default they come from @everyone and the roles.
        """
        value = (
            permissions
            if permissions is None or isinstance(permissions, int)
            else permissions.value
        )
        return self.state.add_user(
            name,
            guild=self.state.guild(guild),
            roles=roles,
            locale=locale,
            permissions=value,
            nick=nick,
            global_name=global_name,
        )

    def user(self, ref: User | int | str) -> User:
        """A user by name or id."""
        return self.state.user(ref)

    def channel(self, ref: Channel | int | str | None = None, *, guild: GuildRef = None) -> Channel:
        """A channel or thread by name (``"diffusion-models-class"``) or id."""
        return self.state.channel(ref, guild=self.state.guild(guild))

    def role(self, name: str, *, guild: GuildRef = None) -> Role:
        """A role by name."""
        return self.state.guild(guild).role_named(name)

    def dm_channel(self, user: User | int | str) -> Channel:
        """The DM channel between the bot and ``user``; pass it as ``channel=`` for DMs."""
        return self.state.dm_channel(self.state.user(user))

    def seed_bot_message(self, channel: Channel | int | str | None, payload: JSON) -> Message:
        """A message from the bot that exists already (e.g. posted before a restart)."""
        return self.state.create_message(self._channel(channel), payload)

    # -- running a client -----------------------------------------------------------------------

    def _requests_summary(self) -> str:
        return "; ".join(r.describe() for r in self.requests[-10:])

    async def wait_connected(
        self,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - bounded waits are the API
        after: int | None = None,
    ) -> ConnectionRecord:
        """The live gateway connection (one newer than connection index ``after``)."""
        return await self.gateway.wait_live(timeout=timeout or self.default_timeout, after=after)

    async def drop_gateway(self, *, code: int = 4000, abrupt: bool = False) -> ConnectionRecord:
        """Close the bot's gateway connection from the server; returns the dropped one.

        discord.py reconnects and RESUMEs on codes such as 4000 or 1000 and on an abrupt
        drop; ``await stub.wait_connected(after=dropped.index)`` waits for that.
        """
        live = self.gateway.live
        if live is None:
            raise RuntimeError("the bot is not connected to the gateway")
        await self.gateway.drop(code=code, abrupt=abrupt, timeout=self.default_timeout)
        return live.record

    # -- acting as users ------------------------------------------------------------------------

    def _channel(self, ref: Channel | int | str | None) -> Channel:
        return self.state.channel(ref)

    def _member(self, ref: User | int | str | None, channel: Channel) -> User:
        if ref is None:
            if self.default_user is None:
                raise LookupError("no default user (the stub has no guilds); pass user=")
            ref = self.default_user
        user = self.state.user(ref)
        if channel.guild_id is not None:
            user.membership(channel.guild_id)  # a clear error when not a member
        return user

    async def _dispatch(self, handle: InteractionHandle) -> InteractionHandle:
        await self.wait_connected()
        self.gateway.dispatch("INTERACTION_CREATE", handle.payload)
        return handle

    async def invoke_slash(
        self,
        command: str | Sequence[str],
        options: Mapping[str, Any] | None = None,
        *,
        user: User | int | str | None = None,
        channel: Channel | int | str | None = None,
        attachments: Mapping[str, FileLike] | None = None,
        locale: str | None = None,
        validate: bool = True,
    ) -> InteractionHandle:
        """A user runs a slash command; returns at once with the interaction's handle.

        ``command`` is ``"imagine"``, ``"models add"`` or ``("models", "add")``. Option types
        come from the command the bot synced: a USER option takes a user (or name), ROLE a role
        name, CHANNEL a channel name, ATTACHMENT ``(filename, bytes[, content_type])``.
        ``attachments`` is merged into ``options``. With ``validate`` the Discord client's
        checks apply (required options, choices, ranges, types).
        """
        path = command.split() if isinstance(command, str) else list(command)
        root = path[0].lstrip("/")
        target = self._channel(channel)
        invoker = self._member(user, target)
        definition = self.state.commands.find(root, target.guild_id)
        if definition is None:
            raise LookupError(
                f"/{root} is not registered; registered: {self.state.commands.describe()}"
            )
        resolver = functools.partial(self._resolve, channel=target)
        data = build_invocation(
            definition,
            path[1:],
            {**(options or {}), **(attachments or {})},
            resolver,
            validate=validate,
        )
        handle = self.state.new_interaction(
            InteractionType.APPLICATION_COMMAND,
            data,
            user=invoker,
            channel=target,
            locale=locale,
            label="/" + " ".join([root, *path[1:]]),
        )
        return await self._dispatch(handle)

    def _resolve(self, kind: OptionType, value: Any, resolved: JSON, *, channel: Channel) -> str:
        return self.state.resolve_option(kind, value, resolved, channel)

    async def autocomplete(
        self,
        command: str | Sequence[str],
        options: Mapping[str, Any],
        *,
        focused: str,
        user: User | int | str | None = None,
        channel: Channel | int | str | None = None,
        locale: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - bounded waits are the API
    ) -> list[JSON]:
        """A user types into option ``focused``; returns the choices the bot answered."""
        path = command.split() if isinstance(command, str) else list(command)
        root = path[0].lstrip("/")
        target = self._channel(channel)
        invoker = self._member(user, target)
        definition = self.state.commands.find(root, target.guild_id)
        if definition is None:
            raise LookupError(
                f"/{root} is not registered; registered: {self.state.commands.describe()}"
            )
        resolver = functools.partial(self._resolve, channel=target)
        data = build_invocation(definition, path[1:], options, resolver, focused=focused)
        handle = self.state.new_interaction(
            InteractionType.AUTOCOMPLETE,
            data,
            user=invoker,
            channel=target,
            locale=locale,
            label=f"autocomplete /{' '.join([root, *path[1:]])} {focused}={options[focused]!r}",
        )
        await self._dispatch(handle)
        event = await handle.wait_for_response(timeout=timeout or self.default_timeout)
        return list(event.payload.get("choices") or [])

    async def click(
        self,
        message: Message | int,
        custom_id: str,
        *,
        user: User | int | str | None = None,
        values: Sequence[Any] | None = None,
    ) -> InteractionHandle:
        """A user clicks a button (or picks ``values`` in a select) on one of the bot's messages.

        The component must be on the message's current version and enabled, as in the client.
        """
        message_id = message.id if isinstance(message, Message) else message
        try:
            current = self.state.get_message(None, message_id)
        except DiscordError:
            raise LookupError(f"message {message_id} does not exist (or was deleted)") from None
        component = current.component(custom_id)
        if component.get("disabled"):
            raise ValueError(f"component {custom_id!r} is disabled; a user cannot use it")
        kind = ComponentType(component["type"])
        channel = self.state.channels[current.channel_id]
        data: JSON = {"custom_id": custom_id, "component_type": int(kind)}
        if kind in SELECT_TYPES:
            resolve = functools.partial(self._resolve, channel=channel)
            data.update(select_data(component, list(values or []), resolve))
        elif values is not None:
            raise ValueError(f"{custom_id!r} is a {kind.name.lower()}; values are for selects")
        handle = self.state.new_interaction(
            InteractionType.MESSAGE_COMPONENT,
            data,
            user=self._member(user, channel),
            channel=channel,
            locale=None,
            label=f"click {custom_id!r}",
            message=current,
        )
        return await self._dispatch(handle)

    async def submit_modal(
        self,
        source: InteractionHandle,
        values: Mapping[str, str | Sequence[str]],
        *,
        user: User | int | str | None = None,
    ) -> InteractionHandle:
        """Submit the modal the bot opened in answer to ``source``.

        ``values`` maps text input (or select) custom ids to what the user entered.
        """
        event = source.response
        if event is None or event.response_type is not CallbackType.MODAL:
            raise ValueError(f"the bot did not answer with a modal: {source.describe()}")
        modal = event.payload
        components = modal_submission(modal, values)
        channel = self.state.channels[int(source.payload["channel_id"])]
        invoker_data = source.payload.get("member", {}).get("user") or source.payload["user"]
        clicked = source.clicked_message_id
        handle = self.state.new_interaction(
            InteractionType.MODAL_SUBMIT,
            {"custom_id": modal["custom_id"], "components": components},
            user=self._member(user if user is not None else int(invoker_data["id"]), channel),
            channel=channel,
            locale=source.payload.get("locale"),
            label=f"modal {modal['custom_id']!r}",
            message=self.state.messages[clicked] if clicked else None,
        )
        return await self._dispatch(handle)

    # -- observing the bot ----------------------------------------------------------------------

    def channel_messages(
        self,
        channel: Channel | int | str | None = None,
        *,
        source: str | None = "channel",
        include_deleted: bool = False,
    ) -> list[Message]:
        """Messages in ``channel``, oldest first: by default those sent with the bot token.

        ``source=None`` includes interaction responses and followups.
        """
        messages = self.state.channel_messages(
            self._channel(channel), include_deleted=include_deleted
        )
        return [m for m in messages if source is None or m.source == source]

    async def wait_for_channel_message(
        self,
        channel: Channel | int | str | None = None,
        predicate: Callable[[Message], bool] = lambda m: True,
        *,
        source: str | None = "channel",
        timeout: float | None = None,  # noqa: ASYNC109 - bounded waits are the API
    ) -> Message:
        """The first message in ``channel`` (as :meth:`channel_messages`) matching ``predicate``."""
        target = self._channel(channel)

        def describe() -> str:
            seen = [m.summary() for m in self.channel_messages(target, source=source)]
            return f"a matching message in #{target.name}; messages there: {seen or 'none'}"

        return await self.signal.wait_until(
            lambda: next(
                (m for m in self.channel_messages(target, source=source) if predicate(m)), None
            ),
            timeout=timeout or self.default_timeout,
            describe=describe,
        )

    def expire_token(self, interaction: InteractionHandle | str) -> None:
        """Expire an interaction token now: webhook routes answer 401 (50027), callbacks 404."""
        token = interaction.token if isinstance(interaction, InteractionHandle) else interaction
        self.state.tokens[token].expire()

    @property
    def interactions(self) -> list[InteractionHandle]:
        """Every interaction dispatched so far."""
        return list(self.state.interactions.values())

    # -- commands -------------------------------------------------------------------------------

    def synced_commands(self, guild: GuildRef = None) -> list[JSON]:
        """Commands as registered (with ids): global ones by default, or ``guild``'s."""
        scope = None if guild is None else self.state.guild(guild).id
        return self.state.commands.list(scope)

    @property
    def sync_log(self) -> list[SyncRecord]:
        """Every command registration request, as the bot sent it."""
        return self.state.commands.sync_log

    def register_commands(self, payloads: Sequence[JSON], *, guild: GuildRef = None) -> list[JSON]:
        """Pre-register commands, as if an earlier run of the bot had synced them."""
        scope = None if guild is None else self.state.guild(guild).id
        return self.state.commands.overwrite(scope, payloads)

    # -- requests and faults --------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every HTTP request the bot made, in order."""
        return list(self.state.requests)

    @property
    def unknown_requests(self) -> list[RecordedRequest]:
        """Requests to routes the stub does not implement."""
        return [r for r in self.state.requests if not r.known]

    def requests_to(self, method: str, route: str | re.Pattern[str]) -> list[RecordedRequest]:
        """Requests matching ``method`` (or ``"*"``) and a route pattern (see :meth:`fail_next`)."""
        pattern = compile_route_pattern(route)
        return [
            r
            for r in self.state.requests
            if method in ("*", r.method) and pattern.fullmatch(r.path) is not None
        ]

    def chaos(
        self,
        rate: float,
        *,
        statuses: tuple[int, ...] = (429, 500),
        seed: int = 0,
        drop_rate: float = 0.0,
    ) -> Chaos:
        """Fail a fraction ``rate`` of REST calls at random (seeded) with ``statuses``, and
        drop the connection under a fraction ``drop_rate`` of the calls that show a job,
        besides any :meth:`fail_next` rules; ``rate=0`` stops it. Returns the rule, which
        counts hits and drops."""
        chaos = Chaos(rate, statuses, random.Random(seed), drop_rate=drop_rate)
        self.faults.chaos = chaos if rate or drop_rate else None
        return chaos

    def fail_next(
        self,
        method: str,
        route: str | re.Pattern[str],
        status: int = 500,
        *,
        times: int = 1,
        retry_after: float = 0.05,
        is_global: bool = False,
        code: int = 0,
        message: str | None = None,
    ) -> Fault:
        """Answer the next ``times`` matching requests with an error instead of the route.

        ``route`` is relative to the API base: ``"/channels/{channel_id}/messages"``,
        ``"/webhooks/*/*/messages/@original"``, ``"/interactions/**"`` (``{x}``/``*``: one
        segment, ``**``: any) or a compiled regex. ``status=429`` sends ``retry_after`` with
        Discord's rate-limit headers, so discord.py sleeps and retries; 500/502/504 are
        retried by discord.py after 1 s, 3 s... The returned :class:`Fault` counts its hits.
        """
        return self.faults.add(
            method,
            route,
            status=status,
            times=times,
            retry_after=retry_after,
            is_global=is_global,
            code=code,
            message=message,
        )

    def drop_next(
        self, method: str, route: str | re.Pattern[str], *, times: int = 1, after: bool = False
    ) -> Fault:
        """Close the connection on the next ``times`` matching requests instead of answering,
        as a dropped connection would. ``after``: the request takes effect first (the message
        is made or edited), and only its answer is lost."""
        return self.faults.add(
            method,
            route,
            status=0,
            times=times,
            retry_after=0,
            is_global=False,
            code=0,
            message=None,
            drop="after" if after else "before",
        )

    def describe_requests(self, last: int = 20) -> Iterator[str]:
        """The last requests, one line each (handy in assertion messages)."""
        return (r.describe() for r in self.state.requests[-last:])

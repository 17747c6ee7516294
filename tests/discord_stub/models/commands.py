"""Application commands: what the bot synced, and building the ``data`` of invocations from it.

The stub keeps the commands the bot registered (with ids, like Discord) so an invocation can be
typed from the *registered* option types: a test says ``{"steps": 20}`` and the stub sends an
INTEGER option because that is what the bot declared, exactly as the Discord client would.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from ..snowflakes import SnowflakeGenerator
from .validation import DiscordError, FormErrors

JSON = dict[str, Any]

#: Locales Discord accepts in ``name_localizations`` / ``description_localizations``.
# fmt: off
DISCORD_LOCALES = frozenset({
    "id", "da", "de", "en-GB", "en-US", "es-ES", "es-419", "fr", "hr", "it", "lt", "hu", "nl",
    "no", "pl", "pt-BR", "ro", "fi", "sv-SE", "vi", "tr", "cs", "el", "bg", "ru", "uk", "hi",
    "th", "zh-CN", "ja", "zh-TW", "ko",
})
# fmt: on
# Chat-input command and option names: 1-32 of letters, digits, '-' and '_' (any script).
_NAME_RE = re.compile(r"^[-_\w]{1,32}$")
MAX_STRING_OPTION = 6000  # a string option's min_length and max_length stop here
MAX_COMMAND_CHARACTERS = 8000  # names, descriptions and values of one command, all in
_CONTEXTS = frozenset({0, 1, 2})  # guild, bot DM, private channel
_INSTALLS = frozenset({0, 1})  # guild install, user install


class OptionType(IntEnum):
    """Application command option types."""

    SUB_COMMAND = 1
    SUB_COMMAND_GROUP = 2
    STRING = 3
    INTEGER = 4
    BOOLEAN = 5
    USER = 6
    CHANNEL = 7
    ROLE = 8
    MENTIONABLE = 9
    NUMBER = 10
    ATTACHMENT = 11


SNOWFLAKE_OPTION_TYPES = frozenset(
    {
        OptionType.USER,
        OptionType.CHANNEL,
        OptionType.ROLE,
        OptionType.MENTIONABLE,
        OptionType.ATTACHMENT,
    }
)

#: Turns a test's value for a USER/CHANNEL/ROLE/MENTIONABLE/ATTACHMENT option into the snowflake
#: string to send, adding the object to the ``resolved`` map it is given.
Resolver = Callable[[OptionType, Any, JSON], str]


@dataclass(frozen=True)
class SyncRecord:
    """One write to the command registry, as the bot sent it."""

    method: str
    guild_id: int | None
    payload: Any


def _check_name(errors: FormErrors, path: list[str | int], name: Any, *, lowercase: bool) -> None:
    if (
        not isinstance(name, str)
        or not _NAME_RE.match(name)
        or (lowercase and name != name.lower())
    ):
        errors.add(path, "APPLICATION_COMMAND_INVALID_NAME", f"Command name is invalid: {name!r}")


def _check_localizations(
    errors: FormErrors, path: list[str | int], item: Mapping[str, Any]
) -> None:
    for key in ("name_localizations", "description_localizations"):
        for locale, text in (item.get(key) or {}).items():
            if locale not in DISCORD_LOCALES:
                errors.add([*path, key, locale], "LOCALE_INVALID", f"Invalid locale {locale!r}")
            elif key == "name_localizations":
                _check_name(errors, [*path, key, locale], text, lowercase=True)
            elif not 1 <= len(text) <= 100:
                errors.add(
                    [*path, key, locale],
                    "BASE_TYPE_BAD_LENGTH",
                    "Must be between 1 and 100 in length.",
                )


def _check_options(
    errors: FormErrors, path: list[str | int], options: Sequence[Mapping[str, Any]]
) -> None:
    if len(options) > 25:
        errors.add([*path, "options"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
    seen_optional = False
    for i, option in enumerate(options):
        here: list[str | int] = [*path, "options", i]
        _check_name(errors, [*here, "name"], option.get("name"), lowercase=True)
        description = option.get("description")
        if not isinstance(description, str) or not 1 <= len(description) <= 100:
            errors.add(
                [*here, "description"],
                "BASE_TYPE_BAD_LENGTH",
                "Must be between 1 and 100 in length.",
            )
        _check_localizations(errors, here, option)
        if option.get("type") in (OptionType.SUB_COMMAND, OptionType.SUB_COMMAND_GROUP):
            _check_options(errors, here, option.get("options") or [])
            continue
        if option.get("required"):
            if seen_optional:
                errors.add(
                    [*here, "required"],
                    "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                    "Required options must be placed before non-required options",
                )
        else:
            seen_optional = True
        if len(option.get("choices") or []) > 25:
            errors.add([*here, "choices"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        for j, choice in enumerate(option.get("choices") or []):
            name = choice.get("name")
            if not isinstance(name, str) or not 1 <= len(name) <= 100:
                errors.add(
                    [*here, "choices", j, "name"],
                    "BASE_TYPE_BAD_LENGTH",
                    "Must be between 1 and 100 in length.",
                )
            errors.max_length([*here, "choices", j, "value"], choice.get("value"), 100)
        if option.get("type") == OptionType.STRING:
            for key, low in (("min_length", 0), ("max_length", 1)):
                length = option.get(key)
                if length is not None and not low <= length <= MAX_STRING_OPTION:
                    errors.add(
                        [*here, key],
                        "NUMBER_TYPE_MAX" if length > MAX_STRING_OPTION else "NUMBER_TYPE_MIN",
                        f"Must be between {low} and {MAX_STRING_OPTION}.",
                    )
        if option.get("choices") and option.get("autocomplete"):
            errors.add(
                [*here, "autocomplete"],
                "APPLICATION_COMMAND_AUTOCOMPLETE_INVALID",
                "Autocomplete cannot be set on options with choices",
            )


def _characters(item: Mapping[str, Any]) -> int:
    """What counts towards a command's size: names, descriptions and choice values, each at
    its longest localisation, through every option and choice."""
    total = 0
    for key in ("name", "description"):
        texts = [str(item.get(key) or ""), *(item.get(f"{key}_localizations") or {}).values()]
        total += max(len(text) for text in texts)
    if "value" in item:
        total += len(str(item["value"]))
    for child in [*(item.get("options") or ()), *(item.get("choices") or ())]:
        total += _characters(child)
    return total


def validate_command(errors: FormErrors, path: list[str | int], command: Mapping[str, Any]) -> None:
    """Check one command against Discord's registration rules, collecting errors under ``path``."""
    chat_input = command.get("type", 1) == 1
    _check_name(errors, [*path, "name"], command.get("name"), lowercase=chat_input)
    description = command.get("description", "")
    if chat_input and not 1 <= len(description) <= 100:
        errors.add(
            [*path, "description"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."
        )
    _check_localizations(errors, path, command)
    _check_options(errors, path, command.get("options") or [])
    if _characters(command) > MAX_COMMAND_CHARACTERS:
        errors.add(
            path,
            "APPLICATION_COMMAND_TOO_LARGE",
            f"Command exceeds maximum size ({MAX_COMMAND_CHARACTERS})",
        )
    # A permission bit set; Discord documents a string and takes a number too (discord.py's).
    permissions = command.get("default_member_permissions")
    if not (
        permissions is None
        or (isinstance(permissions, str) and permissions.isdigit())
        or (isinstance(permissions, int) and not isinstance(permissions, bool) and permissions >= 0)
    ):
        errors.add(
            [*path, "default_member_permissions"],
            "PERMISSIONS_INVALID",
            "A permission bit set (digits), or null",
        )
    for key, allowed in (("contexts", _CONTEXTS), ("integration_types", _INSTALLS)):
        values = command.get(key)
        if values is not None and not set(values) <= allowed:
            errors.add([*path, key], "BASE_TYPE_CHOICES", f"Values must be in {sorted(allowed)}.")


class CommandRegistry:
    """Registered application commands, global (scope ``None``) and per guild.

    Ids stay stable across bulk overwrites for the same (name, type), as they do on Discord, so
    a bot that compares ids between syncs behaves as in production.
    """

    def __init__(self, ids: SnowflakeGenerator, application_id: int) -> None:
        self._ids = ids
        self._application_id = application_id
        self._scopes: dict[int | None, dict[tuple[str, int], JSON]] = {}
        #: every write in order, exactly as sent (tests assert on localizations etc. here)
        self.sync_log: list[SyncRecord] = []

    def _store(self, scope: int | None, payload: Mapping[str, Any], previous: JSON | None) -> JSON:
        stored: JSON = {
            "type": 1,
            "options": [],
            "default_member_permissions": None,
            "nsfw": False,
            "name_localizations": None,
            "description_localizations": None,
            **copy.deepcopy(dict(payload)),
        }
        stored["id"] = previous["id"] if previous else str(self._ids.next())
        stored["application_id"] = str(self._application_id)
        stored["version"] = str(self._ids.next())
        if scope is not None:
            stored["guild_id"] = str(scope)
        return stored

    def overwrite(self, scope: int | None, payloads: Sequence[Mapping[str, Any]]) -> list[JSON]:
        """``PUT`` bulk overwrite: the scope's commands become exactly ``payloads``."""
        self.sync_log.append(SyncRecord("PUT", scope, copy.deepcopy(list(payloads))))
        errors = FormErrors()
        for i, payload in enumerate(payloads):
            validate_command(errors, [i], payload)
        errors.raise_if_any()
        old = self._scopes.get(scope, {})
        new: dict[tuple[str, int], JSON] = {}
        for payload in payloads:
            key = (payload["name"], payload.get("type", 1))
            new[key] = self._store(scope, payload, old.get(key))
        self._scopes[scope] = new
        return list(copy.deepcopy(list(new.values())))

    def upsert(self, scope: int | None, payload: Mapping[str, Any]) -> JSON:
        """``POST``: create or replace one command by (name, type)."""
        self.sync_log.append(SyncRecord("POST", scope, copy.deepcopy(dict(payload))))
        errors = FormErrors()
        validate_command(errors, [], payload)
        errors.raise_if_any()
        commands = self._scopes.setdefault(scope, {})
        key = (payload["name"], payload.get("type", 1))
        commands[key] = self._store(scope, payload, commands.get(key))
        return copy.deepcopy(commands[key])

    def get(self, scope: int | None, command_id: int) -> JSON:
        """One command by id (404 Unknown application command if absent)."""
        for command in self._scopes.get(scope, {}).values():
            if int(command["id"]) == command_id:
                return copy.deepcopy(command)
        raise DiscordError(404, 10063, "Unknown application command")

    def edit(self, scope: int | None, command_id: int, changes: Mapping[str, Any]) -> JSON:
        """``PATCH`` one command."""
        self.sync_log.append(SyncRecord("PATCH", scope, copy.deepcopy(dict(changes))))
        current = self.get(scope, command_id)
        merged = {**current, **copy.deepcopy(dict(changes))}
        commands = self._scopes[scope]
        commands.pop((current["name"], current["type"]))
        commands[(merged["name"], merged["type"])] = merged
        return copy.deepcopy(merged)

    def delete(self, scope: int | None, command_id: int) -> None:
        """``DELETE`` one command."""
        self.sync_log.append(SyncRecord("DELETE", scope, command_id))
        current = self.get(scope, command_id)
        del self._scopes[scope][(current["name"], current["type"])]

    def list(self, scope: int | None) -> list[JSON]:
        """All commands in a scope."""
        return copy.deepcopy(list(self._scopes.get(scope, {}).values()))

    def find(self, name: str, guild_id: int | None, command_type: int = 1) -> JSON | None:
        """The command a user in ``guild_id`` would invoke: guild commands shadow global ones."""
        for scope in (guild_id, None) if guild_id is not None else (None,):
            command = self._scopes.get(scope, {}).get((name, command_type))
            if command is not None:
                return command
        return None

    def describe(self) -> str:
        """Every registered command, for error messages."""
        names = [
            f"/{c['name']}" + (f" (guild {scope})" if scope else "")
            for scope, commands in self._scopes.items()
            for c in commands.values()
        ]
        return ", ".join(names) or "none (did the bot sync its command tree?)"


def _option_names(options: Sequence[Mapping[str, Any]]) -> list[str]:
    return [o["name"] for o in options]


def _check_value(option: Mapping[str, Any], kind: OptionType, value: Any) -> None:
    """Refuse values the Discord client would never send for this option."""
    name = option["name"]
    expected: dict[OptionType, tuple[type, ...]] = {
        OptionType.STRING: (str,),
        OptionType.INTEGER: (int,),
        OptionType.NUMBER: (int, float),
        OptionType.BOOLEAN: (bool,),
    }
    if kind in expected and (
        not isinstance(value, expected[kind])
        or (kind is not OptionType.BOOLEAN and isinstance(value, bool))
    ):
        raise TypeError(f"option {name!r} is {kind.name}; got {value!r}")
    choices = option.get("choices")
    if choices and value not in [c["value"] for c in choices]:
        raise ValueError(
            f"option {name!r} only accepts {[c['value'] for c in choices]}; got {value!r}"
        )
    if kind in (OptionType.INTEGER, OptionType.NUMBER):
        low, high = option.get("min_value"), option.get("max_value")
        if (low is not None and value < low) or (high is not None and value > high):
            raise ValueError(f"option {name!r} must be within [{low}, {high}]; got {value!r}")
    if kind is OptionType.STRING:
        low, high = option.get("min_length", 0), option.get("max_length", 6000)
        if not low <= len(value) <= high:
            raise ValueError(
                f"option {name!r} length must be within [{low}, {high}]; got {len(value)}"
            )


def build_invocation(
    command: Mapping[str, Any],
    path: Sequence[str],
    values: Mapping[str, Any],
    resolver: Resolver,
    *,
    focused: str | None = None,
    validate: bool = True,
) -> JSON:
    """The ``data`` of an application command (or autocomplete) interaction.

    ``path`` is the subcommand group/subcommand below the root command, ``values`` the leaf
    options by name. With ``validate`` the Discord client's own checks apply: required options,
    choices, ranges and types. ``focused`` marks the option being typed (autocomplete), whose
    value is sent as the raw text typed, as Discord does.
    """
    resolved: JSON = {}
    definitions: Sequence[Mapping[str, Any]] = command.get("options") or []
    trail = [command["name"]]
    wrappers: list[JSON] = []
    for step in path:
        subs = [
            o
            for o in definitions
            if o["type"] in (OptionType.SUB_COMMAND, OptionType.SUB_COMMAND_GROUP)
        ]
        match = next((o for o in subs if o["name"] == step), None)
        if match is None:
            raise LookupError(
                f"/{' '.join(trail)} has no subcommand {step!r} (has {_option_names(subs)})"
            )
        wrappers.append({"type": match["type"], "name": step, "options": []})
        definitions = match.get("options") or []
        trail.append(step)
    leftover = [
        o
        for o in definitions
        if o["type"] in (OptionType.SUB_COMMAND, OptionType.SUB_COMMAND_GROUP)
    ]
    if leftover:
        raise LookupError(
            f"/{' '.join(trail)} needs a subcommand: one of {_option_names(leftover)}"
        )

    by_name = {o["name"]: o for o in definitions}
    unknown = set(values) - set(by_name)
    if unknown:
        raise LookupError(
            f"/{' '.join(trail)} has no option(s) {sorted(unknown)} (has {list(by_name)})"
        )
    if focused is not None and focused not in values:
        raise LookupError(f"focused option {focused!r} needs a value (the text typed so far)")
    if validate and focused is None:
        missing = [o["name"] for o in definitions if o.get("required") and o["name"] not in values]
        if missing:
            raise ValueError(f"/{' '.join(trail)} is missing required option(s) {missing}")

    leaf_options: list[JSON] = []
    for definition in definitions:  # definition order, as the Discord client sends them
        name = definition["name"]
        if name not in values:
            continue
        kind = OptionType(definition["type"])
        value = values[name]
        option: JSON = {"name": name, "type": int(kind)}
        if name == focused:
            option["value"] = value if isinstance(value, str) else str(value)
            option["focused"] = True
        elif kind in SNOWFLAKE_OPTION_TYPES:
            option["value"] = resolver(kind, value, resolved)
        else:
            if validate:
                _check_value(definition, kind, value)
            option["value"] = value
        leaf_options.append(option)

    options = leaf_options
    for wrapper in reversed(wrappers):
        wrapper["options"] = options
        options = [wrapper]
    data: JSON = {"id": command["id"], "name": command["name"], "type": command.get("type", 1)}
    if options:
        data["options"] = options
    if resolved:
        data["resolved"] = resolved
    if "guild_id" in command:
        data["guild_id"] = command["guild_id"]
    return data

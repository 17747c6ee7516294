"""Discord's errors, and the limits it enforces on messages and interaction callbacks.

Enforcing the documented limits here means a bot that would be rejected by real Discord is
rejected by the stub too, with the same status, JSON error code and ``errors`` tree, so
discord.py raises the same ``HTTPException`` a user would have hit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .entities import COMPONENTS_V2_FLAG, CallbackType, ComponentType, InteractionType, Upload
from .entities import iter_components as walk_components

JSON = dict[str, Any]

MAX_CONTENT = 2000
MAX_EMBEDS = 10
MAX_EMBED_TOTAL = 6000
MAX_FILES = 10
MAX_ACTION_ROWS = 5
MAX_V2_COMPONENTS = 40
MAX_CHOICES = 25


class DiscordError(Exception):
    """An error response exactly as Discord would send it."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        errors: JSON | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {message} (code {code})")
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors
        self.headers = dict(headers or {})

    def body(self) -> JSON:
        """The JSON body of the error response."""
        body: JSON = {"message": self.message, "code": self.code}
        if self.errors:
            body["errors"] = self.errors
        return body


def unauthorized() -> DiscordError:
    """Missing or wrong bot token."""
    return DiscordError(401, 0, "401: Unauthorized")


def unknown(what: str, code: int) -> DiscordError:
    """``404 Unknown <what>`` with Discord's code for it."""
    return DiscordError(404, code, f"Unknown {what}")


def unknown_route() -> DiscordError:
    """A route the stub does not implement (recorded so tests can see it)."""
    return DiscordError(404, 0, "Unknown")


def unknown_interaction() -> DiscordError:
    """The callback came too late, for an unknown id, or with a wrong token."""
    return DiscordError(404, 10062, "Unknown interaction")


def already_acknowledged() -> DiscordError:
    """A second callback for one interaction."""
    return DiscordError(400, 40060, "Interaction has already been acknowledged.")


def invalid_webhook_token() -> DiscordError:
    """The interaction token expired (15 minutes on Discord) or never existed."""
    return DiscordError(401, 50027, "Invalid Webhook Token")


def request_too_large() -> DiscordError:
    """An upload above the size limit."""
    return DiscordError(413, 40005, "Request entity too large")


def empty_message() -> DiscordError:
    """A message with nothing to show."""
    return DiscordError(400, 50006, "Cannot send an empty message")


class FormErrors:
    """Collects field errors into Discord's nested ``errors`` tree (50035 Invalid Form Body)."""

    def __init__(self) -> None:
        self.tree: JSON = {}

    def add(self, path: Sequence[str | int], code: str, message: str) -> None:
        """Record an error for the field at ``path`` (e.g. ``("embeds", 0, "title")``)."""
        node = self.tree
        for key in path:
            node = node.setdefault(str(key), {})
        node.setdefault("_errors", []).append({"code": code, "message": message})

    def max_length(self, path: Sequence[str | int], value: Any, limit: int) -> None:
        """Flag ``value`` if it is a string longer than ``limit``."""
        if isinstance(value, str) and len(value) > limit:
            self.add(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")

    def error(self) -> DiscordError:
        """The 400 Invalid Form Body error carrying everything recorded so far."""
        return DiscordError(400, 50035, "Invalid Form Body", self.tree)

    def raise_if_any(self) -> None:
        """Raise 400 Invalid Form Body if anything was recorded."""
        if self.tree:
            raise self.error()


def _embed_length(embed: Mapping[str, Any]) -> int:
    total = len(embed.get("title") or "") + len(embed.get("description") or "")
    total += len((embed.get("footer") or {}).get("text") or "")
    total += len((embed.get("author") or {}).get("name") or "")
    for embed_field in embed.get("fields") or ():
        total += len(embed_field.get("name") or "") + len(embed_field.get("value") or "")
    return total


def _check_embeds(errors: FormErrors, embeds: Sequence[Mapping[str, Any]]) -> None:
    if len(embeds) > MAX_EMBEDS:
        errors.add(["embeds"], "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_EMBEDS} or fewer in length.")
    for i, embed in enumerate(embeds):
        errors.max_length(["embeds", i, "title"], embed.get("title"), 256)
        errors.max_length(["embeds", i, "description"], embed.get("description"), 4096)
        errors.max_length(
            ["embeds", i, "footer", "text"], (embed.get("footer") or {}).get("text"), 2048
        )
        errors.max_length(
            ["embeds", i, "author", "name"], (embed.get("author") or {}).get("name"), 256
        )
        fields = embed.get("fields") or []
        if len(fields) > 25:
            errors.add(
                ["embeds", i, "fields"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."
            )
        for j, embed_field in enumerate(fields):
            for key, limit in (("name", 256), ("value", 1024)):
                value = embed_field.get(key)
                if not value:
                    errors.add(
                        ["embeds", i, "fields", j, key],
                        "BASE_TYPE_REQUIRED",
                        "This field is required",
                    )
                errors.max_length(["embeds", i, "fields", j, key], value, limit)
    if sum(_embed_length(e) for e in embeds) > MAX_EMBED_TOTAL:
        errors.add(
            ["embeds"],
            "MAX_EMBED_SIZE_EXCEEDED",
            f"Embed size exceeds maximum size of {MAX_EMBED_TOTAL}",
        )


def _check_components(
    errors: FormErrors, components: Sequence[Mapping[str, Any]], flags: int
) -> None:
    seen: set[str] = set()
    for component in walk_components(components):
        custom_id = component.get("custom_id")
        if custom_id is None:
            continue
        if custom_id in seen:
            errors.add(
                ["components"],
                "COMPONENT_CUSTOM_ID_DUPLICATED",
                "Component custom id cannot be duplicated",
            )
        seen.add(custom_id)
        if len(custom_id) > 100:
            errors.add(
                ["components"], "BASE_TYPE_MAX_LENGTH", "custom_id must be 100 or fewer in length."
            )
    if flags & COMPONENTS_V2_FLAG:
        if sum(1 for _ in walk_components(components)) > MAX_V2_COMPONENTS:
            errors.add(
                ["components"],
                "BASE_TYPE_MAX_LENGTH",
                f"Must be {MAX_V2_COMPONENTS} or fewer in length.",
            )
        return
    if len(components) > MAX_ACTION_ROWS:
        errors.add(
            ["components"], "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_ACTION_ROWS} or fewer in length."
        )
    for i, row in enumerate(components):
        if row.get("type") != ComponentType.ACTION_ROW:
            errors.add(
                ["components", i], "UNION_TYPE_CHOICES", "Top-level components must be action rows"
            )
            continue
        children = row.get("components") or []
        if not 1 <= len(children) <= 5:
            errors.add(
                ["components", i, "components"],
                "BASE_TYPE_BAD_LENGTH",
                "Must be between 1 and 5 in length.",
            )
        if len(children) > 1 and any(child.get("type") in _SELECTS for child in children):
            errors.add(
                ["components", i, "components"],
                "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                "A select menu takes a whole action row",
            )
        for j, child in enumerate(children):
            _check_component(errors, ["components", i, "components", j], child)


_SELECTS = frozenset(
    {
        ComponentType.STRING_SELECT,
        ComponentType.USER_SELECT,
        ComponentType.ROLE_SELECT,
        ComponentType.MENTIONABLE_SELECT,
        ComponentType.CHANNEL_SELECT,
    }
)


def _check_component(
    errors: FormErrors, path: list[str | int], component: Mapping[str, Any]
) -> None:
    """A button's or a select menu's own limits (Discord's component reference)."""
    kind = component.get("type")
    if kind == ComponentType.BUTTON:
        errors.max_length([*path, "label"], component.get("label"), 80)
        errors.max_length([*path, "url"], component.get("url"), 512)
        if not (component.get("label") or component.get("emoji")):
            errors.add(
                path,
                "BUTTON_COMPONENT_LABEL_OR_EMOJI_REQUIRED",
                "A button needs a label or an emoji",
            )
    elif kind in _SELECTS:
        errors.max_length([*path, "placeholder"], component.get("placeholder"), 150)
        low, high = component.get("min_values", 1), component.get("max_values", 1)
        if not 0 <= low <= 25 or not 1 <= high <= 25 or low > high:
            errors.add(path, "BASE_TYPE_BAD_LENGTH", "min_values 0-25, max_values 1-25, min <= max")
        options = component.get("options") or []
        if kind == ComponentType.STRING_SELECT and not 1 <= len(options) <= 25:
            errors.add(
                [*path, "options"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 25 in length."
            )
        for k, option in enumerate(options):
            for key in ("label", "value", "description"):
                errors.max_length([*path, "options", k, key], option.get(key), 100)


def validate_message(
    payload: Mapping[str, Any],
    uploads: Sequence[Upload],
    *,
    size_limit: int,
    editing: bool,
) -> None:
    """Reject a message create/edit payload the way Discord would (raises :class:`DiscordError`)."""
    if any(len(u.data) > size_limit for u in uploads):
        raise request_too_large()
    errors = FormErrors()
    flags = payload.get("flags") or 0
    errors.max_length(["content"], payload.get("content"), MAX_CONTENT)
    errors.max_length(["nonce"], payload.get("nonce"), 25)
    for i, attachment in enumerate(payload.get("attachments") or ()):
        errors.max_length(["attachments", i, "description"], attachment.get("description"), 1024)
    _check_embeds(errors, payload.get("embeds") or [])
    _check_components(errors, payload.get("components") or [], flags)
    if flags & COMPONENTS_V2_FLAG and (payload.get("content") or payload.get("embeds")):
        errors.add(
            ["content"],
            "MESSAGE_CANNOT_USE_LEGACY_FIELDS_WITH_COMPONENTS_V2",
            "The 'content' and 'embeds' fields cannot be used when using components v2",
        )
    if len(uploads) > MAX_FILES:
        errors.add(["files"], "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_FILES} or fewer in length.")
    errors.raise_if_any()
    if not editing and not (
        payload.get("content")
        or payload.get("embeds")
        or payload.get("components")
        or payload.get("sticker_ids")
        or payload.get("poll")
        or uploads
    ):
        raise empty_message()


# Which callbacks Discord accepts for which interaction type.
ALLOWED_CALLBACKS: dict[InteractionType, frozenset[CallbackType]] = {
    InteractionType.APPLICATION_COMMAND: frozenset(
        {
            CallbackType.CHANNEL_MESSAGE,
            CallbackType.DEFERRED_CHANNEL_MESSAGE,
            CallbackType.MODAL,
            CallbackType.LAUNCH_ACTIVITY,
        }
    ),
    InteractionType.MESSAGE_COMPONENT: frozenset(
        {
            CallbackType.CHANNEL_MESSAGE,
            CallbackType.DEFERRED_CHANNEL_MESSAGE,
            CallbackType.DEFERRED_UPDATE_MESSAGE,
            CallbackType.UPDATE_MESSAGE,
            CallbackType.MODAL,
        }
    ),
    InteractionType.AUTOCOMPLETE: frozenset({CallbackType.AUTOCOMPLETE_RESULT}),
    InteractionType.MODAL_SUBMIT: frozenset(
        {
            CallbackType.CHANNEL_MESSAGE,
            CallbackType.DEFERRED_CHANNEL_MESSAGE,
            CallbackType.DEFERRED_UPDATE_MESSAGE,
            CallbackType.UPDATE_MESSAGE,
        }
    ),
}


def validate_callback(
    interaction_type: InteractionType,
    callback_type: int,
    data: Mapping[str, Any],
    uploads: Sequence[Upload],
    *,
    size_limit: int,
) -> CallbackType:
    """Check a callback's type against the interaction and its data against Discord's limits."""
    errors = FormErrors()
    try:
        kind = CallbackType(callback_type)
    except ValueError:
        errors.add(
            ["type"], "BASE_TYPE_CHOICES", f"Value must be one of {[int(c) for c in CallbackType]}."
        )
        raise errors.error() from None
    if kind not in ALLOWED_CALLBACKS[interaction_type]:
        errors.add(
            ["type"],
            "INTERACTION_CALLBACK_TYPE_INVALID",
            f"Callback type {int(kind)} is not valid for interaction type {int(interaction_type)}",
        )
        errors.raise_if_any()
    if kind in (CallbackType.CHANNEL_MESSAGE, CallbackType.UPDATE_MESSAGE):
        validate_message(
            data, uploads, size_limit=size_limit, editing=kind is CallbackType.UPDATE_MESSAGE
        )
    elif kind is CallbackType.AUTOCOMPLETE_RESULT:
        choices = data.get("choices") or []
        if len(choices) > MAX_CHOICES:
            errors.add(
                ["data", "choices"],
                "BASE_TYPE_MAX_LENGTH",
                f"Must be {MAX_CHOICES} or fewer in length.",
            )
        for i, choice in enumerate(choices):
            name = choice.get("name")
            if not isinstance(name, str) or not 1 <= len(name) <= 100:
                errors.add(
                    ["data", "choices", i, "name"],
                    "BASE_TYPE_BAD_LENGTH",
                    "Must be between 1 and 100 in length.",
                )
            errors.max_length(["data", "choices", i, "value"], choice.get("value"), 100)
    elif kind is CallbackType.MODAL:
        errors.max_length(["data", "title"], data.get("title"), 45)
        errors.max_length(["data", "custom_id"], data.get("custom_id"), 100)
        if not 1 <= len(data.get("components") or []) <= 5:
            errors.add(
                ["data", "components"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 5 in length."
            )
    errors.raise_if_any()
    return kind

"""What the Discord client sends when a user uses a select menu or submits a modal."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .models.commands import OptionType
from .models.entities import ComponentType

JSON = dict[str, Any]

#: select menus whose values are users, roles, channels or either of the first two
_ENTITY_SELECTS = {
    ComponentType.USER_SELECT: OptionType.USER,
    ComponentType.ROLE_SELECT: OptionType.ROLE,
    ComponentType.MENTIONABLE_SELECT: OptionType.MENTIONABLE,
    ComponentType.CHANNEL_SELECT: OptionType.CHANNEL,
}
SELECT_TYPES = frozenset({ComponentType.STRING_SELECT, *_ENTITY_SELECTS})


def select_data(
    component: Mapping[str, Any],
    values: Sequence[Any],
    resolve: Callable[[OptionType, Any, JSON], str],
) -> JSON:
    """``values`` (and ``resolved``) of a select interaction.

    A string select only accepts its own option values, as in the client; entity selects take
    users, roles or channels (objects or names) and send their ids plus the resolved objects.
    """
    kind = ComponentType(component["type"])
    if kind is ComponentType.STRING_SELECT:
        allowed = [o["value"] for o in component.get("options", [])]
        bad = [v for v in values if v not in allowed]
        if bad:
            raise ValueError(f"{component['custom_id']!r} has no option(s) {bad} (has {allowed})")
        return {"values": list(values)}
    resolved: JSON = {}
    ids = [resolve(_ENTITY_SELECTS[kind], value, resolved) for value in values]
    return {"values": ids, "resolved": resolved}


def modal_submission(modal: Mapping[str, Any], values: Mapping[str, Any]) -> list[JSON]:
    """The ``components`` of a modal submit: the modal's layout with the user's input.

    Text inputs get ``value``, selects inside labels get ``values``. Required text inputs must
    be filled and every key of ``values`` must exist in the modal.
    """
    remaining = dict(values)
    components = [_submitted(c, remaining) for c in modal.get("components", [])]
    if remaining:
        raise LookupError(f"the modal has no input(s) {sorted(remaining)}")
    return components


def _submitted(component: Mapping[str, Any], values: dict[str, Any]) -> JSON:
    kind = component.get("type")
    if kind == ComponentType.ACTION_ROW:
        return {
            "type": kind,
            "components": [_submitted(c, values) for c in component["components"]],
        }
    if kind == ComponentType.LABEL:
        return {"type": kind, "component": _submitted(component["component"], values)}
    custom_id = component.get("custom_id")
    if custom_id is None:  # text displays and other non-inputs come back without a value
        return {"type": kind, "id": component.get("id")}
    if kind == ComponentType.TEXT_INPUT:
        if custom_id not in values and component.get("required", True):
            raise ValueError(f"text input {custom_id!r} is required")
        return {"type": kind, "custom_id": custom_id, "value": values.pop(custom_id, "")}
    return {"type": kind, "custom_id": custom_id, "values": list(values.pop(custom_id, []))}

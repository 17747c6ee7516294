"""The stub refuses what Discord refuses: message, component and command limits."""

from __future__ import annotations

from typing import Any

import pytest

from tests.discord_stub.models.commands import validate_command
from tests.discord_stub.models.validation import DiscordError, FormErrors, validate_message


def refused(payload: dict[str, Any]) -> dict[str, Any]:
    with pytest.raises(DiscordError) as error:
        validate_message(payload, [], size_limit=1 << 20, editing=False)
    assert (error.value.status, error.value.code) == (400, 50035)
    return error.value.errors or {}


def select(options: int, **fields: Any) -> dict[str, Any]:
    choices = [{"label": f"o{n}", "value": f"v{n}"} for n in range(options)]
    return {"type": 3, "custom_id": "pick", "options": choices, **fields}


def row(*children: dict[str, Any]) -> dict[str, Any]:
    return {"type": 1, "components": list(children)}


BUTTON = {"type": 2, "style": 1, "custom_id": "b", "label": "Go"}


def test_messages_and_components_stay_within_discords_limits():
    validate_message({"content": "x" * 2000}, [], size_limit=1, editing=False)
    assert "content" in refused({"content": "x" * 2001})
    assert "components" in refused({"components": [row(select(26))]})
    assert "components" in refused({"components": [row(select(2, placeholder="p" * 151))]})
    long_label = select(1)
    long_label["options"][0]["label"] = "l" * 101
    assert "components" in refused({"components": [row(long_label)]})
    assert "components" in refused({"components": [row(select(2), BUTTON)]})
    assert "components" in refused({"components": [row({**BUTTON, "label": "x" * 81})]})
    assert "components" in refused({"components": [row({**BUTTON, "label": ""})]})
    validate_message(
        {"components": [row(select(25)), row(BUTTON)]}, [], size_limit=1, editing=False
    )


def command(**fields: Any) -> dict[str, Any]:
    return {"name": "pick", "description": "Pick one", "type": 1, **fields}


def string_option(**fields: Any) -> dict[str, Any]:
    return {"type": 3, "name": "what", "description": "What", **fields}


# 25 choices of 100-character names and values: 5000 characters, so two such options are
# more than a command may hold (8000).
CHOICES = [{"name": f"{n:02d}" + "n" * 98, "value": f"{n:02d}" + "v" * 98} for n in range(25)]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (command(options=[string_option(max_length=6001)]), "max_length"),
        (command(options=[string_option(choices=[{"name": "n" * 101, "value": "v"}])]), "name"),
        (command(options=[string_option(choices=[{"name": "n", "value": "v" * 101}])]), "value"),
        (command(default_member_permissions="manage_guild"), "default_member_permissions"),
        (command(default_member_permissions=-1), "default_member_permissions"),
        (command(contexts=[0, 3]), "contexts"),
        (
            command(options=[string_option(name=f"o{n}", choices=CHOICES) for n in range(2)]),
            "TOO_LARGE",
        ),
    ],
)
def test_commands_are_registered_only_within_discords_limits(payload, field):
    errors = FormErrors()
    validate_command(errors, [], payload)
    assert field in str(errors.tree), errors.tree


def test_a_command_within_the_limits_registers():
    errors = FormErrors()
    validate_command(
        errors,
        [],
        command(
            options=[string_option(max_length=100, autocomplete=True)],
            default_member_permissions="32",
            contexts=[0],
            integration_types=[0],
        ),
    )
    assert errors.tree == {}

"""admin_action: the admin check on every call, and one audit entry however a command ends."""

import asyncio

import discord
import pytest

from bot.features.admin._access import CRASHED, REFUSED, admin_action
from bot.settings import DiscordSettings
from bot.ui.errors import NotAllowed, UserInputError
from tests.bot import doubles

SETTINGS = DiscordSettings(admin_roles=["Course Admin"], _env_file=None)


def interaction_by(name: str, *, roles=(), manage_guild=False) -> discord.Interaction:
    """An interaction from a guild member, built from the real classes' shapes."""
    member = doubles.member(hash(name) % 10**6, name, roles=roles, manage_guild=manage_guild)
    return doubles.interaction_by(member)


async def entries(repo):
    return [(e.actor_name, e.action, e.target, e.ok, e.outcome) for e in await repo.latest_audit()]


async def test_non_admins_are_refused_before_the_body_runs_and_the_refusal_is_logged(repo):
    ran = False
    with pytest.raises(NotAllowed, match="Only admins can do that"):
        async with admin_action(interaction_by("eve"), SETTINGS, repo, "models.load", "sd"):
            ran = True
    assert not ran
    assert await entries(repo) == [("eve", "models.load", "sd", False, REFUSED)]


@pytest.mark.parametrize(
    "who",
    [{"roles": ["course admin"]}, {"manage_guild": True}],
    ids=["admin role, any case", "manage server"],
)
async def test_admins_by_role_or_permission_get_their_outcome_logged(repo, who):
    async with admin_action(interaction_by("prof", **who), SETTINGS, repo, "models.add", "sd") as a:
        a.succeeded("added")
    assert await entries(repo) == [("prof", "models.add", "sd", True, "added")]


async def test_a_refusal_the_admin_sees_is_logged_with_its_words(repo):
    with pytest.raises(UserInputError):
        async with admin_action(interaction_by("prof", manage_guild=True), SETTINGS, repo, "m.x"):
            raise UserInputError("There is no model named “x”.")
    assert await entries(repo) == [
        ("prof", "m.x", "", False, "failed: There is no model named “x”.")
    ]


async def test_unexpected_errors_and_cancellation_are_logged_as_failures(repo):
    admin = interaction_by("prof", manage_guild=True)
    with pytest.raises(RuntimeError):
        async with admin_action(admin, SETTINGS, repo, "models.load", "sd"):
            raise RuntimeError("database on fire")
    with pytest.raises(asyncio.CancelledError):
        async with admin_action(admin, SETTINGS, repo, "models.unload", "sd"):
            raise asyncio.CancelledError
    logged = await entries(repo)
    assert [(action, ok, outcome) for _, action, _, ok, outcome in logged] == [
        ("models.unload", False, CRASHED),
        ("models.load", False, CRASHED),
    ]
    assert all("database on fire" not in outcome for *_, outcome in logged)


async def test_a_change_that_was_made_stays_logged_as_made_when_the_reply_fails(repo):
    admin = interaction_by("prof", manage_guild=True)
    with pytest.raises(discord.HTTPException):
        async with admin_action(admin, SETTINGS, repo, "models.add", "sd") as action:
            action.succeeded("added")
            raise discord.HTTPException(doubles.http_response(500, "oops"), "no reply")
    assert await entries(repo) == [
        ("prof", "models.add", "sd", True, "added (the reply to the admin failed)")
    ]


async def test_reads_log_only_refusals_and_failures(repo):
    admin = interaction_by("prof", manage_guild=True)
    async with admin_action(admin, SETTINGS, repo, "status", audit_success=False):
        pass
    assert await entries(repo) == []
    with pytest.raises(NotAllowed):
        async with admin_action(
            interaction_by("eve"), SETTINGS, repo, "status", audit_success=False
        ):
            pass
    assert await entries(repo) == [("eve", "status", "", False, REFUSED)]

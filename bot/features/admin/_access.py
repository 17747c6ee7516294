"""The admin check and the audit log entry that every admin command gets.

``admin_action`` decides admin in code on every call (``bot.checks.require_admin``), because
Discord's default command permissions belong to the server owner, who can change them. The
entry is written however the command ends: refused, failed with a message the admin saw,
crashed, or done.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import discord

from bot.settings import DiscordSettings
from bot.store.repository import Repository
from bot.ui.checks import require_admin
from bot.ui.errors import NotAllowed, UserFacingError

log = logging.getLogger(__name__)

REFUSED = "refused: not an admin"
CRASHED = "failed: unexpected error (details in the bot's log)"
_MAX_TARGET_CHARS = 500  # the column's size


@dataclass
class AuditedAction:
    """What one admin command did; the command fills in the outcome."""

    action: str
    target: str
    ok: bool = False
    outcome: str = "ended without saying how"

    def succeeded(self, outcome: str) -> None:
        self.ok, self.outcome = True, outcome

    def failed(self, outcome: str) -> None:
        self.ok, self.outcome = False, outcome


@contextlib.asynccontextmanager
async def admin_action(
    interaction: discord.Interaction,
    settings: DiscordSettings,
    repo: Repository,
    action: str,
    target: str = "",
    *,
    audit_success: bool = True,
) -> AsyncIterator[AuditedAction]:
    """Refuse non-admins, then run the body and write the audit entry.

    A ``UserFacingError`` from the body is recorded with its message and re-raised for the
    error handler to show. ``audit_success=False`` is for commands that only read (the log,
    the status): their refusals and failures are recorded, their plain uses are not.
    """
    record = AuditedAction(action, target)
    try:
        require_admin(interaction, settings)
    except NotAllowed:
        record.failed(REFUSED)
        await _write(repo, interaction.user, record)
        raise
    write = True
    try:
        yield record
        write = audit_success
    except UserFacingError as error:
        record.failed(f"failed: {error}")
        raise
    except BaseException:
        if record.ok:
            # The change was made; only telling the admin about it went wrong.
            record.outcome += " (the reply to the admin failed)"
        else:
            # Also a cancelled command (the bot stopping): the log must not read "done".
            record.failed(CRASHED)
        raise
    finally:
        if write:
            await _write(repo, interaction.user, record)


async def _write(repo: Repository, user: discord.abc.User, record: AuditedAction) -> None:
    await repo.audit(
        actor_id=user.id,
        actor_name=user.display_name[:100],
        action=record.action,
        target=record.target[:_MAX_TARGET_CHARS],
        ok=record.ok,
        outcome=record.outcome,
    )
    log.info(
        "admin action %s %r by %s (%d): %s",
        record.action,
        record.target,
        user.display_name,
        user.id,
        record.outcome,
    )

"""Interaction handles: everything the bot did in answer to one dispatched interaction.

A handle is returned by the driver as soon as the interaction is dispatched; the REST routes
append events to it as the bot answers (callback, edits of ``@original``, followups, deletes),
and tests wait on it with bounded waits whose failure message lists what did arrive.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from .models.entities import CallbackType, InteractionType, Message, Upload
from .models.validation import already_acknowledged, invalid_webhook_token, unknown_interaction
from .records import RecordedRequest
from .waiting import Signal

JSON = dict[str, Any]
DEFAULT_TIMEOUT = 5.0


class EventKind(StrEnum):
    """What the bot did."""

    RESPONSE = "response"  # POST /interactions/{id}/{token}/callback
    EDIT_ORIGINAL = "edit_original"  # PATCH .../messages/@original
    DELETE_ORIGINAL = "delete_original"  # DELETE .../messages/@original
    FOLLOWUP = "followup"  # POST /webhooks/{app}/{token}
    EDIT_FOLLOWUP = "edit_followup"  # PATCH .../messages/{id}
    DELETE_FOLLOWUP = "delete_followup"  # DELETE .../messages/{id}


@dataclass(frozen=True)
class InteractionEvent:
    """One thing the bot did for an interaction.

    ``payload`` is what the bot sent (for a response: the callback's ``data``), ``message`` the
    message version that resulted (``None`` for autocomplete results and modals), ``files`` the
    uploaded files, ``at`` seconds since the interaction was dispatched.
    """

    kind: EventKind
    at: float
    payload: JSON
    message: Message | None = None
    response_type: CallbackType | None = None
    files: tuple[Upload, ...] = ()

    def describe(self) -> str:
        """One line for failure messages."""
        head = f"+{self.at:.3f}s {self.kind}"
        if self.response_type is not None:
            head += f" type={int(self.response_type)} ({self.response_type.name.lower()})"
        if self.message is not None:
            return f"{head}: {self.message.summary()}"
        if self.response_type is CallbackType.AUTOCOMPLETE_RESULT:
            return f"{head}: choices={self.payload.get('choices')}"
        return f"{head}: {self.payload}" if self.payload else head


class InteractionHandle:
    """The record of one interaction the stub dispatched, and waits on what the bot did."""

    def __init__(
        self,
        *,
        interaction_id: int,
        token: str,
        interaction_type: InteractionType,
        label: str,
        payload: JSON,
        signal: Signal,
        messages: Mapping[int, Message],
        clicked_message_id: int | None = None,
    ) -> None:
        self.id = interaction_id
        self.token = token
        self.type = interaction_type
        #: e.g. ``/imagine`` or ``click 'reroll:42'`` (used in messages)
        self.label = label
        #: the ``INTERACTION_CREATE`` payload that was dispatched
        self.payload = payload
        self.events: list[InteractionEvent] = []
        #: requests about this interaction that the stub refused (expired token, bad payload...)
        self.rejections: list[RecordedRequest] = []
        self.expired = False
        self.original_message_id: int | None = None
        self.followup_ids: list[int] = []
        #: for component interactions: the message whose component was used
        self.clicked_message_id = clicked_message_id
        self._signal = signal
        self._messages = messages
        self._created = asyncio.get_running_loop().time()

    # -- state queried by the REST routes -------------------------------------------------------

    def age(self) -> float:
        """Seconds since the interaction was dispatched."""
        return asyncio.get_running_loop().time() - self._created

    def check_callback(self, deadline: float) -> None:
        """Refuse a callback the way Discord does: late or expired → 404, repeated → 400."""
        if self.expired or self.age() > deadline:
            raise unknown_interaction()
        if self.response is not None:
            raise already_acknowledged()

    def record(
        self,
        kind: EventKind,
        payload: JSON,
        *,
        message: Message | None = None,
        response_type: CallbackType | None = None,
        files: tuple[Upload, ...] = (),
    ) -> InteractionEvent:
        """Append an event and wake waiters."""
        event = InteractionEvent(kind, self.age(), payload, message, response_type, files)
        self.events.append(event)
        self._signal.notify()
        return event

    def reject(self, request: RecordedRequest) -> None:
        """Remember a refused request so timeouts can explain themselves."""
        self.rejections.append(request)
        self._signal.notify()

    # -- what tests read ------------------------------------------------------------------------

    @property
    def response(self) -> InteractionEvent | None:
        """The callback (the bot's first answer), if it came."""
        return next((e for e in self.events if e.kind is EventKind.RESPONSE), None)

    @property
    def response_type(self) -> CallbackType | None:
        """The callback type, if the bot answered."""
        return self.response.response_type if self.response else None

    @property
    def original(self) -> Message | None:
        """The current version of ``@original`` (deleted ones have ``deleted=True``)."""
        if self.original_message_id is None:
            return None
        return self._messages.get(self.original_message_id)

    @property
    def edits(self) -> list[InteractionEvent]:
        """Edits of ``@original``, in order."""
        return [e for e in self.events if e.kind is EventKind.EDIT_ORIGINAL]

    @property
    def followups(self) -> list[Message]:
        """Current versions of the followup messages, in the order they were sent."""
        return [self._messages[i] for i in self.followup_ids]

    @property
    def messages(self) -> list[Message]:
        """Every message version the bot produced for this interaction, in order."""
        return [e.message for e in self.events if e.message is not None]

    def expire(self) -> None:
        """Make the token invalid now, as if 15 minutes had passed."""
        self.expired = True

    def describe(self) -> str:
        """The interaction's history, for failure messages."""
        lines = [f"interaction {self.id} ({self.label}), {len(self.events)} event(s):"]
        lines += [f"  {i}. {e.describe()}" for i, e in enumerate(self.events, 1)]
        if self.rejections:
            lines.append("  refused requests:")
            lines += [f"    - {r.describe()}" for r in self.rejections]
        return "\n".join(lines)

    async def wait_for(
        self,
        predicate: Callable[[InteractionEvent], bool],
        *,
        timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 - bounded waits are the API
        description: str = "a matching event",
    ) -> InteractionEvent:
        """The first event (already recorded or future) for which ``predicate`` is true."""
        return await self._signal.wait_until(
            lambda: next((e for e in self.events if predicate(e)), None),
            timeout=timeout,
            describe=lambda: f"{description} on {self.describe()}",
        )

    async def wait_for_response(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 - bounded waits are the API
    ) -> InteractionEvent:
        """The callback, once the bot sends it."""
        return await self.wait_for(
            lambda e: e.kind is EventKind.RESPONSE,
            timeout=timeout,
            description="the interaction response (callback)",
        )

    async def wait_for_message(
        self,
        predicate: Callable[[Message], bool] = lambda m: True,
        *,
        timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 - bounded waits are the API
        description: str = "a matching message",
    ) -> Message:
        """The first message version (response, edit or followup) matching ``predicate``."""
        event = await self.wait_for(
            lambda e: e.message is not None and not e.message.deleted and predicate(e.message),
            timeout=timeout,
            description=description,
        )
        assert event.message is not None
        return event.message

    def __repr__(self) -> str:
        return f"<InteractionHandle {self.id} {self.label} events={len(self.events)}>"


def check_token(handle: InteractionHandle | None, lifetime: float) -> InteractionHandle:
    """The handle for a webhook token, or Discord's 401 for an unknown or expired one."""
    if handle is None or handle.expired or handle.age() > lifetime:
        raise invalid_webhook_token()
    return handle

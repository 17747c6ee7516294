"""The interaction callback and the interaction webhook (``@original``, followups)."""

from __future__ import annotations

import copy
from typing import Any

from aiohttp import web

from ..interactions import EventKind, InteractionHandle, check_token
from ..models.entities import EPHEMERAL_FLAG, LOADING_FLAG, CallbackType, Message
from ..models.validation import (
    FormErrors,
    unknown,
    unknown_interaction,
    validate_callback,
    validate_message,
)
from ..state import raise_for_unknown_webhook
from .base import RouteBase, json_ok, no_content_response, truthy

JSON = dict[str, Any]


class InteractionRoutes(RouteBase):
    """Routes the bot answers interactions with.

    They need no bot token, only the interaction's own token, which stops working (401) after
    ``token_lifetime`` or :meth:`InteractionHandle.expire`.
    """

    async def interaction_callback(self, request: web.Request) -> web.Response:
        """The interaction response: message, defer, update, autocomplete result or modal."""
        state = self.state
        handle = state.interactions.get(self._id(request, "interaction_id"))
        if handle is None or handle.token != request.match_info["token"]:
            raise unknown_interaction()
        handle.check_callback(self._callback_deadline())
        body = self._body(request)
        data = body.object.get("data") or {}
        kind = validate_callback(
            handle.type,
            body.object.get("type", 0),
            data,
            body.uploads,
            size_limit=state.attachment_size_limit,
        )
        channel = state.channels[int(handle.payload["channel_id"])]
        message: Message | None = None
        if kind is CallbackType.CHANNEL_MESSAGE:
            message = state.create_message(
                channel, data, body.uploads, source="interaction", interaction=handle
            )
        elif kind is CallbackType.DEFERRED_CHANNEL_MESSAGE:
            placeholder = {"flags": (data.get("flags") or 0) & EPHEMERAL_FLAG}
            message = state.create_message(
                channel,
                placeholder,
                source="interaction",
                interaction=handle,
                extra_flags=LOADING_FLAG,
            )
        elif kind in (CallbackType.DEFERRED_UPDATE_MESSAGE, CallbackType.UPDATE_MESSAGE):
            if handle.clicked_message_id is None:
                errors = FormErrors()
                errors.add(
                    ["type"], "INTERACTION_HAS_NO_MESSAGE", "This interaction has no message"
                )
                raise errors.error()
            message = state.messages[handle.clicked_message_id]
            if kind is CallbackType.UPDATE_MESSAGE:
                message = state.edit_message(message, data, body.uploads)
        if message is not None:
            handle.original_message_id = message.id
        handle.record(
            EventKind.RESPONSE,
            copy.deepcopy(data),
            message=message,
            response_type=kind,
            files=body.uploads,
        )
        if not truthy(request.query.get("with_response")):
            return no_content_response()
        return json_ok(self._callback_response(handle, kind, message))

    def _callback_response(
        self, handle: InteractionHandle, kind: CallbackType, message: Message | None
    ) -> JSON:
        """The ``with_response`` body; discord.py stores views under ``response_message_id``."""
        interaction: JSON = {
            "id": str(handle.id),
            "type": int(handle.type),
            "activity_instance_id": None,
            "response_message_id": None,
            "response_message_loading": kind is CallbackType.DEFERRED_CHANNEL_MESSAGE,
            "response_message_ephemeral": False,
        }
        resource: JSON = {"type": int(kind)}
        if message is not None:
            interaction["response_message_id"] = str(message.id)
            interaction["response_message_ephemeral"] = message.is_ephemeral
            resource["message"] = self.state.message_json(message)
        return {"interaction": interaction, "resource": resource}

    def _webhook_handle(self, request: web.Request) -> InteractionHandle:
        raise_for_unknown_webhook(self.state.application_id, self._id(request, "app_id"))
        handle = self.state.tokens.get(request.match_info["token"])
        return check_token(handle, self._token_lifetime())

    def _webhook_message(self, request: web.Request, handle: InteractionHandle) -> Message:
        """``@original`` or one of this interaction's followups, else 404 Unknown Message."""
        raw = request.match_info["message_id"]
        message_id = (
            handle.original_message_id if raw == "@original" else self._id(request, "message_id")
        )
        if message_id is None or (
            message_id != handle.original_message_id and message_id not in handle.followup_ids
        ):
            raise unknown("Message", 10008)
        return self.state.get_message(None, message_id)

    async def get_webhook_message(self, request: web.Request) -> web.Response:
        """``GET @original`` or a followup."""
        handle = self._webhook_handle(request)
        return json_ok(self.state.message_json(self._webhook_message(request, handle)))

    async def edit_webhook_message(self, request: web.Request) -> web.Response:
        """``PATCH @original`` or a followup (``edit_original_response``, ``followup.edit``)."""
        handle = self._webhook_handle(request)
        message = self._webhook_message(request, handle)
        body = self._body(request)
        validate_message(
            body.object, body.uploads, size_limit=self.state.attachment_size_limit, editing=True
        )
        edited = self.state.edit_message(message, body.object, body.uploads)
        kind = (
            EventKind.EDIT_ORIGINAL
            if edited.id == handle.original_message_id
            else EventKind.EDIT_FOLLOWUP
        )
        handle.record(kind, copy.deepcopy(body.object), message=edited, files=body.uploads)
        return json_ok(self.state.message_json(edited))

    async def delete_webhook_message(self, request: web.Request) -> web.Response:
        """``DELETE @original`` or a followup."""
        handle = self._webhook_handle(request)
        message = self._webhook_message(request, handle)
        deleted = self.state.delete_message(message)
        kind = (
            EventKind.DELETE_ORIGINAL
            if deleted.id == handle.original_message_id
            else EventKind.DELETE_FOLLOWUP
        )
        handle.record(kind, {}, message=deleted)
        return no_content_response()

    async def execute_webhook(self, request: web.Request) -> web.Response:
        """A followup message (``interaction.followup.send``).

        Like Discord, the first followup after a deferred ("thinking") response replaces the
        placeholder instead of creating a new message, keeping its ephemerality.
        """
        handle = self._webhook_handle(request)
        if handle.response is None:
            raise unknown("Webhook", 10015)
        body = self._body(request)
        state = self.state
        validate_message(
            body.object, body.uploads, size_limit=state.attachment_size_limit, editing=False
        )
        original = handle.original
        deferred = handle.response_type is CallbackType.DEFERRED_CHANNEL_MESSAGE
        if deferred and original is not None and original.is_loading:
            if original.deleted:
                raise unknown("Message", 10008)  # the user dismissed the "thinking..." message
            payload = {**body.object}
            payload.pop("flags", None)  # the placeholder already fixed the ephemerality
            message = state.edit_message(original, payload, body.uploads)
        else:
            channel = state.channels[int(handle.payload["channel_id"])]
            message = state.create_message(
                channel, body.object, body.uploads, source="followup", interaction=handle
            )
        handle.followup_ids.append(message.id)
        handle.record(
            EventKind.FOLLOWUP, copy.deepcopy(body.object), message=message, files=body.uploads
        )
        if not truthy(request.query.get("wait")):
            return no_content_response()
        return json_ok(state.message_json(message))

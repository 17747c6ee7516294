"""The websocket gateway: HELLO, IDENTIFY/READY, RESUME/RESUMED, heartbeats, dispatches.

discord.py connects to ``<gateway>?v=10&encoding=json&compress=zlib-stream`` (``zstd-stream``
when a zstd module is installed). For zlib-stream the stub keeps one ``zlib.compressobj`` per
connection and ends every message with a ``Z_SYNC_FLUSH``, which is how discord.py finds
message boundaries. discord.py also accepts plain text frames, which the stub sends for any
other (or no) ``compress`` value.

Dispatches are numbered per session and kept, so a client that RESUMEs after a dropped
connection gets what it missed, then ``RESUMED``, as from Discord.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from .models.payloads import bot_user_payload, guild_create_payload, member_payload
from .state import StubState
from .waiting import Signal

JSON = dict[str, Any]

# Opcodes (https://discord.com/developers/docs/topics/opcodes-and-status-codes)
DISPATCH, HEARTBEAT, IDENTIFY, PRESENCE_UPDATE, VOICE_STATE_UPDATE = 0, 1, 2, 3, 4
RESUME, RECONNECT, REQUEST_GUILD_MEMBERS, INVALID_SESSION, HELLO, HEARTBEAT_ACK = 6, 7, 8, 9, 10, 11
# Close codes
UNKNOWN_OPCODE, DECODE_ERROR, NOT_AUTHENTICATED = 4001, 4002, 4003
AUTHENTICATION_FAILED, ALREADY_AUTHENTICATED = 4004, 4005


@dataclass
class ConnectionRecord:
    """One websocket connection, for tests to assert on reconnects."""

    index: int
    query: dict[str, str]
    #: "identify" or "resume" once the client said which; None before
    kind: str | None = None
    #: whether READY or RESUMED was sent on it
    ready: bool = False
    resumed_from_seq: int | None = None
    closed: bool = False
    close_code: int | None = None
    received_ops: list[int] = field(default_factory=list)


class GatewayConnection:
    """One client websocket: an ordered outbound queue and the compression context."""

    def __init__(self, ws: web.WebSocketResponse, record: ConnectionRecord, request: web.Request):
        self.ws = ws
        self.record = record
        self.request = request
        self.identified = False
        self.queue: asyncio.Queue[JSON] = asyncio.Queue()
        self.finished = asyncio.Event()
        compress = record.query.get("compress")
        # One compressor per connection: zlib-stream is a single deflate stream for its lifetime.
        self._zlib = zlib.compressobj() if compress == "zlib-stream" else None

    def enqueue(self, frame: JSON) -> None:
        """Queue a frame; the writer sends frames strictly in this order."""
        self.queue.put_nowait(frame)

    async def run_writer(self) -> None:
        """Send queued frames one at a time (compression state requires strict ordering)."""
        while True:
            frame = await self.queue.get()
            text = json.dumps(frame, separators=(",", ":"))
            if self.ws.closed:
                return
            if self._zlib is not None:
                data = self._zlib.compress(text.encode()) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
                await self.ws.send_bytes(data)
            else:
                await self.ws.send_str(text)


class GatewayHub:
    """The gateway endpoint and the (single, resumable) session of the bot."""

    def __init__(
        self,
        state: StubState,
        signal: Signal,
        *,
        token: str | None,
        heartbeat_interval_ms: int,
        resume_url: str = "",
        history_limit: int = 2000,
    ) -> None:
        self.state = state
        self.signal = signal
        self.token = token
        self.heartbeat_interval_ms = heartbeat_interval_ms
        #: set by the server once it listens (``resume_gateway_url`` in READY)
        self.resume_url = resume_url
        self.session_id: str | None = None
        self.sequence = 0
        self.history: deque[JSON] = deque(maxlen=history_limit)
        #: the connection that completed IDENTIFY or RESUME and receives dispatches
        self.live: GatewayConnection | None = None
        self.connections: list[ConnectionRecord] = []
        self.identify_payloads: list[JSON] = []
        self.presence_updates: list[JSON] = []
        self.intents = 0
        self._open: set[GatewayConnection] = set()
        state.emit = self.emit

    # -- dispatching ----------------------------------------------------------------------------

    def dispatch(self, event: str, data: JSON) -> int:
        """Number, keep and (if connected) send an event; returns its sequence number.

        Without a live connection the event waits in the history for a RESUME.
        """
        self.sequence += 1
        frame = {"op": DISPATCH, "t": event, "s": self.sequence, "d": data}
        self.history.append(frame)
        if self.live is not None:
            self.live.enqueue(frame)
        return self.sequence

    def emit(self, event: str, data: JSON, required_intents: int) -> None:
        """Dispatch a state change if the session asked for it (``0``: always)."""
        if self.session_id is None:
            return
        if required_intents and not self.intents & required_intents:
            return
        self.dispatch(event, data)

    # -- the websocket endpoint -----------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        """``GET /gateway``: upgrade, say HELLO, then serve the client until it goes."""
        # ``timeout`` bounds the close handshake; discord.py answers a close frame at once.
        ws = web.WebSocketResponse(timeout=2.0, max_msg_size=0, autoping=True)
        await ws.prepare(request)
        record = ConnectionRecord(len(self.connections), dict(request.query))
        self.connections.append(record)
        connection = GatewayConnection(ws, record, request)
        self._open.add(connection)
        writer = asyncio.create_task(connection.run_writer(), name="discord-stub-gateway-writer")
        connection.enqueue(
            {
                "op": HELLO,
                "d": {"heartbeat_interval": self.heartbeat_interval_ms, "_trace": ["stub-gateway"]},
                "s": None,
                "t": None,
            }
        )
        try:
            async for message in ws:
                if message.type is not WSMsgType.TEXT:
                    await ws.close(code=DECODE_ERROR, message=b"Decode error")
                    break
                try:
                    frame = json.loads(message.data)
                except ValueError:
                    await ws.close(code=DECODE_ERROR, message=b"Decode error")
                    break
                await self._on_frame(connection, frame)
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            record.closed = True
            record.close_code = ws.close_code
            self._open.discard(connection)
            if self.live is connection:
                self.live = None
            connection.finished.set()
            self.signal.notify()
        return ws

    async def _on_frame(self, connection: GatewayConnection, frame: JSON) -> None:
        op, data = frame.get("op"), frame.get("d")
        connection.record.received_ops.append(op)
        if op == HEARTBEAT:
            connection.enqueue({"op": HEARTBEAT_ACK, "d": None, "s": None, "t": None})
        elif op == IDENTIFY:
            await self._identify(connection, data or {})
        elif op == RESUME:
            await self._resume(connection, data or {})
        elif not connection.identified:
            await connection.ws.close(code=NOT_AUTHENTICATED, message=b"Not authenticated.")
        elif op == PRESENCE_UPDATE:
            self.presence_updates.append(data)
        elif op == REQUEST_GUILD_MEMBERS:
            self._send_member_chunk(data or {})
        elif op == VOICE_STATE_UPDATE:
            pass  # no voice in the stub
        else:
            await connection.ws.close(code=UNKNOWN_OPCODE, message=b"Unknown opcode.")
        self.signal.notify()

    async def _authenticate(self, connection: GatewayConnection, token: Any) -> bool:
        if connection.identified:
            await connection.ws.close(code=ALREADY_AUTHENTICATED, message=b"Already authenticated.")
            return False
        if not token or (self.token is not None and token != self.token):
            await connection.ws.close(code=AUTHENTICATION_FAILED, message=b"Authentication failed.")
            return False
        connection.identified = True
        return True

    async def _identify(self, connection: GatewayConnection, data: JSON) -> None:
        if not await self._authenticate(connection, data.get("token")):
            return
        self.identify_payloads.append(data)
        self.intents = int(data.get("intents") or 0)
        self.session_id = secrets.token_hex(16)
        self.sequence = 0
        self.history.clear()
        connection.record.kind = "identify"
        self.live = connection
        state = self.state
        ready: JSON = {
            "v": 10,
            "user": bot_user_payload(state.bot),
            "guilds": [{"id": str(g), "unavailable": True} for g in state.guilds],
            "session_id": self.session_id,
            "session_type": "normal",
            "resume_gateway_url": self.resume_url,
            "application": {"id": str(state.application_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "user_settings": {},
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "_trace": ["stub-gateway"],
        }
        if "shard" in data:
            ready["shard"] = data["shard"]
        self.dispatch("READY", ready)
        for guild in state.guilds.values():
            channels = [state.channels[c] for c in guild.channel_ids]
            members = [state.users[u] for u in guild.member_ids]
            self.dispatch(
                "GUILD_CREATE", guild_create_payload(guild, channels, members, state.users)
            )
        connection.record.ready = True

    async def _resume(self, connection: GatewayConnection, data: JSON) -> None:
        if not await self._authenticate(connection, data.get("token")):
            return
        connection.record.kind = "resume"
        seq = data.get("seq") or 0
        oldest = self.history[0]["s"] if self.history else self.sequence + 1
        if data.get("session_id") != self.session_id or seq + 1 < oldest:
            # Not resumable: discord.py then reconnects and identifies afresh.
            connection.identified = False
            connection.enqueue({"op": INVALID_SESSION, "d": False, "s": None, "t": None})
            return
        connection.record.resumed_from_seq = seq
        for frame in self.history:
            if frame["s"] > seq:
                connection.enqueue(frame)
        self.live = connection
        self.dispatch("RESUMED", {"_trace": ["stub-gateway"]})
        connection.record.ready = True

    def _send_member_chunk(self, data: JSON) -> None:
        guild = self.state.guilds.get(int(data.get("guild_id") or 0))
        if guild is None:
            return
        users = [self.state.users[u] for u in guild.member_ids]
        if data.get("user_ids"):
            wanted = {int(u) for u in data["user_ids"]}
            users = [u for u in users if u.id in wanted]
        elif data.get("query"):
            users = [u for u in users if u.name.lower().startswith(str(data["query"]).lower())]
        if data.get("limit"):
            users = users[: int(data["limit"])]
        chunk: JSON = {
            "guild_id": str(guild.id),
            "members": [member_payload(u, guild) for u in users],
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
        }
        if data.get("nonce"):
            chunk["nonce"] = data["nonce"]
        self.dispatch("GUILD_MEMBERS_CHUNK", chunk)

    # -- server-side actions for tests ----------------------------------------------------------

    def _require_live(self) -> GatewayConnection:
        if self.live is None:
            raise RuntimeError("no live gateway connection")
        return self.live

    async def drop(self, *, code: int = 4000, abrupt: bool = False, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Close the live connection from the server side and wait until it is gone.

        With ``abrupt`` the TCP connection is cut without a close frame, like a network drop.
        """
        connection = self._require_live()
        async with asyncio.timeout(timeout):
            if abrupt and connection.request.transport is not None:
                connection.request.transport.abort()
            else:
                await connection.ws.close(code=code, message=b"stub dropped the connection")
            await connection.finished.wait()

    def send_reconnect(self) -> None:
        """Send op 7 RECONNECT: the client closes and resumes."""
        self._require_live().enqueue({"op": RECONNECT, "d": None, "s": None, "t": None})

    def invalidate_session(self, *, resumable: bool = False) -> None:
        """Send op 9 INVALID_SESSION; not resumable forces a fresh IDENTIFY."""
        connection = self._require_live()
        if not resumable:
            self.session_id = None
        connection.enqueue({"op": INVALID_SESSION, "d": resumable, "s": None, "t": None})

    async def wait_live(
        self,
        *,
        timeout: float,  # noqa: ASYNC109 - bounded waits are the API
        after: int | None = None,
    ) -> ConnectionRecord:
        """The live connection once READY/RESUMED was sent on it (newer than ``after``)."""

        def check() -> ConnectionRecord | None:
            live = self.live
            if live is None or not live.record.ready:
                return None
            if after is not None and live.record.index <= after:
                return None
            return live.record

        def describe() -> str:
            history = "; ".join(
                f"#{r.index} {r.kind or 'no identify/resume'}"
                + (f", closed {r.close_code}" if r.closed else ", open")
                for r in self.connections
            )
            return f"a live gateway connection (connections: {history or 'none'})"

        return await self.signal.wait_until(check, timeout=timeout, describe=describe)

    async def close_all(self, *, code: int = 1001) -> None:
        """Close every open websocket (stub shutdown), bounded by the close timeout."""
        for connection in list(self._open):
            with contextlib.suppress(Exception):
                await connection.ws.close(code=code, message=b"stub stopping")

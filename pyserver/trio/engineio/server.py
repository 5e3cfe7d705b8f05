"""``EngineIOServer``: the two transports over one session table, and the public API.

It composes :class:`~pyserver.trio.engineio.polling.PollingTransport` and
:class:`~pyserver.trio.engineio.websocket.WebSocketTransport` (both over
:class:`~pyserver.trio.engineio.table.SessionTable`) into the ``Mount`` the HTTP shell routes
the Engine.IO path to, takes the options (``__init__``), and runs the one timer task
(``serve``). Mixins rather than objects that call each other: a method found through the
class's MRO costs what a method of one class costs, so the per-message paths pay nothing for
the split.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import trio

from pyserver.engineio.http_answers import Cors, OriginSpec
from pyserver.engineio.session import CloseReason, SessionConfig
from pyserver.http import Request
from pyserver.metrics import EngineCounters
from pyserver.refusals import BurstLog
from pyserver.trio.engineio.hooks import AllowRequest, Cookie, HeadersHook, is_async, make_cookie
from pyserver.trio.engineio.polling import PollingTransport
from pyserver.trio.engineio.session import (
    ConnectHandler,
    DisconnectHandler,
    EngineSession,
    MessageHandler,
    OutgoingMessage,
)
from pyserver.trio.engineio.table import RequestRefused
from pyserver.trio.engineio.websocket import WebSocketTransport
from pyserver.trio.timers import DeadlineTimer

__all__ = ["EngineIOServer"]


class EngineIOServer(PollingTransport, WebSocketTransport):
    """Engine.IO v4 over HTTP long-polling and WebSocket (implements the HTTP ``Mount``).

    Run its timer with ``await nursery.start(server.serve)`` and mount it on the App at the
    Engine.IO path. Callbacks are plain functions called synchronously from the transport's
    task: ``on_connect(session)``, ``on_message(session, data)`` (``str`` or ``bytes``),
    ``on_disconnect(session, reason)`` (exactly once per session, with a
    :class:`CloseReason`). They must not block. ``on_message`` may return work for the
    message (an async function without arguments), which the server runs: over WebSocket
    in the task that read the message, right after its batch, without a task switch
    (:mod:`pyserver.trio.websocket.inline`); over long-polling in a task of ``serve``'s
    nursery."""

    def __init__(
        self,
        *,
        ping_interval: float = 25.0,
        ping_timeout: float = 20.0,
        upgrade_timeout: float = 10.0,
        max_payload: int = 1_000_000,
        transports: Sequence[str] = ("polling", "websocket"),
        allow_upgrades: bool = True,
        cors_allowed_origins: OriginSpec = None,
        cors_credentials: bool = False,
        http_compression: bool = True,
        compression_threshold: int = 1024,
        compression_level: int = -1,
        max_queued_packets: int = 1024,
        max_queued_bytes: int = 16 * 1024 * 1024,
        max_sessions_per_ip: int | None = None,
        allow_eio3: bool = False,
        allow_request: AllowRequest | None = None,
        cookie: Cookie | Mapping[str, Any] | str | bool | None = None,
        generate_id: Callable[[Request], str] | None = None,
        initial_headers: HeadersHook | None = None,
        headers: HeadersHook | None = None,
        on_connection_error: Callable[[RequestRefused], None] | None = None,
        on_connect: ConnectHandler | None = None,
        on_message: MessageHandler | None = None,
        on_disconnect: DisconnectHandler | None = None,
    ) -> None:
        unknown = set(transports) - {"polling", "websocket"}
        if unknown or not transports:
            raise ValueError(f"transports must be 'polling' and/or 'websocket', not {unknown}")
        self.config = SessionConfig(
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            upgrade_timeout=upgrade_timeout,
            max_payload=max_payload,
            allow_upgrades=allow_upgrades and "websocket" in transports,
            max_queued_packets=max_queued_packets,
            max_queued_bytes=max_queued_bytes,
        )
        self.transports = frozenset(transports)
        self.cors = (
            Cors(cors_allowed_origins, credentials=cors_credentials)
            if cors_allowed_origins is not None
            else None
        )
        self.http_compression = http_compression
        self.compression_threshold = compression_threshold
        if not -1 <= compression_level <= 9:
            raise ValueError(f"compression_level must be -1 to 9, not {compression_level}")
        self.compression_level = compression_level
        self.allow_request = allow_request
        # the hooks of pyserver.trio.engineio.hooks (cookie, headers, ids, async allow_request)
        self.cookie = make_cookie(cookie)
        self.generate_id = generate_id
        self.initial_headers = initial_headers
        self.headers = headers
        self._hooked = self.cookie is not None or initial_headers is not None or headers is not None
        self._allow_async = is_async(allow_request)
        #: Sessions open at once per client address (the TCP peer's, IPv6 by /64; see
        #: ``pyserver.refusals.client_key``). A handshake over it is answered 503 with
        #: ``{"code": 4, "message": "Too many sessions"}`` (the reference server's code for a
        #: refused handshake, ``allowRequest``'s; 503 as it is temporary: the client retries
        #: with its backoff), reported to ``on_connection_error`` and logged once per burst.
        #: None: no cap (the default: behind a reverse proxy every client has its address).
        self.max_sessions_per_ip = max_sessions_per_ip
        #: Serve Engine.IO v3 (``EIO=3``: socket.io-client 2.x) as well, as Node's
        #: ``allowEIO3``; off: such a request is refused ("Unsupported protocol version").
        self.allow_eio3 = allow_eio3
        self._sessions_per_ip = {}
        self._session_refusals = BurstLog()
        #: Called with a :class:`RequestRefused` for every refused request (unknown sid or
        #: transport, bad handshake, ``allow_request`` said no, ...), as the reference
        #: server's ``io.engine.on("connection_error")``; each is also logged on one line.
        self.on_connection_error = on_connection_error
        self.on_connect = on_connect
        self.on_message = on_message
        self.on_disconnect = on_disconnect
        self.sessions = {}
        #: The Engine.IO counters (:class:`pyserver.metrics.EngineCounters`: packets and
        #: bytes in and out, sessions opened by transport and closed by reason, upgrades,
        #: refusals), always kept: each is an attribute bumped in place where it happens.
        self.counters = EngineCounters()
        # a str of up to this many characters is within max_payload whatever it holds
        self._ws_char_limit = max_payload // 4
        self._timer = DeadlineTimer(self._session_due)
        self._running = False
        self._warned_not_running = False
        self._nursery: trio.Nursery | None = None  # serve()'s: work for polled messages

    # ------------------------------------------------------------------ public API

    def broadcast(self, data: str | bytes, sessions: Iterable[EngineSession] | None = None) -> None:
        """Send one message to many sessions (all by default), encoded once."""
        message = OutgoingMessage(data)
        for session in list(self.sessions.values()) if sessions is None else sessions:
            session.send_encoded(message)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run every session's timers until cancelled; then close all sessions
        ("server shutting down")."""
        if self._running:
            raise RuntimeError("EngineIOServer.serve() is already running")
        self._running = True
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await self._timer.run()
        finally:
            self._nursery = None
            self._running = False
            self.close_all(CloseReason.SERVER_SHUTTING_DOWN)

    def close_all(self, reason: CloseReason = CloseReason.SERVER_SHUTTING_DOWN) -> None:
        now = trio.current_time()
        for session in list(self.sessions.values()):
            self._process(session, session.core.close(reason, now))

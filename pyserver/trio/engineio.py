"""The Engine.IO v4 server on Trio: the ``Mount`` that owns ``/engine.io/`` (or ``/socket.io/``).

It drives one sans-IO :class:`~pyserver.engineio.session.Session` per session id and does the
I/O around it: the session table, one timer task for every session's heartbeat and upgrade
deadlines (a heap, no task per session), long-polling GETs parked until there is something to
send, WebSocket sessions fed straight by their WebSocket's reader, the polling -> WebSocket
upgrade, CORS and HTTP compression.

Resource handling: every session's outgoing queue is bounded (``max_queued_packets`` /
``max_queued_bytes`` while on polling; the WebSocket's own outbox bound once on WebSocket); a
client that does not read is closed, never buffered without limit. POST bodies and WebSocket
messages above ``max_payload`` close the session (413 on polling, close 1009 on WebSocket).

Error handling: a peer's protocol error is answered on the wire (a JSON ``{"code", "message"}``
400/403, a close packet, a WebSocket close) and the session ends with the reason named as the
reference server names it. A callback exception is logged once (``pyserver.engineio``) and
closes that session with "transport error"; it never reaches the HTTP server.

The layer above (Socket.IO) uses it like this::

    eio = EngineIOServer(
        ping_interval=25, ping_timeout=20, max_payload=1_000_000,
        cors_allowed_origins="*",              # or a list, a predicate, None (no CORS)
        on_connect=connected,                  # (session) -> None
        on_message=received,                   # (session, data: str | bytes) -> None
        on_disconnect=gone,                    # (session, reason: CloseReason) -> None
    )
    app.mount("/socket.io/", eio)              # the HTTP shell routes the path to it
    await nursery.start(eio.serve)             # the one timer task (heartbeats, upgrades)

Callbacks are synchronous and run in the transport's task (the WebSocket reader loop, the
POST handler, the timer): no task per message. They must not block; spawn tasks for slow work.
``on_disconnect`` is called exactly once per session, with one of the reference server's
reasons: "transport close", "transport error", "ping timeout", "parse error", "forced close",
"server shutting down" (:class:`CloseReason`, a ``str`` enum).

An :class:`EngineSession` (``session.sid`` is an :data:`EioSid`; ``session.request`` is the
opening request; ``session.data`` is a dict free for the next layer) has:

* ``send(data)``: queue one message, ``str`` (text) or ``bytes`` (binary). Never blocks. On
  WebSocket it goes straight to the connection's bounded outbox; on polling to the session's
  bounded queue (past ``max_queued_packets``/``max_queued_bytes`` the session closes with
  "transport error": a slow consumer never grows memory without limit).
* ``send_encoded(OutgoingMessage(data))``: the broadcast path. Build one
  :class:`OutgoingMessage` per broadcast; every WebSocket recipient gets the same frame bytes
  (``_frames.encode_message`` called once), every polling recipient the same packet.
  ``eio.broadcast(data, sessions)`` does exactly that.
* ``close(reason=CloseReason.FORCED_CLOSE)``: end the session from the server side;
  ``on_disconnect`` gets ``reason``. "forced close" (the default, the reference server's
  ``socket.close()``) flushes queued packets first (on polling they leave with the next GET,
  then the session ends); another reason, such as "parse error" for a client that broke the
  protocol of the layer above, ends it at once (what is queued and a ``1`` still go to the
  WebSocket writer or a waiting GET). A no-op once closed.
* ``outbox_depth``: how many messages are queued and not yet on their way (packets waiting
  for a GET on polling, frames waiting for the writer on WebSocket); read-only, for
  monitoring. ``writable``: open and nothing queued, so a message sent now is the next one
  out (a volatile send checks it and drops the message otherwise).
* ``closed``; ``await wait_closed()``; ``transport`` ("polling" or "websocket").

``eio.sessions`` maps each open sid to its session.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import trio

from pyserver import _frames
from pyserver.engineio.http_answers import (
    BAD_HANDSHAKE_METHOD,
    BAD_REQUEST,
    ERROR_MESSAGES,
    FORBIDDEN,
    UNKNOWN_SID,
    UNKNOWN_TRANSPORT,
    UNSUPPORTED,
    Cors,
    OriginSpec,
    compress,
    error_response,
)
from pyserver.engineio.packets import Packet, PacketType, encode_packet, encode_payload
from pyserver.engineio.session import (
    CloseReason,
    EioSid,
    Event,
    MessageReceived,
    ProbeFailed,
    Session,
    SessionClosed,
    SessionConfig,
    SessionState,
    Transport,
    UpgradeCompleted,
    UpgradeState,
)
from pyserver.errors import ConnectionClosed
from pyserver.http import Request, Response, WebSocket
from pyserver.logtext import shown
from pyserver.trio.http.server import BurstLog, client_key
from pyserver.trio.timers import DeadlineTimer
from pyserver.trio.websocket.connection import WebSocket as TrioWebSocket
from pyserver.trio.websocket.connection import send_frames_to_many

__all__ = [
    "EngineIOServer",
    "EngineSession",
    "OutgoingMessage",
    "RequestRefused",
    "send_encoded_many",
]

logger = logging.getLogger("pyserver.engineio")

_TOO_MANY_SESSIONS = "Too many sessions"
_TOO_MANY_SESSIONS_BODY = b'{"code":4,"message":"Too many sessions"}'

_UPGRADING = frozenset({UpgradeState.PROBING, UpgradeState.PROBED})
UPGRADE_GRACE = 0.1
"""Seconds a GET arriving during a probe waits for the upgrade to settle first."""
_ERROR_CLOSE_CODES = frozenset({1002, 1003, 1007, 1008, 1009, 1010, 1011})

ConnectHandler = Callable[["EngineSession"], None]
MessageHandler = Callable[["EngineSession", str | bytes], None]
DisconnectHandler = Callable[["EngineSession", CloseReason], None]


class OutgoingMessage:
    """One message encoded once for many sessions (the broadcast path).

    ``packet`` serves polling sessions; :meth:`frame` is the whole WebSocket frame, built on
    first use and shared by every WebSocket session."""

    __slots__ = ("_frame", "packet", "wire")

    def __init__(self, data: str | bytes) -> None:
        self.packet = Packet(PacketType.MESSAGE, data)
        self.wire: str | bytes = encode_packet(self.packet)
        self._frame: bytes | None = None

    def frame(self) -> bytes:
        if self._frame is None:
            self._frame = _frames.encode_message(self.wire)
        return self._frame


def send_encoded_many(
    messages: Sequence[OutgoingMessage], sessions: Iterable[EngineSession]
) -> None:
    """Queue ``messages`` (in order: a packet and its attachments) for every session: the
    broadcast path, the same as ``session.send_encoded(m)`` for each session and message,
    with the frames built once and the WebSocket recipients' direct writes made in one
    call (``send_frames_to_many``)."""
    sockets: list[TrioWebSocket] = []
    others: list[WebSocket] = []
    for session in sessions:
        ws = session._ws
        if ws is None:
            for message in messages:
                session._server._process(session, session.core.send_packet(message.packet))
        elif ws.__class__ is TrioWebSocket:
            sockets.append(ws)
        else:
            others.append(ws)
    if sockets or others:
        frames = [message.frame() for message in messages]
        send_frames_to_many(sockets, frames)
        for other in others:
            other.send_frames_nowait(frames)


class EngineSession:
    """One Engine.IO session as the next layer sees it. Methods never block."""

    __slots__ = (
        "__weakref__",
        "_closed_event",
        "_poll_wakeup",
        "_probe_scope",
        "_server",
        "_upgrade_waiter",
        "_ws",
        "_ws_close_code",
        "core",
        "data",
        "request",
        "sid",
    )

    def __init__(self, server: EngineIOServer, core: Session, request: Request) -> None:
        self._server = server
        self.core = core
        self.sid: EioSid = core.sid
        #: The request that opened the session (headers, query, remote address).
        self.request = request
        #: Free for the next layer (Socket.IO keeps its per-connection state here).
        self.data: dict[str, Any] = {}
        self._ws: WebSocket | None = None  # set while the session runs on WebSocket
        self._ws_close_code = 1000  # what the WebSocket closes with when the session ends
        self._poll_wakeup: trio.Event | None = None
        self._upgrade_waiter: trio.Event | None = None
        self._probe_scope: trio.CancelScope | None = None
        self._closed_event: trio.Event | None = None

    @property
    def transport(self) -> Transport:
        return self.core.transport

    @property
    def closed(self) -> bool:
        return self.core.state is not SessionState.OPEN

    def send(self, data: str | bytes) -> None:
        """Queue one message (text or binary). Never blocks; dropped once closed."""
        ws = self._ws
        if ws is not None:
            try:
                ws.send_nowait("4" + data if data.__class__ is str else data)
            except ConnectionClosed:
                pass
            return
        self._server._process(self, self.core.send_message(data))

    def send_encoded(self, message: OutgoingMessage) -> None:
        """Queue a message encoded once for many recipients (see :class:`OutgoingMessage`)."""
        ws = self._ws
        if ws is not None:
            try:
                ws.send_frame_nowait(message.frame())
            except ConnectionClosed:
                pass
            return
        self._server._process(self, self.core.send_packet(message.packet))

    @property
    def outbox_depth(self) -> int:
        """Messages queued for this session and not yet on their way: packets waiting for a
        GET (polling) or frames waiting for the WebSocket writer. Read-only; never blocks."""
        ws = self._ws
        return self.core.queued + (ws.outbox_depth if ws is not None else 0)

    @property
    def writable(self) -> bool:
        """True while the session is open and nothing is queued for it, so a message sent
        now is the next one out (what a volatile emit checks before sending)."""
        return self.core.state is SessionState.OPEN and self.outbox_depth == 0

    def close(self, reason: CloseReason = CloseReason.FORCED_CLOSE) -> None:
        """Close the session from this side; ``on_disconnect`` gets ``reason``.

        "forced close" (the default, what the reference server's ``socket.close()`` gives)
        flushes queued packets first: on polling they and a ``1`` leave with the next GET,
        and the session ends then. Any other reason (the next layer uses "parse error" for
        a client that broke its protocol) ends the session at once, after handing what is
        queued and a ``1`` to the WebSocket writer or to a waiting GET. A no-op once closed.
        """
        self._server._process(self, self.core.close(reason, trio.current_time()))

    async def wait_closed(self) -> None:
        if self.core.state is SessionState.CLOSED:
            await trio.lowlevel.checkpoint()
            return
        if self._closed_event is None:
            self._closed_event = trio.Event()
        await self._closed_event.wait()

    def _receive_ws(self, message: str | bytes) -> None:
        """One WebSocket message (one packet), called by the WebSocket's reader. Message
        packets (the hot path) go straight to ``on_message``: they change no session state,
        so the core only sees the others."""
        core = self.core
        if core.state is not SessionState.OPEN:
            return  # closing: what the client still sends is dropped
        server = self._server
        if len(message) > server._ws_char_limit and _too_big(message, server.config.max_payload):
            self._ws_close_code = 1009
            server._process(
                self, core.transport_closed(CloseReason.TRANSPORT_ERROR, "message too big")
            )
            return
        if message.__class__ is str:
            if message[:1] != "4":  # not a message packet: the state machine decides
                server._process(self, core.receive_data(message, trio.current_time()))
                return
            message = message[1:]
        on_message = server.on_message
        if on_message is not None:
            try:
                on_message(self, message)
            except Exception:
                server._callback_failed(self, "on_message")

    def __repr__(self) -> str:
        return f"<EngineSession {self.sid} {self.core.transport} {self.core.state.value}>"


@dataclass(frozen=True, slots=True)
class RequestRefused:
    """A request the server refused (``EngineIOServer.on_connection_error``): the request,
    and the reference server's error ``code`` (0 to 5) and ``message``, as answered."""

    request: Request
    code: int
    message: str


class EngineIOServer:
    """Engine.IO v4 over HTTP long-polling and WebSocket (implements the HTTP ``Mount``).

    Run its timer with ``await nursery.start(server.serve)`` and mount it on the App at the
    Engine.IO path. Callbacks are plain functions called synchronously from the transport's
    task: ``on_connect(session)``, ``on_message(session, data)`` (``str`` or ``bytes``),
    ``on_disconnect(session, reason)`` (exactly once per session, with a
    :class:`CloseReason`). They must not block; spawn tasks for slow work."""

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
        max_queued_packets: int = 1024,
        max_queued_bytes: int = 16 * 1024 * 1024,
        max_sessions_per_ip: int | None = None,
        allow_request: Callable[[Request], bool] | None = None,
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
        self.allow_request = allow_request
        #: Sessions open at once per client address (the TCP peer's, IPv6 by /64; see
        #: ``pyserver.trio.http.server.client_key``). A handshake over it is answered 503 with
        #: ``{"code": 4, "message": "Too many sessions"}`` (the reference server's code for a
        #: refused handshake, ``allowRequest``'s; 503 as it is temporary: the client retries
        #: with its backoff), reported to ``on_connection_error`` and logged once per burst.
        #: None: no cap (the default: behind a reverse proxy every client has its address).
        self.max_sessions_per_ip = max_sessions_per_ip
        self._sessions_per_ip: dict[str, int] = {}
        self._session_refusals = BurstLog()
        #: Called with a :class:`RequestRefused` for every refused request (unknown sid or
        #: transport, bad handshake, ``allow_request`` said no, ...), as the reference
        #: server's ``io.engine.on("connection_error")``; each is also logged on one line.
        self.on_connection_error = on_connection_error
        self.on_connect = on_connect
        self.on_message = on_message
        self.on_disconnect = on_disconnect
        self.sessions: dict[EioSid, EngineSession] = {}
        # a str of up to this many characters is within max_payload whatever it holds
        self._ws_char_limit = max_payload // 4
        self._timer: DeadlineTimer[EngineSession] = DeadlineTimer(self._session_due)
        self._running = False
        self._warned_not_running = False

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
            task_status.started()
            await self._timer.run()
        finally:
            self._running = False
            self.close_all(CloseReason.SERVER_SHUTTING_DOWN)

    def close_all(self, reason: CloseReason = CloseReason.SERVER_SHUTTING_DOWN) -> None:
        now = trio.current_time()
        for session in list(self.sessions.values()):
            self._process(session, session.core.close(reason, now))

    # ------------------------------------------------------------------ Mount: HTTP

    async def handle_http(self, request: Request) -> Response:
        if self.cors is None:
            cors: list[tuple[str, str]] = []
        elif request.method == "OPTIONS":
            return Response(204, self.cors.headers(request, preflight=True))
        else:
            cors = self.cors.headers(request)
        query = request.query
        transport = query.get("transport")
        if transport not in self.transports:
            return self._refused(request, UNKNOWN_TRANSPORT, cors)
        if query.get("EIO") != "4":
            return self._refused(request, UNSUPPORTED, cors)
        sid = query.get("sid")
        if sid is None:
            if request.method != "GET":
                return self._refused(request, BAD_HANDSHAKE_METHOD, cors)
            if transport != Transport.POLLING:
                return self._refused(request, BAD_REQUEST, cors)
            if self._too_many_sessions(request):
                return self._too_many_response(request, cors)
            if self.allow_request is not None and not self.allow_request(request):
                return self._refused(request, FORBIDDEN, cors)
            return self._open_polling(request, cors)
        session = self.sessions.get(EioSid(sid))
        if session is None:
            return self._refused(request, UNKNOWN_SID, cors)
        if session.core.transport != transport:
            # polling after the upgrade: let the WebSocket writer flush what it was woken
            # for (a "3probe") before this answer goes out, as the client sent them in order
            await trio.lowlevel.checkpoint()
            return self._refused(request, BAD_REQUEST, cors)
        if request.method == "GET":
            return await self._poll(session, request, cors)
        if request.method == "POST":
            # Trio runs the tasks woken by one poll of the sockets in random order; let a GET
            # that arrived together with this POST take its place first, so a close packet
            # in the POST answers that GET (with 6) instead of outrunning it.
            await trio.lowlevel.checkpoint()
            return self._post(session, request, cors)
        return self._refused(request, BAD_REQUEST, cors)

    def _open_polling(self, request: Request, cors: list[tuple[str, str]]) -> Response:
        session = self._new_session(Transport.POLLING, request)
        core = session.core
        core.start_poll()
        packets = core.take_poll_payload() or []
        self._connected(session)
        return self._payload_response(request, encode_payload(packets), cors)

    async def _poll(
        self, session: EngineSession, request: Request, cors: list[tuple[str, str]]
    ) -> Response:
        core = session.core
        if core.upgrade_state in _UPGRADING:
            # A GET that arrives while a probe is under way: the client pauses polling for
            # the upgrade, so give a "5" already on its way the chance to land first (the
            # reference answers such GETs at its next 100 ms noop check). Upgraded by then:
            # this GET is on the old transport, a 400 as any later one.
            session._upgrade_waiter = waiter = trio.Event()
            with trio.move_on_after(UPGRADE_GRACE):
                await waiter.wait()
            session._upgrade_waiter = None
            if core.transport is not Transport.POLLING:
                # let the WebSocket writer put the "3probe" it was woken for on the wire
                # before this answer, keeping the order the client saw its own sends in
                await trio.lowlevel.checkpoint()
                return self._refused(request, BAD_REQUEST, cors)
            if core.state is SessionState.CLOSED:
                return self._refused(request, UNKNOWN_SID, cors)
        self._process(session, core.handle_timeout(trio.current_time()))
        events = core.start_poll()
        if events:
            self._process(session, events)
            return self._refused(request, BAD_REQUEST, cors)
        if core.state is SessionState.CLOSED:  # timed out just now
            core.cancel_poll()
            return self._refused(request, UNKNOWN_SID, cors)
        try:
            while (packets := core.take_poll_payload()) is None:
                session._poll_wakeup = wakeup = trio.Event()
                await wakeup.wait()
        except BaseException:
            core.cancel_poll()
            raise
        finally:
            session._poll_wakeup = None
        self._process(session, core.poll_finished())
        return self._payload_response(request, encode_payload(packets), cors)

    def _post(
        self, session: EngineSession, request: Request, cors: list[tuple[str, str]]
    ) -> Response:
        core = session.core
        body = request.body
        if len(body) > self.config.max_payload:
            self._process(
                session, core.transport_closed(CloseReason.TRANSPORT_ERROR, "payload too large")
            )
            return Response(413, [*cors, ("Content-Type", "text/html")], b"Payload Too Large")
        if request.headers.get("content-type") == "application/octet-stream":
            self._process(
                session, core.transport_closed(CloseReason.TRANSPORT_ERROR, "invalid content")
            )
            return self._refused(request, BAD_REQUEST, cors)
        self._process(session, core.receive_payload(body, trio.current_time()))
        closed = core.close_reason
        if closed is not None and closed.reason is CloseReason.PARSE_ERROR:
            return self._refused(request, BAD_REQUEST, cors)
        headers = [*cors, ("Content-Type", "text/html"), ("Cache-Control", "no-store")]
        return Response(200, headers, b"ok")

    def _payload_response(
        self, request: Request, payload: str, cors: list[tuple[str, str]]
    ) -> Response:
        body = payload.encode("utf-8")
        headers = [
            *cors,
            ("Content-Type", "text/plain; charset=UTF-8"),
            ("Cache-Control", "no-store"),
        ]
        if self.http_compression and len(body) >= self.compression_threshold:
            body, encoding = compress(body, request.headers.get("accept-encoding") or "")
            if encoding is not None:
                headers.append(("Content-Encoding", encoding))
        return Response(200, headers, body)

    # ------------------------------------------------------------------ Mount: WebSocket

    def websocket_origin_allowed(self, origin: str) -> bool:
        """A cross-origin WebSocket upgrade is accepted from the origins CORS allows, so a
        page that may poll may also upgrade (same-origin pages always may)."""
        return self.cors is not None and self.cors.allows(origin)

    def check_websocket(self, request: Request) -> Response | None:
        query = request.query
        code: int | None = None
        if query.get("transport") != Transport.WEBSOCKET or "websocket" not in self.transports:
            code = UNKNOWN_TRANSPORT
        elif query.get("EIO") != "4":
            code = UNSUPPORTED
        elif (sid := query.get("sid")) is not None:
            if EioSid(sid) not in self.sessions:
                code = UNKNOWN_SID
        elif self._too_many_sessions(request):
            return self._too_many_response(request, [])
        elif self.allow_request is not None and not self.allow_request(request):
            code = FORBIDDEN
        if code is None:
            return None
        self._report_refusal(request, code)
        status = 403 if code == FORBIDDEN else 400
        return Response(status, [("Content-Type", "text/html")], ERROR_MESSAGES[code].encode())

    def _too_many_sessions(self, request: Request) -> bool:
        cap = self.max_sessions_per_ip
        if cap is None:
            return False
        key = client_key(request.remote_address[0])
        return bool(key) and self._sessions_per_ip.get(key, 0) >= cap

    def _refuse_too_many(self, request: Request) -> None:
        """Report a handshake over ``max_sessions_per_ip``: ``on_connection_error`` for each,
        one log line per burst."""
        count = self._session_refusals.due(trio.current_time())
        if count:
            logger.warning(
                "refused %d handshake(s) over max_sessions_per_ip (%s) since the last such "
                "line (the last from %s)",
                count,
                self.max_sessions_per_ip,
                client_key(request.remote_address[0]),
            )
        self._report_refusal(request, FORBIDDEN, _TOO_MANY_SESSIONS, log=False)

    def _too_many_response(self, request: Request, cors: list[tuple[str, str]]) -> Response:
        self._refuse_too_many(request)
        return Response(
            503,
            [*cors, ("Content-Type", "application/json"), ("Retry-After", "5")],
            _TOO_MANY_SESSIONS_BODY,
        )

    def _refused(self, request: Request, code: int, cors: list[tuple[str, str]]) -> Response:
        """The JSON error answer of the reference server, reported first."""
        self._report_refusal(request, code)
        return error_response(code, cors)

    def _report_refusal(
        self, request: Request, code: int, message: str | None = None, *, log: bool = True
    ) -> None:
        """One log line per refused request (unless ``log`` is false: the caller logs), and
        ``on_connection_error`` (the reference server's ``connection_error`` event)."""
        refusal = RequestRefused(request, code, message or ERROR_MESSAGES[code])
        if log:
            host, port = request.remote_address
            logger.info(
                "refused %s %s?%s (peer %s:%s): %s",
                request.method,
                shown(request.path),
                shown(request.query_string),
                host,
                port,
                refusal.message,
            )
        if self.on_connection_error is not None:
            try:
                self.on_connection_error(refusal)
            except Exception:
                logger.exception("on_connection_error failed")

    async def handle_websocket(self, ws: WebSocket) -> None:
        sid = ws.request.query.get("sid")
        if sid is None:
            if self._too_many_sessions(ws.request):
                # check_websocket let it through, then others came first (the 101 is sent)
                self._refuse_too_many(ws.request)
                await ws.close(1013, "too many sessions")
                return
            session = self._new_session(Transport.WEBSOCKET, ws.request)
            session._ws = ws
            self._flush_ws(session)
            self._connected(session)
            await self._read_loop(session, ws)
            return
        existing = self.sessions.get(EioSid(sid))
        if existing is None or not existing.core.start_upgrade(trio.current_time()):
            host, port = ws.request.remote_address
            logger.info(
                "refused an upgrade of session %s (peer %s:%s): %s",
                shown(sid, 40),
                host,
                port,
                "unknown" if existing is None else "upgraded or upgrading already",
            )
            await ws.close(1008, "session unknown or already upgraded")
            return
        self._schedule(existing)
        if await self._probe_loop(existing, ws):
            await self._read_loop(existing, ws)

    async def _probe_loop(self, session: EngineSession, ws: WebSocket) -> bool:
        """Run the probe until ``5`` (True: go on as the session's transport) or failure."""
        core = session.core
        with trio.CancelScope() as scope:
            session._probe_scope = scope
            try:
                async for message in ws:
                    events = core.receive_probe_data(message, trio.current_time())
                    for packet in core.take_probe_packets():
                        _send_quietly(ws, encode_packet(packet))
                    if events and isinstance(events[0], UpgradeCompleted):
                        session._ws = ws
                    self._process(session, events)
                    if core.upgrade_state is UpgradeState.UPGRADED:
                        return core.state is SessionState.OPEN
                    if core.upgrade_state is UpgradeState.NONE:
                        break
            finally:
                session._probe_scope = None
        core.abort_upgrade()
        self._process(session, ())
        if not ws.closed:
            await ws.close(1000, "probe failed")
        return False

    async def _read_loop(self, session: EngineSession, ws: WebSocket) -> None:
        """One WebSocket message is one packet: the WebSocket's reader hands each to the
        session as it is read (no task switch per message), until the WebSocket is closed.
        A session that ends first closes the WebSocket (``_closed``)."""
        await ws.serve_messages(session._receive_ws, partial(self._ws_ended, session, ws))

    def _ws_ended(self, session: EngineSession, ws: WebSocket) -> None:
        """The WebSocket's reading ended (called by its reader: a handler that the reading
        task still runs must not delay this, see ``WebSocket.serve_messages``)."""
        core = session.core
        if core.state is SessionState.OPEN:
            code = ws.close_code
            reason = (
                CloseReason.TRANSPORT_ERROR
                if code in _ERROR_CLOSE_CODES
                else CloseReason.TRANSPORT_CLOSE
            )
            self._process(session, core.transport_closed(reason, f"close code {code}"))

    # ------------------------------------------------------------------ session plumbing

    def _new_session(self, transport: Transport, request: Request) -> EngineSession:
        sid = EioSid(secrets.token_urlsafe(15))
        while sid in self.sessions:
            sid = EioSid(secrets.token_urlsafe(15))
        core = Session(sid, transport, self.config, trio.current_time())
        session = EngineSession(self, core, request)
        self.sessions[sid] = session
        key = client_key(request.remote_address[0])
        if key:
            counts = self._sessions_per_ip
            counts[key] = counts.get(key, 0) + 1
        if not self._running and not self._warned_not_running:
            self._warned_not_running = True
            logger.warning(
                "EngineIOServer.serve() is not running: no heartbeats or timeouts; "
                "start it with `await nursery.start(server.serve)`"
            )
        self._schedule(session)
        return session

    def _connected(self, session: EngineSession) -> None:
        if self.on_connect is not None:
            try:
                self.on_connect(session)
            except Exception:
                self._callback_failed(session, "on_connect")

    def _callback_failed(self, session: EngineSession, name: str) -> None:
        logger.exception("Engine.IO %s callback failed (session %s)", name, session.sid)
        self._process(
            session, session.core.transport_closed(CloseReason.TRANSPORT_ERROR, f"{name} failed")
        )

    def _process(self, session: EngineSession, events: Sequence[Event]) -> None:
        """React to the core's events, then move its packets to the transport."""
        for event in events:
            if event.__class__ is MessageReceived:
                if self.on_message is not None:
                    try:
                        self.on_message(session, event.data)
                    except Exception:
                        self._callback_failed(session, "on_message")
            elif isinstance(event, SessionClosed):
                self._closed(session, event)
            elif isinstance(event, ProbeFailed):
                if session._probe_scope is not None:
                    session._probe_scope.cancel()
        core = session.core
        if session._ws is not None and core.has_packets:
            self._flush_ws(session)
        if session._poll_wakeup is not None and core.poll_ready:
            session._poll_wakeup.set()
        if session._upgrade_waiter is not None and core.upgrade_state not in _UPGRADING:
            session._upgrade_waiter.set()
        self._schedule(session)

    def _closed(self, session: EngineSession, event: SessionClosed) -> None:
        if self.sessions.get(session.sid) is session:
            del self.sessions[session.sid]
            key = client_key(session.request.remote_address[0])
            if key:
                counts = self._sessions_per_ip
                left = counts[key] - 1
                if left:
                    counts[key] = left
                else:
                    del counts[key]
        # the last packets (a "1") go out now; nothing sent after the close may follow them,
        # then the WebSocket's close handshake (its reader goes on until the peer answers).
        # Shutting down, no "1": clients take it as "sent away" and stay away (python-
        # socketio's client does not reconnect); 1001 "going away" brings them back.
        ws = session._ws
        if ws is not None and event.reason is CloseReason.SERVER_SHUTTING_DOWN:
            session.core.take_packets()
            session._ws = None
            ws.close_nowait(1001, "server shutting down")
        elif ws is not None:
            self._flush_ws(session)
            session._ws = None
            ws.close_nowait(session._ws_close_code)
        if session._probe_scope is not None:
            session._probe_scope.cancel()
        if session._closed_event is not None:
            session._closed_event.set()
        if self.on_disconnect is not None:
            try:
                self.on_disconnect(session, event.reason)
            except Exception:
                logger.exception(
                    "Engine.IO on_disconnect callback failed (session %s)", session.sid
                )

    def _flush_ws(self, session: EngineSession) -> None:
        ws = session._ws
        if ws is None:
            return
        for packet in session.core.take_packets():
            if not _send_quietly(ws, encode_packet(packet)):
                break

    # ------------------------------------------------------------------ timers

    def _schedule(self, session: EngineSession) -> None:
        self._timer.schedule(session, session.core.next_deadline())

    def _session_due(self, session: EngineSession, now: float) -> None:
        self._process(session, session.core.handle_timeout(now))


def _send_quietly(ws: WebSocket, message: str | bytes) -> bool:
    try:
        ws.send_nowait(message)
    except ConnectionClosed:
        return False
    return True


def _too_big(message: str | bytes, limit: int) -> bool:
    if isinstance(message, str):
        return len(message) > limit or len(message.encode("utf-8", "surrogatepass")) > limit
    return len(message) > limit

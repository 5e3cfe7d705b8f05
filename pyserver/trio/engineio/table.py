"""The session table: what both transports share (the base of ``EngineIOServer``).

:class:`SessionTable` holds the sessions by sid and does their bookkeeping: opening one (a
fresh sid, the per-address count, its first deadline), reacting to what its sans-IO core
returns (``_process``: callbacks, closing, waking a parked GET or the WebSocket writer), the
one timer task's deadlines, and refusing requests (``_refused``: the reference server's JSON
answer, a log line, ``on_connection_error``). The polling and WebSocket transports
(:mod:`.polling`, :mod:`.websocket`) are mixins over it, and
:class:`~pyserver.trio.engineio.server.EngineIOServer` composes them and sets the attributes
declared here in its ``__init__``.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import trio

from pyserver.engineio.http_answers import ERROR_MESSAGES, FORBIDDEN, Cors, error_response
from pyserver.engineio.packets import encode_packet
from pyserver.engineio.session import (
    CloseReason,
    EioSid,
    Event,
    MessageReceived,
    ProbeFailed,
    Session,
    SessionClosed,
    SessionConfig,
    Transport,
    UpgradeState,
)
from pyserver.engineio.v3 import SessionV3
from pyserver.http import Request, Response
from pyserver.logtext import shown
from pyserver.metrics import EngineCounters
from pyserver.refusals import BurstLog, client_key
from pyserver.trio.engineio.hooks import AllowRequest, Cookie, HeadersHook, new_sid
from pyserver.trio.engineio.session import (
    ConnectHandler,
    DisconnectHandler,
    EngineSession,
    MessageHandler,
    send_quietly,
)
from pyserver.trio.engineio.v3 import EngineSessionV3
from pyserver.trio.timers import DeadlineTimer
from pyserver.trio.websocket.inline import Work, run_in

__all__ = ["RequestRefused", "SessionTable"]

logger = logging.getLogger("pyserver.engineio")

_TOO_MANY_SESSIONS = "Too many sessions"
_TOO_MANY_SESSIONS_BODY = b'{"code":4,"message":"Too many sessions"}'

UPGRADING = frozenset({UpgradeState.PROBING, UpgradeState.PROBED})
"""The upgrade states during which a probe is under way."""


@dataclass(frozen=True, slots=True)
class RequestRefused:
    """A request the server refused (``EngineIOServer.on_connection_error``): the request,
    and the reference server's error ``code`` (0 to 5) and ``message``, as answered."""

    request: Request
    code: int
    message: str


class SessionTable:
    """The sessions by sid and their bookkeeping, shared by both transports (module
    docstring). The attributes are set by ``EngineIOServer.__init__``."""

    config: SessionConfig
    transports: frozenset[str]
    cors: Cors | None
    http_compression: bool
    compression_threshold: int
    compression_level: int  # zlib's, for the polling answers (-1: its default)
    allow_request: AllowRequest | None
    cookie: Cookie | None
    generate_id: Callable[[Request], str] | None
    initial_headers: HeadersHook | None
    headers: HeadersHook | None
    _hooked: bool  # a cookie or a headers hook: HTTP answers get extra_headers
    _allow_async: bool  # allow_request is async
    max_sessions_per_ip: int | None
    allow_eio3: bool  # Engine.IO v3 requests (socket.io-client 2.x) are served
    on_connection_error: Callable[[RequestRefused], None] | None
    on_connect: ConnectHandler | None
    on_message: MessageHandler | None
    on_disconnect: DisconnectHandler | None
    sessions: dict[EioSid, EngineSession]
    counters: EngineCounters
    _sessions_per_ip: dict[str, int]
    _session_refusals: BurstLog
    _ws_char_limit: int
    _timer: DeadlineTimer[EngineSession]
    _running: bool
    _warned_not_running: bool
    _nursery: trio.Nursery | None

    # ------------------------------------------------------------------ refusals

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
        refused = self.counters.refused
        refused[code] = refused.get(code, 0) + 1
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
                extra={"remote": f"{host}:{port}"},
            )
        if self.on_connection_error is not None:
            try:
                self.on_connection_error(refusal)
            except Exception:
                logger.exception("on_connection_error failed")

    # ------------------------------------------------------------------ session plumbing

    def _new_session(self, transport: Transport, request: Request) -> EngineSession:
        given = (
            None if self.generate_id is None else new_sid(self.generate_id, request, self.sessions)
        )
        sid = EioSid(secrets.token_urlsafe(15) if given is None else given)
        while sid in self.sessions:
            sid = EioSid(secrets.token_urlsafe(15))
        if self.allow_eio3 and request.query.get("EIO") == "3":
            session: EngineSession = EngineSessionV3(
                self,
                SessionV3(
                    sid,
                    transport,
                    self.config,
                    trio.current_time(),
                    binary="b64" not in request.query,
                ),
                request,
            )
        else:
            session = EngineSession(
                self, Session(sid, transport, self.config, trio.current_time()), request
            )
        self.sessions[sid] = session
        opened = self.counters.opened
        opened[transport.value] = opened.get(transport.value, 0) + 1
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

    def _start_work(self, session: EngineSession, work: Work) -> None:
        """Work ``on_message`` returned for a message read off long-polling (or a packet
        the state machine saw): a task of its own in the server's nursery. Without one
        (``serve`` is not running) it is dropped, with the warning ``_new_session`` gave."""
        nursery = self._nursery
        if nursery is not None:  # (every step in the session's context: inline.run_in)
            nursery.start_soon(
                run_in, session.context, work, name=f"Engine.IO message work ({session.sid})"
            )

    def _callback_failed(self, session: EngineSession, name: str) -> None:
        logger.exception("Engine.IO %s callback failed (session %s)", name, session.sid)
        self._process(
            session, session.core.transport_closed(CloseReason.TRANSPORT_ERROR, f"{name} failed")
        )

    def _process(self, session: EngineSession, events: Sequence[Event]) -> None:
        """React to the core's events, then move its packets to the transport."""
        for event in events:
            if event.__class__ is MessageReceived:
                counters = self.counters
                counters.packets_in += 1
                counters.bytes_in += len(event.data)
                if self.on_message is not None:
                    try:
                        work = self.on_message(session, event.data)
                    except Exception:
                        self._callback_failed(session, "on_message")
                    else:
                        if work is not None:
                            self._start_work(session, work)
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
        if session._upgrade_waiter is not None and core.upgrade_state not in UPGRADING:
            session._upgrade_waiter.set()
        self._schedule(session)

    def _closed(self, session: EngineSession, event: SessionClosed) -> None:
        if self.sessions.get(session.sid) is session:
            del self.sessions[session.sid]
            closed = self.counters.closed
            closed[event.reason.value] = closed.get(event.reason.value, 0) + 1
            if event.detail == "outgoing queue full":  # (a polling slow consumer)
                slow = self.counters.slow_consumers
                slow["polling"] = slow.get("polling", 0) + 1
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
        self._timer.unschedule(session)  # the timer keeps no closed session
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
            if not send_quietly(ws, encode_packet(packet)):
                break

    # ------------------------------------------------------------------ timers

    def _schedule(self, session: EngineSession) -> None:
        self._timer.schedule(session, session.core.next_deadline())

    def _session_due(self, session: EngineSession, now: float) -> None:
        self._process(session, session.core.handle_timeout(now))

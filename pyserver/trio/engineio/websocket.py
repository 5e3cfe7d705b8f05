"""The WebSocket transport: the ``Mount``'s ``check_websocket`` and ``handle_websocket``.

A WebSocket either opens a session of its own (no ``sid``: the handshake goes out as its
first message) or probes an upgrade of a polling session (``2probe`` / ``3probe``, then ``5``;
``_probe_loop`` reads it with ``async for``). From then on one WebSocket message is one
packet: ``_read_loop`` hands the session's ``_receive_ws`` to ``WebSocket.serve_messages``,
so the WebSocket's reader delivers each message with no task switch, and ``_ws_ended`` turns
the end of the reading into the session's "transport close" or "transport error".
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

import trio

from pyserver.engineio.http_answers import (
    ERROR_MESSAGES,
    FORBIDDEN,
    UNKNOWN_SID,
    UNKNOWN_TRANSPORT,
    UNSUPPORTED,
)
from pyserver.engineio.packets import encode_packet
from pyserver.engineio.session import (
    CloseReason,
    EioSid,
    SessionState,
    Transport,
    UpgradeCompleted,
    UpgradeState,
)
from pyserver.http import Request, Response, WebSocket
from pyserver.logtext import shown
from pyserver.trio.engineio.hooks import request_allowed
from pyserver.trio.engineio.session import EngineSession, send_quietly
from pyserver.trio.engineio.table import SessionTable, logger

__all__ = ["WebSocketTransport"]

_ERROR_CLOSE_CODES = frozenset({1002, 1003, 1007, 1008, 1009, 1010, 1011})


class WebSocketTransport(SessionTable):
    """The WebSocket transport and the upgrade to it (module docstring)."""

    def websocket_origin_allowed(self, origin: str) -> bool:
        """A cross-origin WebSocket upgrade is accepted from the origins CORS allows, so a
        page that may poll may also upgrade (same-origin pages always may)."""
        return self.cors is not None and self.cors.allows(origin)

    def check_websocket(self, request: Request) -> Response | None:
        query = request.query
        code: int | None = None
        if query.get("transport") != Transport.WEBSOCKET or "websocket" not in self.transports:
            code = UNKNOWN_TRANSPORT
        elif query.get("EIO") != "4" and not (self.allow_eio3 and query.get("EIO") == "3"):
            code = UNSUPPORTED
        elif (sid := query.get("sid")) is not None:
            if EioSid(sid) not in self.sessions:
                code = UNKNOWN_SID
        elif self._too_many_sessions(request):
            return self._too_many_response(request, [])
        elif (
            self.allow_request is not None
            and not self._allow_async  # (an async one is awaited in handle_websocket)
            and not self.allow_request(request)
        ):
            code = FORBIDDEN
        if code is None:
            return None
        self._report_refusal(request, code)
        status = 403 if code == FORBIDDEN else 400
        return Response(status, [("Content-Type", "text/html")], ERROR_MESSAGES[code].encode())

    @property
    def check_websocket_async(self) -> Callable[[Request], Awaitable[Response | None]] | None:
        """The App awaits it before the ``101`` (an ``async`` ``allow_request`` only)."""
        return self._allow_websocket if self._allow_async else None

    async def _allow_websocket(self, request: Request) -> Response | None:
        """An ``async`` ``allow_request`` for a WebSocket that opens a session, before the
        upgrade: refused, the reference server's 403 JSON answer (no session, no 101)."""
        if request.query.get("sid") is not None:
            return None
        assert self.allow_request is not None
        if await request_allowed(self.allow_request, request):
            return None
        return self._refused(request, FORBIDDEN, [])

    @property
    def websocket_headers(self) -> Callable[[Request], list[tuple[str, str]]] | None:
        """The ``101`` answer's extra headers (the App asks before the upgrade), only with a
        headers hook: ``initial_headers`` when the WebSocket opens a session, then
        ``headers``, as the reference server calls them on its upgrade answers."""
        if self.initial_headers is None and self.headers is None:
            return None
        return self._websocket_headers

    def _websocket_headers(self, request: Request) -> list[tuple[str, str]]:
        headers: list[tuple[str, str]] = []
        if self.initial_headers is not None and request.query.get("sid") is None:
            self.initial_headers(headers, request)
        if self.headers is not None:
            self.headers(headers, request)
        return headers

    async def handle_websocket(self, ws: WebSocket) -> None:
        sid = ws.request.query.get("sid")
        if sid is None:
            if self._too_many_sessions(ws.request):
                # check_websocket let it through, then others came first (the 101 is sent)
                self._refuse_too_many(ws.request)
                await ws.close(1013, "too many sessions")
                return
            session = self._new_session(Transport.WEBSOCKET, ws.request)
            session._use_ws(ws)
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
                        send_quietly(ws, encode_packet(packet))
                    if events and isinstance(events[0], UpgradeCompleted):
                        session._use_ws(ws)
                        self.counters.upgrades += 1
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
        await ws.serve_messages(
            session._receive_ws, partial(self._ws_ended, session, ws), context=session.context
        )

    def _ws_ended(self, session: EngineSession, ws: WebSocket) -> None:
        """The WebSocket's reading ended (called by its reader: a handler that the reading
        task still runs must not delay this, see ``WebSocket.serve_messages``)."""
        core = session.core
        if core.state is SessionState.OPEN:
            code = ws.close_code
            # (its outbox closed it; close_reason is not part of every WebSocket type)
            if code == 1008 and getattr(ws, "close_reason", None) == "slow consumer":
                slow = self.counters.slow_consumers
                slow["websocket"] = slow.get("websocket", 0) + 1
            reason = (
                CloseReason.TRANSPORT_ERROR
                if code in _ERROR_CLOSE_CODES
                else CloseReason.TRANSPORT_CLOSE
            )
            self._process(session, core.transport_closed(reason, f"close code {code}"))

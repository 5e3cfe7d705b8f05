"""The HTTP long-polling transport: the ``Mount``'s ``handle_http``.

Every HTTP request under the Engine.IO path comes here: CORS (a preflight is answered at
once), the checks of the reference server (transport, protocol version, sid, method), the
handshake GET that opens a session, the GET that parks until there are packets to send (or a
probe settles), and the POST that carries the client's packets. Answers are gzip/deflate
compressed above ``compression_threshold``. A request on the old transport after an upgrade
is refused with 400.
"""

from __future__ import annotations

from collections.abc import Sequence

import trio

from pyserver.engineio.http_answers import (
    BAD_HANDSHAKE_METHOD,
    BAD_REQUEST,
    FORBIDDEN,
    UNKNOWN_SID,
    UNKNOWN_TRANSPORT,
    UNSUPPORTED,
    compress,
)
from pyserver.engineio.packets import Packet
from pyserver.engineio.session import CloseReason, EioSid, SessionState, Transport
from pyserver.http import Request, Response
from pyserver.trio.engineio.hooks import extra_headers, request_allowed
from pyserver.trio.engineio.session import EngineSession, PlainPacket
from pyserver.trio.engineio.table import UPGRADING, SessionTable

__all__ = ["UPGRADE_GRACE", "PollingTransport"]

UPGRADE_GRACE = 0.1
"""Seconds a GET arriving during a probe waits for the upgrade to settle first."""
_WRITTEN_CHECK = 0.001
"""Seconds between two looks at an upgraded session's WebSocket outbox (``_written``)."""


class PollingTransport(SessionTable):
    """HTTP long-polling (implements ``Mount.handle_http``; module docstring)."""

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
        if query.get("EIO") != "4" and not (self.allow_eio3 and query.get("EIO") == "3"):
            return self._refused(request, UNSUPPORTED, cors)
        sid = query.get("sid")
        if sid is None:
            if request.method != "GET":
                return self._refused(request, BAD_HANDSHAKE_METHOD, cors)
            if transport != Transport.POLLING:
                return self._refused(request, BAD_REQUEST, cors)
            if self._too_many_sessions(request):
                return self._too_many_response(request, cors)
            if self.allow_request is not None and not await request_allowed(
                self.allow_request, request
            ):
                return self._refused(request, FORBIDDEN, cors)
            return self._open_polling(request, cors)
        session = self.sessions.get(EioSid(sid))
        if session is None:
            return self._refused(request, UNKNOWN_SID, cors)
        if session.core.transport != transport:
            # polling after the upgrade: the "3probe" goes out first, as the client sent
            # its probe first
            await _written(session)
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
        if self._hooked:
            cors = extra_headers(self, request, session.sid, [*cors])
        return self._payload_response(request, core.encode_poll(packets), cors)

    async def _poll(
        self, session: EngineSession, request: Request, cors: list[tuple[str, str]]
    ) -> Response:
        core = session.core
        if core.upgrade_state in UPGRADING:
            # A GET that arrives while a probe is under way: the client pauses polling for
            # the upgrade, so give a "5" already on its way the chance to land first (the
            # reference answers such GETs at its next 100 ms noop check). Upgraded by then:
            # this GET is on the old transport, a 400 as any later one.
            session._upgrade_waiter = waiter = trio.Event()
            with trio.move_on_after(UPGRADE_GRACE):
                await waiter.wait()
            session._upgrade_waiter = None
            if core.transport is not Transport.POLLING:
                # the "3probe" goes out first, as the client sent its probe first
                await _written(session)
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
        if self._hooked:
            cors = extra_headers(self, request, None, [*cors])
        return self._payload_response(request, core.encode_poll(packets), cors, packets)

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
        if (
            request.headers.get("content-type") == "application/octet-stream"
            and core.protocol == 4  # (v3 clients post binary payloads)
        ):
            self._process(
                session, core.transport_closed(CloseReason.TRANSPORT_ERROR, "invalid content")
            )
            return self._refused(request, BAD_REQUEST, cors)
        self._process(session, core.receive_payload(body, trio.current_time()))
        closed = core.close_reason
        if closed is not None and closed.reason is CloseReason.PARSE_ERROR:
            return self._refused(request, BAD_REQUEST, cors)
        headers = [*cors, ("Content-Type", "text/html"), ("Cache-Control", "no-store")]
        if self._hooked:
            headers = extra_headers(self, request, None, headers)
        return Response(200, headers, b"ok")

    def _payload_response(
        self,
        request: Request,
        payload: str | bytes,
        cors: list[tuple[str, str]],
        packets: Sequence[Packet] = (),
    ) -> Response:
        """The answer to a GET: ``payload`` (the ``packets``), gzipped or deflated from
        ``compression_threshold`` on unless every packet was sent with ``compress=False``
        (Node's polling transport compresses when any packet of the answer wants it)."""
        if isinstance(payload, str):
            body = payload.encode("utf-8")
            content_type = "text/plain; charset=UTF-8"
        else:  # (an Engine.IO v3 binary payload)
            body = payload
            content_type = "application/octet-stream"
        headers = [*cors, ("Content-Type", content_type), ("Cache-Control", "no-store")]
        if (
            self.http_compression
            and len(body) >= self.compression_threshold
            and (not packets or any(p.__class__ is not PlainPacket for p in packets))
        ):
            body, encoding = compress(
                body, request.headers.get("accept-encoding") or "", self.compression_level
            )
            if encoding is not None:
                headers.append(("Content-Encoding", encoding))
        return Response(200, headers, body)


async def _written(session: EngineSession) -> None:
    """Return once the WebSocket that took ``session`` over has written what it had queued
    (``outbox_depth`` is 0), or it closed, or ``UPGRADE_GRACE`` passed (a client that does
    not read its WebSocket does not hold a request for longer).

    A request on the old transport after an upgrade is answered 400; the client sent its
    ``2probe`` before it, so the ``3probe`` queued for its WebSocket must reach it first (the
    official suite's "ignores HTTP requests with same sid after upgrade" reads the WebSocket
    after the 400 and expects its echo, not the ``3probe``). Yielding once is not enough:
    Trio runs the tasks of one scheduler batch in any order, so the WebSocket's writer, woken
    in the same batch, could run after this answer is written. This is the error path of a
    stray request, so it looks at the outbox again every millisecond rather than asking the
    WebSocket to signal its writes. (The server's order is all it can give: a client whose
    event loop reads both sockets in one turn may still handle the 400 first.)"""
    await trio.lowlevel.checkpoint()
    ws = session._ws
    if ws is None or not ws.outbox_depth:
        return
    with trio.move_on_after(UPGRADE_GRACE):
        # (no trio.Event to wait on: the WebSocket protocol does not signal its writes)
        while ws.outbox_depth and not ws.closed:  # noqa: ASYNC110
            await trio.sleep(_WRITTEN_CHECK)

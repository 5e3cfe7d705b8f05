"""The HTTP/1.1 server on Trio (h11): one task per connection, keep-alive, limits, upgrades.

Per connection (:func:`serve_connection`):

* Reading a request: the request line and headers must arrive within ``read_timeout`` and
  fit in ``max_header_size`` (h11's ``max_incomplete_event_size``; too large -> 431); an idle
  keep-alive connection is closed quietly at the same timeout, a half-sent request gets 408.
  The body is read whole, bounded by ``max_body_size`` (413 and close), each read bounded by
  ``read_timeout``. The whole request (head and body, from its first byte) must arrive within
  ``request_timeout`` (Node's ``requestTimeout``), else 408 and close: a body sent a byte at a
  time cannot hold a connection for longer than that. A malformed request (h11
  ``RemoteProtocolError``) gets its status hint (400) and the connection is closed.
* Dispatch is the site's (``App``): a WebSocket upgrade goes through the handshake
  (``pyserver.ws.handshake``) and, once accepted, the connection becomes a
  ``pyserver.trio.websocket.connection.WebSocket`` on the same stream (h11's ``trailing_data``
  is fed to the frame decoder first).
* Error handling: a handler exception is logged once (``pyserver.http``) and answered 500;
  nothing a connection does can reach the server nursery (every exception is caught and
  logged here), so one bad connection never affects another.
"""

from __future__ import annotations

import http
import logging
import math
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import unquote

import h11
import trio

from pyserver.http import Headers, Request, Response, WebSocket
from pyserver.logtext import shown
from pyserver.ws.handshake import (
    HandshakeAccepted,
    HandshakeRefused,
    is_websocket_upgrade,
    validate_handshake,
)

__all__ = [
    "AcceptedWebSocket",
    "HttpSettings",
    "Site",
    "WebSocketEndpoint",
    "error_response",
    "remote_address",
    "serve_connection",
]

logger = logging.getLogger("pyserver.http")


@dataclass(frozen=True, slots=True)
class HttpSettings:
    max_header_size: int = 16 * 1024
    max_body_size: int = 1 << 20
    read_timeout: float = 30.0
    request_timeout: float | None = 300.0
    """Seconds for a whole request (head and body) to arrive, from its first byte; None: no
    bound beyond ``read_timeout`` per read."""
    server_header: str | None = None
    allowed_hosts: Callable[[str | None], bool] | None = None
    """The Host rule (``pyserver.ws.handshake.HostAllowList``): a request, upgrade or not,
    whose Host it refuses is answered 400 and the connection closed; None: any Host."""


@dataclass(frozen=True, slots=True)
class WebSocketEndpoint:
    """Where an upgrade request goes: the handler, the subprotocols it speaks, and an
    optional check called after the handshake is validated and before accepting it."""

    handler: Callable[[WebSocket], Awaitable[None]]
    subprotocols: Sequence[str] = ()
    check: Callable[[Request], Response | None] | None = None
    origin_ok: Callable[[str], bool] | None = None
    """Origins accepted beyond the site's rule (the mount's own allow-list)."""
    async_check: Callable[[Request], Awaitable[Response | None]] | None = None
    """Awaited after ``check`` and before the ``101``: None accepts, a response refuses
    (an ``async`` ``allow_request`` looking a token up)."""
    headers: Callable[[Request], list[tuple[str, str]]] | None = None
    """Extra headers for the ``101`` answer (Engine.IO's ``headers`` hooks)."""


class Site(Protocol):
    """What the connection loop needs from the application (``pyserver.trio.http.app.App``)."""

    http_settings: HttpSettings
    compression: bool
    allowed_origins: Sequence[str] | None

    async def handle_http(self, request: Request) -> Response: ...

    def websocket_endpoint(self, request: Request) -> WebSocketEndpoint | None: ...

    def open_websocket(
        self,
        stream: trio.abc.Stream,
        request: Request,
        accepted: HandshakeAccepted,
        trailing_data: bytes,
    ) -> AcceptedWebSocket:
        """Build the WebSocket for an accepted upgrade (the caller runs it)."""


class AcceptedWebSocket(Protocol):
    async def run(self, handler: Callable[[WebSocket], Awaitable[None]]) -> None: ...


def error_response(status: int, message: str | None = None, *extra: tuple[str, str]) -> Response:
    """A small plain-text answer."""
    text = message if message is not None else http.HTTPStatus(status).phrase
    return Response(
        status, [("Content-Type", "text/plain; charset=utf-8"), *extra], (text + "\n").encode()
    )


def _remote_address(stream: trio.abc.Stream) -> tuple[str, int]:
    if isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    if isinstance(stream, trio.SocketStream):
        try:
            peer = stream.socket.getpeername()
        except OSError:
            return ("", 0)
        if isinstance(peer, tuple) and len(peer) >= 2:
            # many connections come from one host (a proxy, a NAT): one string for them all
            return (_shared(str(peer[0])), int(peer[1]))
    return ("", 0)


remote_address = _remote_address
"""The peer's ``(host, port)`` of a stream (TLS or plain TCP); ``("", 0)`` when it has none
(a Unix socket, an in-memory stream)."""


class _Timeout(Exception):
    pass


@dataclass(slots=True)
class _Upgrade:
    request: Request
    endpoint: WebSocketEndpoint
    accepted: HandshakeAccepted
    trailing: bytes


class _Connection:
    __slots__ = ("conn", "remote", "request_deadline", "secure", "settings", "site", "stream")

    def __init__(self, stream: trio.abc.Stream, site: Site) -> None:
        self.stream = stream
        self.site = site
        self.settings = site.http_settings
        self.conn = h11.Connection(
            h11.SERVER, max_incomplete_event_size=self.settings.max_header_size
        )
        self.remote = _remote_address(stream)
        self.secure = isinstance(stream, trio.SSLStream)
        #: When the request being read must be whole (``request_timeout`` after its first
        #: byte); inf until that byte.
        self.request_deadline = math.inf

    def _start_request_clock(self) -> None:
        timeout = self.settings.request_timeout
        if timeout is not None and self.request_deadline == math.inf:
            self.request_deadline = trio.current_time() + timeout

    async def _next_event(self, deadline: float) -> h11.Event | type[h11.PAUSED]:
        conn = self.conn
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                with trio.move_on_at(min(deadline, self.request_deadline)):
                    data = await self.stream.receive_some(65536)
                    self._start_request_clock()
                    conn.receive_data(bytes(data))
                    continue
                raise _Timeout
            return event  # type: ignore[return-value]

    async def send(self, response: Response, *, head: bool, close: bool = False) -> None:
        conn = self.conn
        status = response.status
        headers = list(response.headers)
        names = {k.lower() for k, _ in headers}
        no_body = status < 200 or status in (204, 304)
        if not no_body and "content-length" not in names and "transfer-encoding" not in names:
            headers.append(("Content-Length", str(len(response.body))))
        if close and "connection" not in names:
            headers.append(("Connection", "close"))
        if self.settings.server_header and "server" not in names:
            headers.append(("Server", self.settings.server_header))
        try:
            reason = http.HTTPStatus(status).phrase.encode()
        except ValueError:
            reason = b""
        out = conn.send(h11.Response(status_code=status, headers=headers, reason=reason)) or b""
        if response.body and not head and not no_body:
            out += conn.send(h11.Data(data=response.body)) or b""
        out += conn.send(h11.EndOfMessage()) or b""
        await self.stream.send_all(out)

    async def send_error(self, response: Response) -> None:
        """Answer and stop (the request is not usable any more)."""
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            try:
                await self.send(response, head=False, close=True)
            except (h11.LocalProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
                pass

    async def run(self) -> _Upgrade | None:
        """Serve requests until the connection should close (None) or a WebSocket upgrade
        was accepted (the 101 is sent; the caller runs the WebSocket once this object and
        its h11 state are gone: an idle WebSocket should not keep HTTP parser state)."""
        settings = self.settings
        conn = self.conn
        while True:
            # -- request line and headers --------------------------------------------
            deadline = trio.current_time() + settings.read_timeout
            self.request_deadline = math.inf
            if conn.trailing_data[0]:
                self._start_request_clock()  # a pipelined request: its bytes are here
            try:
                event = await self._next_event(deadline)
            except _Timeout:
                if conn.their_state is h11.IDLE and not conn.trailing_data[0]:
                    return None  # an idle keep-alive connection: close quietly
                await self.send_error(error_response(408))
                return None
            except h11.RemoteProtocolError as exc:
                await self.send_error(error_response(exc.error_status_hint, str(exc)))
                return None
            if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None
            if not isinstance(event, h11.Request):
                return None
            size = len(event.target) + sum(len(k) + len(v) + 4 for k, v in event.headers)
            if size > settings.max_header_size:
                # h11 bounds only incomplete heads; a head that arrived whole is checked here
                await self.send_error(error_response(431))
                return None
            request = self._request(event)
            if request is None:
                await self.send_error(error_response(400, "bad request target"))
                return None
            if settings.allowed_hosts is not None:
                host = request.headers.get("host")
                if not settings.allowed_hosts(host):
                    # DNS rebinding: a foreign name pointed at us (Django's ALLOWED_HOSTS)
                    logger.warning(
                        "refused Host %s (peer %s): not in allowed_hosts",
                        shown(host),
                        _peer(self.remote),
                    )
                    await self.send_error(error_response(400, "Host not allowed"))
                    return None
            # -- an ASGI app's exchange, bodies streamed (App(asgi=...)) ---------------
            streamed = getattr(self.site, "streamed_handler", None)
            exchange = streamed(request) if streamed is not None else None
            if exchange is not None:
                if not await exchange(self):
                    return None
                continue
            # -- body ----------------------------------------------------------------
            length = request.headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > settings.max_body_size:
                await self.send_error(error_response(413))
                return None
            if conn.client_is_waiting_for_100_continue:
                await self.stream.send_all(
                    conn.send(h11.InformationalResponse(status_code=100, headers=[])) or b""
                )
            body = bytearray()
            try:
                while True:
                    part = await self._next_event(trio.current_time() + settings.read_timeout)
                    if isinstance(part, h11.Data):
                        body += part.data
                        if len(body) > settings.max_body_size:
                            await self.send_error(error_response(413))
                            return None
                    elif isinstance(part, h11.EndOfMessage) or part is h11.PAUSED:
                        break
                    else:
                        return None  # ConnectionClosed mid-body
            except _Timeout:
                await self.send_error(error_response(408))
                return None
            except h11.RemoteProtocolError as exc:
                await self.send_error(error_response(exc.error_status_hint, str(exc)))
                return None
            request.body = bytes(body)
            head = request.method == "HEAD"
            # -- WebSocket upgrade ---------------------------------------------------
            if is_websocket_upgrade(request.headers):
                endpoint = self.site.websocket_endpoint(request)
                if endpoint is not None:
                    return await self._upgrade(request, endpoint)
            # -- plain HTTP ----------------------------------------------------------
            try:
                response = await self.site.handle_http(request)
            except Exception:
                logger.exception(
                    "handler failed for %s %s (peer %s)",
                    request.method,
                    shown(request.path),
                    _peer(self.remote),
                )
                response = error_response(500)
            await self.send(response, head=head)
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is not h11.DONE:
                return None
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return None

    def _request(self, event: h11.Request) -> Request | None:
        try:
            target = event.target.decode("ascii")
        except UnicodeDecodeError:
            return None
        raw_path, _, query = target.partition("?")
        if not raw_path.startswith("/"):
            if raw_path == "*":
                raw_path = "*"
            elif "://" in raw_path:  # absolute-form
                raw_path = "/" + raw_path.split("://", 1)[1].partition("/")[2]
            else:
                return None
        try:
            path = unquote(raw_path, errors="strict") if "%" in raw_path else raw_path
        except UnicodeDecodeError:
            return None
        return Request(
            method=event.method.decode("ascii"),
            path=path,
            query_string=query,
            headers=Headers((k.decode("latin-1"), _value(k, v)) for k, v in event.headers),
            remote_address=self.remote,
            http_version=event.http_version.decode("ascii"),
            secure=self.secure,
        )

    async def _upgrade(self, request: Request, endpoint: WebSocketEndpoint) -> _Upgrade | None:
        site = self.site
        verdict = validate_handshake(
            request.method,
            request.http_version,
            request.headers,
            subprotocols=endpoint.subprotocols,
            allowed_origins=site.allowed_origins,
            origin_ok=endpoint.origin_ok,
            compression=site.compression,
        )
        if isinstance(verdict, HandshakeRefused):
            await self.send_error(error_response(verdict.status, verdict.reason, *verdict.headers))
            return None
        if (
            endpoint.check is not None
            or endpoint.async_check is not None
            or endpoint.headers is not None
        ):
            extra: list[tuple[str, str]] = []
            refusal = None
            try:  # (the check, an async allow_request, then the 101's extra headers)
                if endpoint.check is not None:
                    refusal = endpoint.check(request)
                if refusal is None and endpoint.async_check is not None:
                    refusal = await endpoint.async_check(request)
                if refusal is None and endpoint.headers is not None:
                    extra = endpoint.headers(request)
            except Exception:
                logger.exception("WebSocket check failed for %s", shown(request.path))
                refusal = error_response(500)
            if refusal is not None:
                await self.send_error(refusal)
                return None
            if extra:
                verdict = HandshakeAccepted(
                    [*verdict.headers, *extra], verdict.subprotocol, verdict.deflate
                )
        data = self.conn.send(h11.InformationalResponse(status_code=101, headers=verdict.headers))
        await self.stream.send_all(data or b"")
        trailing, _closed = self.conn.trailing_data
        return _Upgrade(request, endpoint, verdict, trailing)


async def serve_connection(stream: trio.abc.Stream, site: Site) -> None:
    """Serve one client connection until it ends; closes the stream. Never raises
    ``Exception`` (it is logged)."""
    try:
        upgrade = await _Connection(stream, site).run()
        if upgrade is not None:
            endpoint_handler = upgrade.endpoint.handler
            ws = site.open_websocket(stream, upgrade.request, upgrade.accepted, upgrade.trailing)
            del upgrade  # an idle WebSocket keeps nothing of the HTTP exchange but its request
            await ws.run(endpoint_handler)
    except trio.BrokenResourceError as exc:
        if isinstance(exc.__cause__, ssl.SSLError) and not _handshake_done(stream):
            # a client that does not speak TLS (plain HTTP to an https port), or refuses our
            # certificate: one line, the connection is closed
            logger.info(
                "TLS handshake failed (peer %s): %s", _peer(_remote_address(stream)), exc.__cause__
            )
    except trio.ClosedResourceError:
        pass
    except Exception:
        logger.exception("connection failed")
    finally:
        await trio.aclose_forcefully(stream)


def _handshake_done(stream: trio.abc.Stream) -> bool:
    """Whether a TLS stream finished its handshake (a plain stream has none to fail)."""
    if not isinstance(stream, trio.SSLStream):
        return True
    try:
        stream.cipher()  # trio answers it only once the handshake is done
    except trio.NeedHandshakeError:
        return False
    return True


#: Header values that differ on every request: not worth interning.
_UNIQUE_HEADERS = frozenset({b"sec-websocket-key", b"cookie", b"authorization", b"content-length"})
_SHARED_MAX_LENGTH = 256
_SHARED_MAX_COUNT = 4096
_SHARED: dict[str, str] = {}


def _shared(text: str) -> str:
    """One copy of a string that many requests carry. The table is bounded (up to 4096
    strings of up to 256 characters, about 1 MiB): when full it starts over, so values a
    peer makes up cannot grow it (``sys.intern`` is not bounded, and interned strings are
    immortal on some Python versions)."""
    if len(text) > _SHARED_MAX_LENGTH:
        return text
    shared = _SHARED.get(text)
    if shared is None:
        if len(_SHARED) >= _SHARED_MAX_COUNT:
            _SHARED.clear()
        _SHARED[text] = shared = text
    return shared


def _value(name: bytes, value: bytes) -> str:
    """A header value as ``str``. Most values repeat across requests (Host, User-Agent,
    Upgrade, Accept-*, ...), and the request of a WebSocket lives as long as the connection:
    a thousand idle connections share one copy of each."""
    text = value.decode("latin-1")
    return text if name in _UNIQUE_HEADERS else _shared(text)


def _peer(address: tuple[str, int]) -> str:
    return f"{address[0]}:{address[1]}" if address[0] else "?"

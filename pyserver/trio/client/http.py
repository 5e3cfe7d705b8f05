"""A small HTTP/1.1 client on Trio streams, for Engine.IO's long-polling and the WebSocket
opening handshake (h11 does the parsing; this module the I/O).

* :class:`Origin` is where the server is (scheme, host, port) and how to open a stream to
  it (TCP, or TLS for https/wss with the caller's ``ssl_context`` or the default one).
* :class:`HttpConnection` sends one request at a time over one kept-alive stream and reads
  the whole answer, bounded by ``max_body`` bytes (over it: :class:`HttpError`); a stream
  the server closes is opened again for the next request.
* :func:`open_websocket` does the RFC 6455 handshake (a random key, its accept checked) and
  returns the stream with the bytes the server sent after its 101 answer.

Every failure is an :class:`HttpError` (a refused status, a malformed answer) or an
``OSError`` / ``trio.BrokenResourceError`` from the stream; the caller decides what it means.
"""

from __future__ import annotations

import base64
import os
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11
import trio

from pyserver.ws.handshake import accept_key

__all__ = ["HttpConnection", "HttpError", "Origin", "open_websocket"]

READ_SIZE = 65536
USER_AGENT = "pyserver-client"


class HttpError(Exception):
    """The server's HTTP answer was not what the request needed (``status`` when it had
    one, 0 when the answer was malformed or too large)."""

    def __init__(self, message: str, status: int = 0, body: bytes = b"") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


@dataclass(frozen=True)
class Origin:
    """Scheme, host and port of a server, and how to reach it."""

    secure: bool
    host: str
    port: int
    ssl_context: ssl.SSLContext | None = None

    @classmethod
    def from_url(cls, url: str, ssl_context: ssl.SSLContext | None = None) -> Origin:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https", "ws", "wss"):
            raise ValueError(f"unsupported URL scheme {parts.scheme!r} (http, https, ws, wss)")
        if not parts.hostname:
            raise ValueError(f"no host in URL {url!r}")
        secure = scheme in ("https", "wss")
        port = parts.port or (443 if secure else 80)
        return cls(secure, parts.hostname, port, ssl_context)

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.secure else 80
        return host if self.port == default else f"{host}:{self.port}"

    async def open_stream(self) -> trio.abc.Stream:
        if self.secure:
            context = self.ssl_context or ssl.create_default_context()
            return await trio.open_ssl_over_tcp_stream(
                self.host, self.port, ssl_context=context, https_compatible=True
            )
        stream = await trio.open_tcp_stream(self.host, self.port)
        return stream


def _headers(origin: Origin, extra: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    headers = [("Host", origin.host_header), ("User-Agent", USER_AGENT)]
    headers += [(k, v) for k, v in extra if k.lower() != "host"]
    return headers


class HttpConnection:
    """One kept-alive HTTP/1.1 connection for requests made one after the other."""

    def __init__(self, origin: Origin, *, max_body: int) -> None:
        self.origin = origin
        self.max_body = max_body
        self._stream: trio.abc.Stream | None = None
        self._h11: h11.Connection | None = None

    async def request(
        self,
        method: str,
        target: str,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> tuple[int, bytes]:
        """Send one request and return ``(status, body)`` of its answer."""
        if self._stream is None or self._h11 is None:
            self._stream = await self.origin.open_stream()
            self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=16384)
        stream, conn = self._stream, self._h11
        all_headers = _headers(self.origin, headers)
        if method != "GET" or body:
            all_headers.append(("Content-Length", str(len(body))))
        try:
            out = conn.send(h11.Request(method=method, target=target, headers=all_headers))
            if body:
                out = (out or b"") + (conn.send(h11.Data(data=body)) or b"")
            out = (out or b"") + (conn.send(h11.EndOfMessage()) or b"")
            await stream.send_all(out)
            status, answer = await self._read_answer(stream, conn)
        except BaseException:
            await self.aclose()
            raise
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        else:
            await self.aclose()
        return status, answer

    async def _read_answer(
        self, stream: trio.abc.Stream, conn: h11.Connection
    ) -> tuple[int, bytes]:
        status = 0
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise HttpError(f"malformed HTTP answer: {exc}") from None
            if event is h11.NEED_DATA:
                data = await stream.receive_some(READ_SIZE)
                conn.receive_data(bytes(data))
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > self.max_body:
                    raise HttpError(f"HTTP answer over {self.max_body} bytes", status)
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return status, b"".join(chunks)
            elif isinstance(event, h11.ConnectionClosed):
                raise HttpError("the server closed the connection before answering")

    async def aclose(self) -> None:
        stream, self._stream, self._h11 = self._stream, None, None
        if stream is not None:
            with trio.CancelScope(shield=True):
                await stream.aclose()


async def open_websocket(
    origin: Origin, target: str, headers: Iterable[tuple[str, str]] = ()
) -> tuple[trio.abc.Stream, bytes]:
    """The WebSocket opening handshake to ``target``: the stream and the bytes already read
    past the server's 101 answer. :class:`HttpError` when the server does not switch."""
    stream = await origin.open_stream()
    try:
        key = base64.b64encode(os.urandom(16)).decode("ascii")
        conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=16384)
        request = h11.Request(
            method="GET",
            target=target,
            headers=[
                *_headers(origin, headers),
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Key", key),
                ("Sec-WebSocket-Version", "13"),
            ],
        )
        await stream.send_all(conn.send(request) or b"")
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise HttpError(f"malformed WebSocket handshake answer: {exc}") from None
            if event is h11.NEED_DATA:
                conn.receive_data(bytes(await stream.receive_some(READ_SIZE)))
                continue
            if isinstance(event, h11.InformationalResponse) and event.status_code == 101:
                answer = {k.decode().lower(): v.decode("latin-1") for k, v in event.headers}
                if answer.get("sec-websocket-accept") != accept_key(key):
                    raise HttpError("WebSocket handshake: wrong Sec-WebSocket-Accept", 101)
                return stream, bytes(conn.trailing_data[0])
            if isinstance(event, h11.Response):
                raise HttpError(
                    f"WebSocket handshake refused with HTTP {event.status_code}", event.status_code
                )
            if isinstance(event, h11.ConnectionClosed):
                raise HttpError("the server closed the connection during the WebSocket handshake")
    except BaseException:
        with trio.CancelScope(shield=True):
            await stream.aclose()
        raise

"""One HTTP/1.1 exchange with an ASGI app over pyserver's own connection, bodies streamed.

``App(asgi=...)``: a request the App does not answer itself is handed here by the
connection loop (``pyserver.trio.http.server``) right after its head is read, before its
body: the ASGI ``receive`` reads the body from the connection part by part as the app asks
(``http.request`` with ``more_body``), and ``send`` writes the response as the app sends it
(``http.response.start``, then each ``http.response.body`` part at once; without a
Content-Length, HTTP/1.1 chunked). The App's limits hold: the body is refused 413 past
``max_body_size`` (before the app sees any of it when Content-Length says so; mid-body, the
app's ``receive`` then gets ``http.disconnect`` and the connection closes), each read is
bounded by ``read_timeout``, and the whole request by ``request_timeout``.

The exchange drives the connection's h11 state (``connection.conn``) and stream; it
returns whether the connection may serve another request (keep-alive).
"""

from __future__ import annotations

import http
import logging
import math
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import h11
import trio

from pyserver.http import Request
from pyserver.trio.asgi.scope import asgi_scope
from pyserver.trio.http.server import HttpSettings

__all__ = ["serve_streamed"]

logger = logging.getLogger("pyserver.asgi")


class Connection(Protocol):
    """What this module uses of the connection loop's ``_Connection``."""

    conn: h11.Connection
    stream: trio.abc.Stream
    settings: HttpSettings
    request_deadline: float


class _Refused(Exception):
    """The body went over the limit or stopped coming: no more of this request."""


ASGICallable = Callable[
    [dict[str, Any], Callable[[], Any], Callable[[dict[str, Any]], Any]],
    Coroutine[Any, Any, None],
]


async def serve_streamed(app: ASGICallable, request: Request, connection: Connection) -> bool:
    conn = connection.conn
    stream = connection.stream
    settings = connection.settings
    head = request.method == "HEAD"
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > settings.max_body_size:
        await _answer(connection, 413, b"request body too large\n")
        return False
    body_read = 0
    body_done = False
    started = False
    finished = False
    response_done = trio.Event()

    async def next_event() -> Any:
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            deadline = min(trio.current_time() + settings.read_timeout, connection.request_deadline)
            with trio.move_on_at(deadline):
                data = await stream.receive_some(65536)
                conn.receive_data(bytes(data))
                continue
            raise _Refused("timeout")

    async def receive() -> dict[str, Any]:
        nonlocal body_read, body_done, started
        if body_done:
            await response_done.wait()
            return {"type": "http.disconnect"}
        if conn.client_is_waiting_for_100_continue:
            await stream.send_all(
                conn.send(h11.InformationalResponse(status_code=100, headers=[])) or b""
            )
        try:
            event = await next_event()
            if isinstance(event, h11.Data):
                body_read += len(event.data)
                if body_read > settings.max_body_size:
                    raise _Refused("too large")
                return {"type": "http.request", "body": bytes(event.data), "more_body": True}
            if isinstance(event, h11.EndOfMessage) or event is h11.PAUSED:
                body_done = True
                return {"type": "http.request", "body": b"", "more_body": False}
            raise _Refused("connection closed")
        except (_Refused, h11.RemoteProtocolError, trio.BrokenResourceError) as exc:
            body_done = True
            if not started and str(exc) == "too large":
                await _answer(connection, 413, b"request body too large\n")
                started = True
            return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal started, finished
        kind = message["type"]
        if kind == "http.response.start" and not started:
            started = True
            status = int(message["status"])
            headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", ())]
            if settings.server_header and not any(k.lower() == b"server" for k, _ in headers):
                headers.append((b"server", settings.server_header.encode()))
            try:
                reason = http.HTTPStatus(status).phrase.encode()
            except ValueError:
                reason = b""
            await stream.send_all(
                conn.send(h11.Response(status_code=status, headers=headers, reason=reason)) or b""
            )
        elif kind == "http.response.body" and started and not finished:
            data = bytes(message.get("body", b""))
            out = b""
            if data and not head:
                out += conn.send(h11.Data(data=data)) or b""
            if not message.get("more_body", False):
                finished = True
                out += conn.send(h11.EndOfMessage()) or b""
                response_done.set()
            if out:
                await stream.send_all(out)

    try:
        await app(asgi_scope("http", request), receive, send)
    except Exception:
        logger.exception("the ASGI app failed for %s %s", request.method, request.path)
    finally:
        response_done.set()
    if not started:
        await _answer(connection, 500, b"internal server error\n")
        return False
    if not finished or conn.our_state is h11.MUST_CLOSE:
        return False  # (a response cut short: the connection cannot go on)
    # what the app did not read of the body (a GET's empty one, typically) is read and
    # dropped, within the same limits, so the connection can take the next request
    try:
        while conn.their_state is h11.SEND_BODY:
            event = await next_event()
            if isinstance(event, h11.Data):
                body_read += len(event.data)
                if body_read > settings.max_body_size:
                    return False
            elif not isinstance(event, h11.EndOfMessage):
                return False
    except (_Refused, h11.RemoteProtocolError, trio.BrokenResourceError):
        return False
    if conn.their_state is not h11.DONE:
        return False
    try:
        conn.start_next_cycle()
    except h11.LocalProtocolError:
        return False
    connection.request_deadline = math.inf
    return True


async def _answer(connection: Connection, status: int, body: bytes) -> None:
    """A whole answer from pyserver itself (the app has sent nothing), closing after it."""
    conn = connection.conn
    if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    try:
        out = conn.send(
            h11.Response(
                status_code=status, headers=headers, reason=http.HTTPStatus(status).phrase.encode()
            )
        )
        out = (out or b"") + (conn.send(h11.Data(data=body)) or b"")
        out += conn.send(h11.EndOfMessage()) or b""
        await connection.stream.send_all(out)
    except (h11.LocalProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
        pass

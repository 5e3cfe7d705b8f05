"""ASGI scopes and messages to and from pyserver's HTTP contracts (``pyserver.http``).

A scope becomes a :class:`~pyserver.http.Request` (what every pyserver handler takes), a
request body is read from ``receive`` within a limit, and a
:class:`~pyserver.http.Response` goes out as ``http.response.start`` + ``http.response.body``
(or, refusing a WebSocket before its accept, as the ``websocket.http.response`` extension's
messages when the server has it, else a plain ``websocket.close``: the server answers 403).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from pyserver.http import Headers, Request, Response

__all__ = [
    "ASGIReceive",
    "ASGISend",
    "Scope",
    "asgi_scope",
    "read_body",
    "refuse_websocket",
    "request_of",
    "send_response",
]

Scope = dict[str, Any]
ASGIReceive = Callable[[], Coroutine[Any, Any, dict[str, Any]]]
ASGISend = Callable[[dict[str, Any]], Coroutine[Any, Any, None]]


def request_of(scope: Scope) -> Request:
    """The request of an ``http`` or ``websocket`` scope (body not read yet)."""
    client = scope.get("client") or ("", 0)
    return Request(
        method=scope.get("method", "GET"),
        path=scope["path"],
        query_string=scope.get("query_string", b"").decode("latin-1"),
        headers=Headers((k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]),
        remote_address=(str(client[0]), int(client[1])),
        http_version=scope.get("http_version", "1.1"),
        secure=scope.get("scheme") in ("https", "wss"),
    )


def asgi_scope(kind: str, request: Request) -> Scope:
    """The ASGI scope (``http`` or ``websocket``) of a request read by pyserver's server."""
    if kind == "http":
        scheme = "https" if request.secure else "http"
    else:
        scheme = "wss" if request.secure else "ws"
    host, port = request.remote_address
    return {
        "type": kind,
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": request.http_version,
        "method": request.method,
        "scheme": scheme,
        "path": request.path,
        "raw_path": request.path.encode("utf-8", "surrogateescape"),
        "query_string": request.query_string.encode("latin-1"),
        "root_path": "",
        "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in request.headers.items()],
        "client": (host, port) if host else None,
        "server": None,
        "extensions": {},
    }


async def read_body(receive: ASGIReceive, request: Request, limit: int) -> int | None:
    """Read the request body into ``request.body``: None when read, else the status to
    answer (413 over ``limit``; 400 when the client went away mid-body)."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        return 413
    body = bytearray()
    while True:
        event = await receive()
        if event["type"] != "http.request":
            return 400  # http.disconnect
        body += event.get("body", b"")
        if len(body) > limit:
            return 413
        if not event.get("more_body", False):
            request.body = bytes(body)
            return None


def _raw_headers(response: Response, head: bool) -> tuple[list[tuple[bytes, bytes]], bool]:
    """The response's headers for ASGI (Content-Length added as pyserver's own server
    does) and whether it carries a body."""
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
    names = {k for k, _ in headers}
    status = response.status
    no_body = status < 200 or status in (204, 304)
    if not no_body and b"content-length" not in names and b"transfer-encoding" not in names:
        headers.append((b"content-length", str(len(response.body)).encode()))
    return headers, not (head or no_body)


async def send_response(send: ASGISend, response: Response, *, head: bool = False) -> None:
    headers, with_body = _raw_headers(response, head)
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body if with_body else b""})


async def refuse_websocket(scope: Scope, send: ASGISend, response: Response) -> None:
    """Refuse a WebSocket before accepting it with ``response`` (status, headers and body
    as the native server answers) where the server supports it, else with 403."""
    if "websocket.http.response" in (scope.get("extensions") or {}):
        headers, _ = _raw_headers(response, False)
        await send(
            {
                "type": "websocket.http.response.start",
                "status": response.status,
                "headers": headers,
            }
        )
        await send({"type": "websocket.http.response.body", "body": response.body})
    else:
        await send({"type": "websocket.close", "code": 1008})

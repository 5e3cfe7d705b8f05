"""The application object: routes, WebSocket endpoints, mounts, static files, and serving.

Dispatch order for a request: the socket.io client bundle (``/socket.io/socket.io.js`` and
friends, before any mount so Engine.IO mounted at ``/socket.io/`` does not shadow it), the
health endpoint, mounts (longest prefix first), routes (405 with ``Allow`` for a known path
and another method), WebSocket-only paths hit without an upgrade (426), static files,
else 404.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import trio

from pyserver.http import Mount, Request, Response, WebSocket
from pyserver.refusals import BurstLog, client_key
from pyserver.trio.http import static
from pyserver.trio.http.server import (
    HttpSettings,
    WebSocketEndpoint,
    error_response,
    remote_address,
    serve_connection,
)
from pyserver.trio.websocket.connection import DeflateWebSocket
from pyserver.trio.websocket.connection import WebSocket as TrioWebSocket
from pyserver.trio.websocket.reactive import serving_reactor
from pyserver.ws.connection import WebSocketConnection
from pyserver.ws.deflate import DeflateSpec, PerMessageDeflate, deflate_options
from pyserver.ws.handshake import HandshakeAccepted, HostAllowList, is_websocket_upgrade

if TYPE_CHECKING:
    from pyserver.trio.asgi.hosted import HostedASGI

__all__ = ["App"]

logger = logging.getLogger("pyserver.http")

HttpHandlerT = TypeVar("HttpHandlerT", bound=Callable[[Request], Awaitable[Response]])
WsHandlerT = TypeVar("WsHandlerT", bound=Callable[..., Awaitable[None]])

_HEALTH_BODY = json.dumps({"status": "ok"}).encode()


class App:
    """A pyserver application. ``trio.run(app.serve, "127.0.0.1", 8080)`` serves it, and
    ``await nursery.start(app.serve, host, port)`` returns the bound listeners.

    Limits (keyword-only; None turns a limit off):

    * ``max_connections``: connections served at once (HTTP keep-alive and WebSocket alike).
      The default, ``"auto"``, is the process's open-file limit (``RLIMIT_NOFILE``) less a
      reserve of a sixteenth (at least 64) for files, listeners and outgoing connections: the
      server then answers 503 where it would otherwise run out of descriptors; None where
      the limit is unknown or unlimited.
    * ``max_connections_per_ip``: connections at once from one client address (the TCP
      peer's; IPv6 counted by /64). Default None: behind a reverse proxy every client has
      the proxy's address, so only an App facing clients directly should set it.
      A connection over either cap is answered ``503 Service Unavailable`` (a WebSocket
      upgrade too, before the upgrade) and closed; one log line per burst of refusals
      (``pyserver.http``), never one per connection.
    * ``request_timeout`` (default 300 s, Node's ``requestTimeout``): the whole request,
      head and body, must arrive within it from its first byte, else 408 and close (a body
      sent a byte at a time cannot hold the connection). ``read_timeout`` (30 s) still
      bounds each read, and the head as a whole.
    * ``ws_ping_interval`` (default 20 s) / ``ws_ping_timeout`` (default 20 s, as the
      ``websockets`` library): a Ping on every raw WebSocket route (``app.websocket``) after
      that long, closed 1011 when no Pong comes in time, so a dead peer does not hold its
      connection. Engine.IO mounts have their own heartbeat and get none. None: no pings.
    """

    def __init__(
        self,
        *,
        static_dir: str | os.PathLike[str] | None = None,
        static_cache_control: str = "no-cache",
        compression: DeflateSpec = False,
        allowed_origins: Sequence[str] | None = None,
        ws_ping_interval: float | None = 20.0,
        ws_ping_timeout: float | None = 20.0,
        ws_close_timeout: float = 5.0,
        ws_max_message_size: int = 1 << 20,
        ws_max_inbox: int = 64,
        ws_max_outbox: int = 1024,
        ws_max_outbox_bytes: int = 4 << 20,
        max_header_size: int = 16 * 1024,
        max_body_size: int = 1 << 20,
        read_timeout: float = 30.0,
        request_timeout: float | None = 300.0,
        max_connections: int | Literal["auto"] | None = "auto",
        max_connections_per_ip: int | None = None,
        serve_client: bool = True,
        client_path: str = "/socket.io",
        client_dist_dir: str | os.PathLike[str] | None = None,
        health_path: str | None = "/healthz",
        allowed_hosts: Sequence[str] | None = None,
        security_headers: Mapping[str, str] | None = static.DEFAULT_SECURITY_HEADERS,
        asgi: Any = None,
    ) -> None:
        """``allowed_hosts``: the Host names answered (DNS-rebinding protection, as Django's
        ``ALLOWED_HOSTS``): ``["localhost", "127.0.0.1", "[::1]"]``, ``*.example.com``
        wildcards, ``"*"``; another Host (port ignored) gets 400, upgrades included, and one
        log line. None (the default): any Host.
        ``security_headers``: added to every static-file answer (default: ``nosniff``,
        ``X-Frame-Options: SAMEORIGIN``, ``Referrer-Policy: same-origin``); add a
        ``Content-Security-Policy`` here; None or ``{}``: none.
        ``asgi``: an ASGI 3 app (Starlette, FastAPI...) that gets every request the App does
        not answer itself, its lifespan run around the serving
        (:mod:`pyserver.trio.asgi.hosted`)."""
        self.static_dir = Path(static_dir) if static_dir is not None else None
        self.static_cache_control = static_cache_control
        #: permessage-deflate's options (threshold, level), None when it is off.
        self.deflate: PerMessageDeflate | None = deflate_options(compression)
        self.compression = self.deflate is not None
        self.allowed_origins: Sequence[str] | None = (
            list(allowed_origins) if allowed_origins is not None else None
        )
        self.ws_ping_interval = ws_ping_interval
        self.ws_ping_timeout = ws_ping_timeout
        self.ws_close_timeout = ws_close_timeout
        self.ws_max_message_size = ws_max_message_size
        self.ws_max_inbox = ws_max_inbox
        self.ws_max_outbox = ws_max_outbox
        self.ws_max_outbox_bytes = ws_max_outbox_bytes
        self.http_settings = HttpSettings(
            max_header_size=max_header_size,
            max_body_size=max_body_size,
            read_timeout=read_timeout,
            request_timeout=request_timeout,
            allowed_hosts=HostAllowList(allowed_hosts) if allowed_hosts is not None else None,
        )
        self.security_headers: Mapping[str, str] = dict(security_headers or {})
        self.serve_client = serve_client
        self.client_path = client_path.rstrip("/")
        self.client_dist_dir = client_dist_dir
        self.health_path = health_path
        self._routes: dict[str, dict[str, Callable[[Request], Awaitable[Response]]]] = {}
        self._websockets: dict[str, WebSocketEndpoint] = {}
        self._mounts: list[tuple[str, Mount]] = []
        #: Connections served at once, in all (None: no cap; see the class docstring).
        self.max_connections: int | None = (
            default_max_connections() if max_connections == "auto" else max_connections
        )
        #: Connections served at once per client address (None: no cap).
        self.max_connections_per_ip = max_connections_per_ip
        self._connections = 0
        self._connections_per_ip: dict[str, int] = {}
        self._refusals = BurstLog()
        self.asgi: HostedASGI | None = None
        if asgi is not None:
            from pyserver.trio.asgi.hosted import HostedASGI

            self.asgi = HostedASGI(asgi)

    # -- registration ------------------------------------------------------------------

    def route(
        self, path: str, methods: Sequence[str] = ("GET",)
    ) -> Callable[[HttpHandlerT], HttpHandlerT]:
        """Decorate ``async def handler(request) -> Response`` for ``path`` and ``methods``
        (a GET route answers HEAD too, without the body)."""

        def register(handler: HttpHandlerT) -> HttpHandlerT:
            self.add_route(path, handler, methods)
            return handler

        return register

    def add_route(
        self,
        path: str,
        handler: Callable[[Request], Awaitable[Response]],
        methods: Sequence[str] = ("GET",),
    ) -> None:
        table = self._routes.setdefault(path, {})
        for method in methods:
            table[method.upper()] = handler

    def websocket(
        self, path: str, *, subprotocols: Sequence[str] = ()
    ) -> Callable[[WsHandlerT], WsHandlerT]:
        """Decorate ``async def handler(ws)`` as the WebSocket endpoint at ``path``;
        ``subprotocols`` in the server's order of preference."""

        def register(handler: WsHandlerT) -> WsHandlerT:
            self.add_websocket(path, handler, subprotocols=subprotocols)
            return handler

        return register

    def add_websocket(
        self,
        path: str,
        handler: Callable[[WebSocket], Awaitable[None]],
        *,
        subprotocols: Sequence[str] = (),
    ) -> None:
        self._websockets[path] = WebSocketEndpoint(handler, tuple(subprotocols))

    def mount(self, prefix: str, mount: Mount) -> None:
        """Give every request under ``prefix`` (``/engine.io/``) to ``mount``."""
        self._mounts.append((prefix.rstrip("/"), mount))
        self._mounts.sort(key=lambda item: len(item[0]), reverse=True)

    def _find_mount(self, path: str) -> Mount | None:
        for prefix, mount in self._mounts:
            if path == prefix or path.startswith(prefix + "/") or not prefix:
                return mount
        return None

    # -- dispatch (called by pyserver.trio.http.server) ------------------------------------

    def websocket_endpoint(self, request: Request) -> WebSocketEndpoint | None:
        endpoint = self._websockets.get(request.path)
        if endpoint is not None:
            return endpoint
        mount = self._find_mount(request.path)
        if mount is not None:
            return WebSocketEndpoint(
                mount.handle_websocket,
                (),
                mount.check_websocket,
                getattr(mount, "websocket_origin_allowed", None),
                getattr(mount, "check_websocket_async", None),
                getattr(mount, "websocket_headers", None),
            )
        return self.asgi.websocket_endpoint(request) if self.asgi is not None else None

    def streamed_handler(self, request: Request) -> Callable[[Any], Awaitable[bool]] | None:
        """For the connection loop, before the body is read: a request for the ASGI app
        (``asgi=``) is served with its bodies streamed (:mod:`pyserver.trio.asgi.streamed`;
        the handler returns whether the connection goes on); None: the usual way. With
        ``static_dir`` the App's static files come first, so that way (body read whole)."""
        asgi = self.asgi
        if asgi is None or self.static_dir is not None or is_websocket_upgrade(request.headers):
            return None
        path = request.path
        if (
            self._find_mount(path) is not None
            or path in self._routes
            or path in self._websockets
            or path == self.health_path
            or (self.serve_client and path.startswith(self.client_path + "/"))
        ):
            return None
        return partial(asgi.serve_streamed, request)

    def open_websocket(
        self,
        stream: trio.abc.Stream,
        request: Request,
        accepted: HandshakeAccepted,
        trailing_data: bytes,
    ) -> TrioWebSocket:
        # keepalive pings on raw routes; a mount (Engine.IO) has a heartbeat of its own
        raw = request.path in self._websockets
        options = self.deflate if accepted.deflate is not None else None
        conn = WebSocketConnection(
            deflate=accepted.deflate,
            max_message_size=self.ws_max_message_size,
            ping_interval=self.ws_ping_interval if raw else None,
            ping_timeout=self.ws_ping_timeout if raw else None,
            close_timeout=self.ws_close_timeout,
            # (the encoder's settings matter only with deflate: without, it is shared)
            compression_level=options.level if options is not None else 6,
            compress_threshold=options.threshold if options is not None else 128,
            now=trio.current_time(),
        )
        if options is not None:
            return DeflateWebSocket(
                stream,
                request,
                conn,
                compression_level=options.level,
                compress_threshold=options.threshold,
                subprotocol=accepted.subprotocol,
                trailing_data=trailing_data,
                max_inbox=self.ws_max_inbox,
                max_outbox=self.ws_max_outbox,
                max_outbox_bytes=self.ws_max_outbox_bytes,
            )
        return TrioWebSocket(
            stream,
            request,
            conn,
            subprotocol=accepted.subprotocol,
            trailing_data=trailing_data,
            max_inbox=self.ws_max_inbox,
            max_outbox=self.ws_max_outbox,
            max_outbox_bytes=self.ws_max_outbox_bytes,
        )

    async def handle_http(self, request: Request) -> Response:
        path = request.path
        method = request.method
        if self.serve_client and path.startswith(self.client_path + "/"):
            name = path[len(self.client_path) + 1 :]
            if static.CLIENT_FILE_RE.fullmatch(name):
                answer = await trio.to_thread.run_sync(self._client_file, name, request)
                if answer is not None:
                    return answer
        if path == self.health_path:
            if method not in ("GET", "HEAD"):
                return error_response(405, None, ("Allow", "GET, HEAD"))
            return Response(
                200,
                [("Content-Type", "application/json"), ("Cache-Control", "no-store")],
                _HEALTH_BODY,
            )
        mount = self._find_mount(path)
        if mount is not None:
            return await mount.handle_http(request)
        table = self._routes.get(path)
        if table is not None:
            handler = table.get(method)
            if handler is None and method == "HEAD":
                handler = table.get("GET")
            if handler is None:
                allowed = sorted(set(table) | ({"HEAD"} if "GET" in table else set()))
                return error_response(405, None, ("Allow", ", ".join(allowed)))
            return await handler(request)
        if path in self._websockets:
            return error_response(
                426,
                "this resource speaks WebSocket only",
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
            )
        if self.static_dir is not None:
            answer = await trio.to_thread.run_sync(
                partial(
                    static.static_file_response,
                    self.static_dir,
                    path,
                    method,
                    request.headers,
                    cache_control=self.static_cache_control,
                    query_string=request.query_string,
                    extra_headers=self.security_headers,
                )
            )
            if answer is not None:
                return answer
        if self.asgi is not None:
            return await self.asgi.handle_http(request)
        return error_response(404)

    def _client_file(self, name: str, request: Request) -> Response | None:
        dist = static.find_client_dist(self.client_dist_dir)
        if dist is None or not dist.is_dir():
            return None
        if request.method not in ("GET", "HEAD"):
            return error_response(405, None, ("Allow", "GET, HEAD"))
        return static.client_file_response(dist, name, request.method, request.headers)

    # -- serving -----------------------------------------------------------------------

    async def serve(
        self,
        host: str | None,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        task_status: trio.TaskStatus[list[Any]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``host:port`` (0: any free port) and serve until cancelled.
        ``task_status.started`` gets the listeners (as ``trio.serve_tcp`` does).

        With ``ssl_context`` (a server context with its certificate loaded, e.g.
        ``ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)`` then ``load_cert_chain``)
        every connection speaks TLS: https and wss. The listeners are then
        ``trio.SSLListener``s (their ``transport_listener`` is the TCP one). TLS connections
        are read and written by their own tasks (the reactor and the Rust fan-out work on
        plain sockets); a failed handshake is logged on one line and closes only that
        connection."""
        listeners: list[Any] = await trio.open_tcp_listeners(port, host=host)
        if ssl_context is not None:
            listeners = [
                trio.SSLListener(listener, ssl_context, https_compatible=True)
                for listener in listeners
            ]
        await self.serve_listeners(listeners, task_status=task_status)

    async def serve_listeners(
        self,
        listeners: list[Any],
        *,
        handler_nursery: trio.Nursery | None = None,
        task_status: trio.TaskStatus[list[Any]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve connections accepted from ``listeners`` (any ``trio.abc.Listener``).

        On Linux, the WebSocket connections served here whose messages go to callbacks
        (Engine.IO's) are read by one reactor whose tasks are children of this call
        (:mod:`pyserver.trio.websocket.reactor`): cancelling it cancels them, and the
        handlers they run, like any other task of the server."""
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(serving_reactor())
            if self.asgi is not None:  # its lifespan: started before the first connection
                await stack.enter_async_context(self.asgi.lifespan())
            await trio.serve_listeners(
                self.serve_stream,
                listeners,
                handler_nursery=handler_nursery,
                task_status=task_status,
            )

    @property
    def connection_count(self) -> int:
        """Connections being served now (what ``max_connections`` caps)."""
        return self._connections

    async def serve_stream(self, stream: trio.abc.Stream) -> None:
        """Serve one already accepted connection until it ends (closes the stream); over
        ``max_connections`` or ``max_connections_per_ip`` it is answered 503 and closed."""
        key = client_key(remote_address(stream)[0])
        counts = self._connections_per_ip
        cap = self.max_connections
        per_ip = self.max_connections_per_ip
        if cap is not None and self._connections >= cap:
            await self._refuse(stream, key, f"max_connections ({cap})")
            return
        if key and per_ip is not None and counts.get(key, 0) >= per_ip:
            await self._refuse(stream, key, f"max_connections_per_ip ({per_ip})")
            return
        # counted from here; the finally gives it back however the connection ends
        self._connections += 1
        if key:
            counts[key] = counts.get(key, 0) + 1
        try:
            await serve_connection(stream, self)
        finally:
            self._connections -= 1
            if key:
                left = counts[key] - 1
                if left:
                    counts[key] = left
                else:
                    del counts[key]

    async def _refuse(self, stream: trio.abc.Stream, key: str, cap: str) -> None:
        """503 and close, before reading the request (a WebSocket upgrade is refused so
        too): the answer goes out at once, then what the client sent is read and dropped
        for a moment (closing with unread data would reset the connection, and the client
        could lose the answer), then the connection is closed."""
        count = self._refusals.due(trio.current_time())
        if count:
            logger.warning(
                "refused %d connection(s) over %s since the last such line (the last from %s)",
                count,
                cap,
                key or "?",
            )
        try:
            with trio.move_on_after(_REFUSAL_LINGER):
                await stream.send_all(_REFUSAL)
                if isinstance(stream, trio.abc.HalfCloseableStream):
                    await stream.send_eof()
                drained = 0
                while drained < _REFUSAL_DRAIN and (data := await stream.receive_some(65536)):
                    drained += len(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            await trio.aclose_forcefully(stream)


_REFUSAL_BODY = b"too many connections, try again later\n"
_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: " + str(len(_REFUSAL_BODY)).encode() + b"\r\n"
    b"Retry-After: 5\r\n"
    b"Connection: close\r\n\r\n" + _REFUSAL_BODY
)
_REFUSAL_LINGER = 1.0
"""Seconds a refused connection is kept to drain what its client sent (up to 64 KiB)."""
_REFUSAL_DRAIN = 64 * 1024


def default_max_connections() -> int | None:
    """``max_connections="auto"``: the open-file limit less a reserve, None if unknown."""
    try:
        import resource
    except ImportError:  # not on this platform
        return None
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return None
    return max(1, soft - max(64, soft // 16))

"""``ASGIApp``: a pyserver ``Server`` (or ``App``) as an ASGI 3 application.

``ASGIApp(sio, other_asgi_app=None)`` (python-socketio's name and signature) answers, at the
paths pyserver owns, exactly what the native server answers there: the Engine.IO mount
(long-polling over the ``http`` scope, the WebSocket transport and the upgrade over the
``websocket`` scope), the client bundle (``/socket.io/socket.io.js``), the App's routes and
raw WebSocket routes. Every other path goes to ``other_asgi_app`` (404 without one: then the
App answers everything, its static files and health endpoint included).

The request goes through the same checks as on pyserver's own listener: ``allowed_hosts``,
the body limit (413), the WebSocket Origin rule (the App's ``allowed_origins``, and the
mount's CORS origins), the subprotocol choice, the mount's ``check_websocket`` (the same
400/403 answers, through the ``websocket.http.response`` extension where the ASGI server has
it). The WebSocket itself is :class:`~pyserver.trio.asgi.websocket.AsgiWebSocket`, with the
App's outbox limits.

pyserver runs on Trio: under an asyncio ASGI server (uvicorn, ``hypercorn -k asyncio``) the
app refuses at lifespan startup with one line saying so. Its background work starts on the
lifespan (:mod:`.lifespan`); a request that comes without it is answered 500 with one log
line saying what to do.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

import trio

from pyserver.http import Request, Response
from pyserver.trio.asgi.lifespan import Background, run_lifespan
from pyserver.trio.asgi.scope import (
    ASGIReceive,
    ASGISend,
    Scope,
    read_body,
    refuse_websocket,
    request_of,
    send_response,
)
from pyserver.trio.asgi.websocket import AsgiWebSocket
from pyserver.trio.engineio.server import EngineIOServer
from pyserver.trio.http import static
from pyserver.trio.http.app import App
from pyserver.trio.http.server import WebSocketEndpoint, error_response
from pyserver.trio.socketio.server import Server
from pyserver.ws.handshake import header_tokens_raw, origin_allowed, select_subprotocol

__all__ = ["NOT_TRIO", "ASGIApp", "serve_websocket"]

logger = logging.getLogger("pyserver.asgi")

ASGICallable = Callable[[Scope, ASGIReceive, ASGISend], Coroutine[Any, Any, None]]

NOT_TRIO = (
    "pyserver runs on Trio, not asyncio: serve this ASGIApp with `hypercorn -k trio module:app`"
)
NO_LIFESPAN = (
    "pyserver's ASGIApp got a request before the ASGI lifespan startup: its background work "
    "(heartbeats, handler tasks) starts there; serve it with lifespan on (`hypercorn -k trio`)"
)


def _running_trio() -> bool:
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True


class ASGIApp:
    """pyserver as an ASGI 3 app (module docstring). ``sio_or_app``: a ``Server`` (its
    ``app`` is served and ``Server.run`` is the background work) or an ``App`` (its
    Engine.IO mounts' ``serve`` is)."""

    def __init__(
        self,
        sio_or_app: Server | App,
        other_asgi_app: ASGICallable | None = None,
    ) -> None:
        self.server: Server | None = sio_or_app if isinstance(sio_or_app, Server) else None
        self.app: App = sio_or_app.app if isinstance(sio_or_app, Server) else sio_or_app
        self.other_asgi_app = other_asgi_app
        self._background: list[Background] = (
            [self.server.run]
            if self.server is not None
            else [m.serve for _, m in self.app._mounts if isinstance(m, EngineIOServer)]
        )
        #: True between lifespan startup and shutdown.
        self.started = False
        self._warned_no_lifespan = False

    def _set_started(self, value: bool) -> None:
        self.started = value

    async def __call__(self, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        kind = scope["type"]
        if not _running_trio():
            logger.error(NOT_TRIO)
            if kind == "lifespan":
                await receive()
                await send({"type": "lifespan.startup.failed", "message": NOT_TRIO})
                return
            raise RuntimeError(NOT_TRIO)
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            await run_lifespan(
                scope, receive, send, self._background, self.other_asgi_app, self._set_started
            )

    # -- what pyserver answers -------------------------------------------------------------

    def owns(self, path: str) -> bool:
        """Whether ``path`` is pyserver's (else it goes to the other app): the Engine.IO
        mount, the client bundle, the App's routes and raw WebSocket routes."""
        app = self.app
        if app._find_mount(path) is not None or path in app._routes or path in app._websockets:
            return True
        prefix = app.client_path + "/"
        return (
            app.serve_client
            and path.startswith(prefix)
            and static.CLIENT_FILE_RE.fullmatch(path[len(prefix) :]) is not None
        )

    def _not_ready(self) -> bool:
        """Background work is needed and has not started (no lifespan): logged once."""
        if self.started or not self._background:
            return False
        if not self._warned_no_lifespan:
            self._warned_no_lifespan = True
            logger.error(NO_LIFESPAN)
        return True

    def _host_refused(self, request: Request) -> bool:
        allowed = self.app.http_settings.allowed_hosts
        return allowed is not None and not allowed(request.headers.get("host"))

    async def _http(self, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        other = self.other_asgi_app
        if other is not None and not self.owns(scope["path"]):
            await other(scope, receive, send)
            return
        request = request_of(scope)
        if self._not_ready():
            await send_response(send, error_response(500, NO_LIFESPAN))
            return
        if self._host_refused(request):
            await send_response(send, error_response(400, "Host not allowed"))
            return
        status = await read_body(receive, request, self.app.http_settings.max_body_size)
        if status is not None:
            await send_response(send, error_response(status))
            return
        try:
            response = await self.app.handle_http(request)
        except Exception:
            logger.exception("handler failed for %s %s", request.method, request.path)
            response = error_response(500)
        await send_response(send, response, head=request.method == "HEAD")

    async def _websocket(self, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        request = request_of(scope)
        endpoint = self.app.websocket_endpoint(request)
        other = self.other_asgi_app
        if endpoint is None and other is not None:
            await other(scope, receive, send)
            return
        event = await receive()
        if event["type"] != "websocket.connect":
            return
        refusal = self._check_websocket(request, endpoint)
        if refusal is not None:
            await refuse_websocket(scope, send, refusal)
            return
        assert endpoint is not None  # (refused above otherwise)
        offered = header_tokens_raw(request.headers, "sec-websocket-protocol")
        subprotocol = select_subprotocol(offered, endpoint.subprotocols)
        await send({"type": "websocket.accept", "subprotocol": subprotocol})
        app = self.app
        ws = AsgiWebSocket(
            request,
            receive,
            send,
            subprotocol=subprotocol,
            max_message_size=app.ws_max_message_size if request.path in app._websockets else None,
            max_outbox=app.ws_max_outbox,
            max_outbox_bytes=app.ws_max_outbox_bytes,
            close_timeout=app.ws_close_timeout,
        )
        await serve_websocket(ws, endpoint, app.ws_close_timeout)

    def _check_websocket(
        self, request: Request, endpoint: WebSocketEndpoint | None
    ) -> Response | None:
        """The native server's checks before accepting, in its order: None to accept."""
        if endpoint is None:
            return error_response(404)
        if self._not_ready():
            return error_response(500, NO_LIFESPAN)
        if self._host_refused(request):
            return error_response(400, "Host not allowed")
        origins = request.headers.get_all("origin")
        if len(origins) > 1:
            return error_response(400, "more than one Origin")
        origin = origins[0].strip() if origins else None
        host = request.headers.get("host")
        if not origin_allowed(origin, host, self.app.allowed_origins) and not (
            origin is not None and endpoint.origin_ok is not None and endpoint.origin_ok(origin)
        ):
            return error_response(403, "cross-origin WebSocket refused")
        if endpoint.check is not None:
            try:
                return endpoint.check(request)
            except Exception:
                logger.exception("WebSocket check failed for %s", request.path)
                return error_response(500)
        return None


async def serve_websocket(
    ws: AsgiWebSocket, endpoint: WebSocketEndpoint, close_timeout: float
) -> None:
    """Run an accepted ASGI WebSocket: its writer and the endpoint's handler; when the
    handler returns, the close goes out after what is queued (waiting up to ``close_timeout``
    for it), then what still runs for this connection is cancelled."""
    async with trio.open_nursery() as nursery:
        ws._nursery = nursery
        nursery.start_soon(ws.run_writer)
        try:
            await endpoint.handler(ws)
        except Exception:
            logger.exception("WebSocket handler failed for %s", ws.request.path)
            ws.close_nowait(1011, "internal error")
        finally:
            ws.close_nowait(1000)
            with trio.move_on_after(close_timeout):
                await ws._finished.wait()
            nursery.cancel_scope.cancel()

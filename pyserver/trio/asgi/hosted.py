"""An ASGI app served by pyserver's own HTTP/1.1 server: ``App(asgi=some_asgi_app)``.

The App answers what it owns (Engine.IO and its other mounts, routes, raw WebSocket routes,
static files, the client bundle, the health endpoint) and hands every other request to the
ASGI app, so a team keeps pyserver's WebSocket fast path and its Starlette / FastAPI routes
on one port:

* ``http``: the connection loop hands the request over right after its head
  (``App.streamed_handler``), and :mod:`.streamed` runs the exchange with both bodies
  streamed, within the App's limits (413 past ``max_body_size``, read and request timeouts),
  keep-alive after it. With ``static_dir`` set the App's static files come first, so there
  :meth:`HostedASGI.handle_http` serves it the plain way: the body read whole (413 past the
  limit before the app sees it), given in one ``http.request`` message, and the app's
  response parts gathered into the response pyserver writes.
* ``websocket``: pyserver's server does the handshake (its checks: Host, Origin rule,
  version, key; no subprotocol is agreed, none being known before the app runs), and the
  app gets ``websocket.connect``, then one ``websocket.receive`` per message, and
  ``websocket.disconnect`` with the close code; its ``websocket.accept`` is then a no-op,
  ``websocket.send`` waits for room in the outbox, ``websocket.close`` closes (a close
  before the accept: 1008, as the connection is already open). The native WebSocket
  (Rust framing, bounded outbox, keepalive pings of raw routes) carries it.
* ``lifespan``: :meth:`HostedASGI.lifespan` runs the app's lifespan around the serving
  (``App.serve_listeners``): startup before the first connection is accepted, shutdown when
  the serving ends; an app without lifespan support is left out.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from pyserver.errors import ConnectionClosed
from pyserver.http import Request, Response, WebSocket
from pyserver.trio.asgi.scope import asgi_scope
from pyserver.trio.asgi.streamed import ASGICallable, Connection, serve_streamed
from pyserver.trio.http.server import WebSocketEndpoint, error_response

__all__ = ["HostedASGI"]

logger = logging.getLogger("pyserver.asgi")


class HostedASGI:
    """The ASGI app behind an ``App`` (module docstring)."""

    def __init__(self, app: ASGICallable) -> None:
        self.app = app

    # -- http ------------------------------------------------------------------------------

    async def handle_http(self, request: Request) -> Response:
        sent_body = False
        done = trio.Event()

        async def receive() -> dict[str, Any]:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": request.body, "more_body": False}
            await done.wait()
            return {"type": "http.disconnect"}

        status: int | None = None
        headers: list[tuple[str, str]] = []
        body = bytearray()

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            kind = message["type"]
            if kind == "http.response.start":
                status = int(message["status"])
                headers.extend(
                    (k.decode("latin-1"), v.decode("latin-1"))
                    for k, v in message.get("headers", ())
                )
            elif kind == "http.response.body":
                body.extend(message.get("body", b""))
                if not message.get("more_body", False):
                    done.set()

        try:
            await self.app(asgi_scope("http", request), receive, send)
        except Exception:
            logger.exception("the ASGI app failed for %s %s", request.method, request.path)
            if status is None:
                return error_response(500)
        finally:
            done.set()
        if status is None:
            logger.error("the ASGI app sent no response for %s %s", request.method, request.path)
            return error_response(500)
        return Response(status, headers, bytes(body))

    async def serve_streamed(self, request: Request, connection: Connection) -> bool:
        """The exchange with bodies streamed (:mod:`.streamed`): whether the connection
        may go on (keep-alive)."""
        return await serve_streamed(self.app, request, connection)

    # -- websocket -------------------------------------------------------------------------

    def websocket_endpoint(self, request: Request) -> WebSocketEndpoint:
        return WebSocketEndpoint(self.serve_websocket)

    async def serve_websocket(self, ws: WebSocket) -> None:
        connected = False
        accepted = False

        async def receive() -> dict[str, Any]:
            nonlocal connected
            if not connected:
                connected = True
                return {"type": "websocket.connect"}
            try:
                message = await ws.receive()
            except ConnectionClosed as closed:
                return {"type": "websocket.disconnect", "code": closed.code}
            if isinstance(message, str):
                return {"type": "websocket.receive", "text": message}
            return {"type": "websocket.receive", "bytes": message}

        async def send(message: dict[str, Any]) -> None:
            nonlocal accepted
            kind = message["type"]
            if kind == "websocket.accept":
                accepted = True
            elif kind == "websocket.send":
                text = message.get("text")
                try:
                    await ws.send(text if text is not None else message.get("bytes") or b"")
                except ConnectionClosed:
                    pass  # (the app learns it from receive)
            elif kind == "websocket.close":
                code = int(message.get("code", 1000)) if accepted else 1008
                ws.close_nowait(code, str(message.get("reason") or ""))

        try:
            await self.app(asgi_scope("websocket", ws.request), receive, send)
        except Exception:
            logger.exception("the ASGI app failed for WebSocket %s", ws.request.path)
            ws.close_nowait(1011, "internal error")

    # -- lifespan --------------------------------------------------------------------------

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """Run the app's lifespan around the body (module docstring); startup failure
        raises RuntimeError with the app's message."""
        to_app, app_in = trio.open_memory_channel[dict[str, Any]](math.inf)
        app_out, from_app = trio.open_memory_channel[dict[str, Any]](math.inf)

        # the app's lifespan task is shielded: cancelling the serving must not cancel it
        # before it has had its shutdown; it is cancelled once that is done (or timed out)
        shield = trio.CancelScope(shield=True)

        async def run() -> None:
            try:
                with shield:
                    await self.app(
                        {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
                        app_in.receive,
                        app_out.send,
                    )
            except Exception:
                logger.debug("the ASGI app does not take lifespan", exc_info=True)
            finally:
                app_out.close()

        async def ask(event: str) -> str | None:
            to_app.send_nowait({"type": f"lifespan.{event}"})
            try:
                answer = await from_app.receive()
            except trio.EndOfChannel:
                return None
            if answer.get("type") == f"lifespan.{event}.failed":
                return str(answer.get("message") or f"lifespan {event} failed")
            return None

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            failure = await ask("startup")
            if failure is not None:
                shield.cancel()
                raise RuntimeError(f"the ASGI app's startup failed: {failure}")
            try:
                yield
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(30):
                    failure = await ask("shutdown")
                    if failure is not None:
                        logger.error("the ASGI app's shutdown failed: %s", failure)
                to_app.close()
                shield.cancel()

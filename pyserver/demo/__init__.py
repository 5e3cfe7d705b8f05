"""The demo server: what the README's first command (and ``pyserver demo``) runs.

One :class:`~pyserver.server.Server` serves ``web/`` (an index page linking the apps) and the
official ``socket.io-client`` bundle at ``/socket.io/socket.io.js``, and hosts three apps, each
in a Socket.IO namespace of its own:

* ``/drawing`` (:mod:`pyserver.demo.drawing`): the guide's collaborative drawing board, with
  boards as rooms and state sync for late joiners and reconnects; page ``/drawing/``.
* ``/game`` (:mod:`pyserver.demo.game`): an authoritative multiplayer game, its tick loop in
  the match room's nursery; page ``/game/``.
* ``/chat`` (:mod:`pyserver.demo.chat`): rooms, presence, typing, acks, history, images,
  JWT login; page ``/chat/``.

It also keeps the raw WebSocket examples of the guide: ``/ws/echo`` (answers each message)
and ``/ws/broadcast`` (relays every message to everyone, encoded once), used by
``web/raw-websocket.html``.

With ``redis_url`` the server uses the :class:`~pyserver.adapters.redis.RedisAdapter`, so
several demo processes behind a load balancer behave as one.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from typing import Any

from pyserver.app import App
from pyserver.http.types import WebSocket
from pyserver.server import Server
from pyserver.ws import broadcast

log = logging.getLogger("pyserver.demo")

DEFAULT_WEB_DIR = Path(__file__).resolve().parent.parent.parent / "web"

__all__ = ["DEFAULT_WEB_DIR", "build_server"]


def build_server(
    web_dir: Path | None = None,
    *,
    redis_url: str | None = None,
    jwt_secret: str | None = None,
    **server_options: Any,
) -> Server:
    """The demo server, ready for ``sio.serve(host, port)``.

    ``jwt_secret`` signs the chat's login tokens (default: ``$PYSERVER_JWT_SECRET``, else a
    random secret per process; several nodes behind a load balancer must share one).
    ``server_options`` go to :class:`Server` (tests shorten ``ping_interval``, for one).
    """
    app = App(static_dir=str(web_dir or DEFAULT_WEB_DIR), compression=True)
    if redis_url is not None:
        from pyserver.adapters.redis import RedisAdapter

        server_options.setdefault("adapter", RedisAdapter(redis_url))
    sio = Server(app=app, **server_options)
    _raw_websocket_examples(app)

    from pyserver.demo import chat, drawing, game

    secret = jwt_secret or os.environ.get("PYSERVER_JWT_SECRET") or secrets.token_hex(32)
    drawing.register(sio)
    game.register(sio)
    chat.register(sio, jwt_secret=secret)
    return sio


def _raw_websocket_examples(app: App) -> None:
    members: set[WebSocket] = set()

    @app.websocket("/ws/echo")
    async def echo(ws: WebSocket) -> None:
        await ws.send("Welcome to the server!")
        async for message in ws:
            if isinstance(message, str):
                await ws.send(f"You said: {message}")
            else:
                await ws.send(message)

    @app.websocket("/ws/broadcast")
    async def relay(ws: WebSocket) -> None:
        members.add(ws)
        broadcast(members, f"joined ({len(members)} online)")
        try:
            async for message in ws:
                broadcast(members, message)
        finally:
            members.discard(ws)
            broadcast(members, f"left ({len(members)} online)")

"""The demo server: what the README's first command (and ``pyserver demo``) runs.

One :class:`pyserver.Server` serves ``web/`` (an index page linking the apps)
and the official ``socket.io-client`` bundle at ``/socket.io/socket.io.js``, and hosts three apps,
each in a Socket.IO namespace of its own:

* ``/drawing`` (:mod:`pyserver.demo.drawing`): the guide's collaborative drawing board, with
  boards as rooms and state sync for late joiners and reconnects; page ``/drawing/``.
* ``/game`` (:mod:`pyserver.demo.game`): an authoritative multiplayer game, its tick loop in
  the match room's nursery (its simulation, plain code, in :mod:`pyserver.demo.arena`); page
  ``/game/``.
* ``/chat`` (:mod:`pyserver.demo.chat`): rooms, presence, typing, acks, history, images,
  JWT login; page ``/chat/``.

It also keeps the raw WebSocket examples of the guide: ``/ws/echo`` (answers each message)
and ``/ws/broadcast`` (relays every message to everyone, encoded once), used by
``web/raw-websocket.html``.

With ``redis_url`` the server uses the :class:`pyserver.RedisAdapter`, so
several demo processes behind a load balancer behave as one.

Hardening: the pages get a Content-Security-Policy (:data:`DEMO_CSP`: scripts, styles and
connections from this origin only, no inline code, no framing by other sites) besides the
App's default security headers; and the server answers only its own host names
(``allowed_hosts``, DNS-rebinding protection): bound on loopback, ``localhost``,
``127.0.0.1`` and ``[::1]``; bound on another address, that address; bound on every address
(``0.0.0.0``, ``::``), any Host. ``$PYSERVER_ALLOWED_HOSTS`` (comma-separated, ``*`` for any)
replaces the list, for a demo reached through a proxy under another name.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
from pathlib import Path
from typing import Any

from pyserver import DEFAULT_SECURITY_HEADERS, App, Server, WebSocket, broadcast

log = logging.getLogger("pyserver.demo")

DEFAULT_WEB_DIR = Path(__file__).resolve().parent.parent.parent / "web"

__all__ = ["DEFAULT_WEB_DIR", "DEMO_CSP", "build_server", "demo_allowed_hosts"]

#: The demo pages' Content-Security-Policy: every script, style and connection (XHR polling,
#: WebSocket: ``'self'`` covers ws:/wss: to this host) from this origin, no inline script or
#: style, images also from ``data:`` (the empty favicon) and ``blob:`` (the chat's images),
#: no plugins, no ``<base>`` elsewhere, forms posting here only, framing by this origin only.
DEMO_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'self'"
)

_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")


def demo_allowed_hosts(host: str | None) -> list[str] | None:
    """The Host names the demo answers when bound on ``host`` (None: any; see the module
    docstring). ``$PYSERVER_ALLOWED_HOSTS`` replaces the list."""
    env = os.environ.get("PYSERVER_ALLOWED_HOSTS")
    if env is not None and env.strip():
        return [name.strip() for name in env.split(",") if name.strip()]
    if not host or host in ("0.0.0.0", "::"):
        return None  # every interface: the names it is reached by are unknown here
    if host.lower() == "localhost":
        return list(_LOOPBACK_NAMES)
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return [host]  # a host name: itself
    if address.is_unspecified:
        return None
    own = f"[{address}]" if address.version == 6 else str(address)
    if address.is_loopback:
        return list(dict.fromkeys([*_LOOPBACK_NAMES, own]))
    return [own]


def build_server(
    web_dir: Path | None = None,
    *,
    redis_url: str | None = None,
    jwt_secret: str | None = None,
    host: str | None = "127.0.0.1",
    **server_options: Any,
) -> Server:
    """The demo server, ready for ``sio.serve(host, port)``.

    ``jwt_secret`` signs the chat's login tokens (default: ``$PYSERVER_JWT_SECRET``, else a
    random secret per process; several nodes behind a load balancer must share one).
    ``host`` is the address it will be served on, for its ``allowed_hosts``
    (:func:`demo_allowed_hosts`; an ``allowed_hosts`` in ``server_options`` wins).
    ``server_options`` go to :class:`Server` (tests shorten ``ping_interval``, for one).
    """
    allowed_hosts = server_options.pop("allowed_hosts", demo_allowed_hosts(host))
    app = App(
        static_dir=str(web_dir or DEFAULT_WEB_DIR),
        compression=True,
        allowed_hosts=allowed_hosts,
        security_headers={**DEFAULT_SECURITY_HEADERS, "Content-Security-Policy": DEMO_CSP},
    )
    if redis_url is not None:
        from pyserver import RedisAdapter

        server_options.setdefault("adapter", RedisAdapter(redis_url))
    # children of a dynamic namespace (sio.of(regex)) go once their last socket left
    server_options.setdefault("cleanup_empty_child_namespaces", True)
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

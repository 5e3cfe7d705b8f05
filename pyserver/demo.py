"""The demo server: what the README's first command runs.

Until the Socket.IO layer lands this is the guide's first WebSocket example, made real:
``/ws/echo`` answers each message ("You said: ..."), ``/ws/broadcast`` relays every message
to every connected client (encoded once per broadcast), and ``web/`` is served as static files.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pyserver.app import App
from pyserver.http.types import WebSocket
from pyserver.ws import broadcast

log = logging.getLogger("pyserver.demo")

DEFAULT_WEB_DIR = Path(__file__).resolve().parent.parent / "web"


def build_app(web_dir: Path | None = None) -> App:
    """The demo application, ready for ``app.serve``."""
    app = App(static_dir=str(web_dir or DEFAULT_WEB_DIR), compression=True)
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

    return app

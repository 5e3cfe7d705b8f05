"""The Admin UI's page, served by the server's App (``sio.instrument(serve_ui=True)``): the
``@socket.io/admin-ui`` build the package carries (``scripts/pack_static.py`` writes it, with
nothing loaded from the internet), under its own security headers."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Any

import trio

from pyserver.http import Request, Response
from pyserver.trio.http import static
from pyserver.trio.http.server import error_response

__all__ = ["ADMIN_UI_DIR", "ADMIN_UI_HEADERS", "AdminUiMount"]

ADMIN_UI_DIR = static.PACKAGED_DIR / "admin-ui"
"""The Admin UI's page as the package carries it (``scripts/pack_static.py`` writes it)."""

#: The UI page's security headers: its own origin only, but Vuetify writes its theme in a
#: ``<style>`` element and the charts draw from ``data:`` images.
ADMIN_UI_HEADERS = {
    **static.DEFAULT_SECURITY_HEADERS,
    "Content-Security-Policy": (
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "font-src 'self' data:; connect-src 'self'; frame-ancestors 'self'"
    ),
}


class AdminUiMount:
    """Serves the Admin UI's page (:data:`ADMIN_UI_DIR`) under ``prefix`` (a mount of the
    server's App; ``prefix`` alone redirects to ``prefix/``)."""

    def __init__(self, prefix: str, root: os.PathLike[str] | str = ADMIN_UI_DIR) -> None:
        self.prefix = prefix.rstrip("/")
        self.root = root

    async def handle_http(self, request: Request) -> Response:
        if request.path == self.prefix:
            return Response(301, [("Location", self.prefix + "/"), ("Content-Length", "0")])
        answer = await trio.to_thread.run_sync(
            partial(
                static.static_file_response,
                Path(self.root),
                request.path[len(self.prefix) :],
                request.method,
                request.headers,
                cache_control="no-cache",
                extra_headers=ADMIN_UI_HEADERS,
            )
        )
        if answer is None:
            return error_response(404)
        if answer.status == 301:  # a directory: its slash form, under the prefix
            answer.headers[:] = [
                (name, self.prefix + value if name == "Location" else value)
                for name, value in answer.headers
            ]
        return answer

    def check_websocket(self, request: Request) -> Response | None:
        return error_response(404)

    async def handle_websocket(self, ws: Any) -> None:  # never: check_websocket refuses
        return None

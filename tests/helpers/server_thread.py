"""The server under test in a thread of its own, with its own ``trio.run``, so synchronous
peers can drive it from plain tests: Node through ``subprocess.run``, Chromium through
Playwright's sync API (which runs its own asyncio loop and must not share a thread with trio),
python-socketio's sync client.

Used by the interop, e2e and cluster tests and by the HTTP audit."""

from __future__ import annotations

import functools
import ssl
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import trio

START_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0


def _port_of(listeners: Any) -> int:
    """The bound TCP port, from the listeners ``nursery.start(app.serve, ...)`` reports
    (a TLS listener wraps the TCP one)."""
    listener = listeners[0]
    if isinstance(listener, trio.SSLListener):
        listener = listener.transport_listener
    return int(listener.socket.getsockname()[1])


class ServerThread:
    """Run ``build()`` in a fresh ``trio.run`` on a daemon thread, serving on 127.0.0.1 and a
    free port. ``build`` returns the App (anything with ``async serve(host, port, *,
    task_status)``), or ``(app, services)`` where each service is started first with
    ``nursery.start(service)`` (the Engine.IO server's timer task, for one). ``port`` binds a
    given port instead (to restart a server on the port its clients know). ``ssl_context``
    serves TLS (``base_url`` is then https)."""

    def __init__(
        self, build: Callable[[], Any], port: int = 0, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self._build = build
        self._wanted_port = port
        self._ssl_context = ssl_context
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pyserver-under-test", daemon=True)
        self._token: trio.lowlevel.TrioToken | None = None
        self._cancel: trio.CancelScope | None = None
        self.app: Any = None
        self.port: int | None = None
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported to the test through .error
            self.error = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        built = self._build()
        services: list[Callable[..., Awaitable[Any]]] = []
        if isinstance(built, tuple):
            built, services = built[0], list(built[1])
        self.app = built
        async with trio.open_nursery() as nursery:
            self._cancel = nursery.cancel_scope
            for service in services:  # e.g. EngineIOServer.serve, the Engine.IO timer task
                await nursery.start(service)
            serve = self.app.serve
            if self._ssl_context is not None:
                serve = functools.partial(serve, ssl_context=self._ssl_context)
            started = await nursery.start(serve, "127.0.0.1", self._wanted_port)
            self.port = started if isinstance(started, int) else _port_of(started)
            self._ready.set()

    def start(self) -> int:
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            raise RuntimeError(f"the server did not start within {START_TIMEOUT}s")
        if self.error is not None or self.port is None:
            raise RuntimeError(f"the server failed to start: {self.error!r}") from self.error
        return self.port

    def stop(self) -> None:
        if self._token is not None and self._cancel is not None and self._thread.is_alive():
            try:
                trio.from_thread.run_sync(self._cancel.cancel, trio_token=self._token)
            except trio.RunFinishedError:
                pass
        self._thread.join(STOP_TIMEOUT)
        if self._thread.is_alive():
            raise RuntimeError(f"the server thread did not stop within {STOP_TIMEOUT}s")
        if self.error is not None:
            raise RuntimeError(f"the server crashed: {self.error!r}") from self.error

    def run_sync(self, fn: Callable[[], Any]) -> Any:
        """Call ``fn()`` in the server's thread, between its tasks (to act on server state)."""
        assert self._token is not None, "the server is not running"
        return trio.from_thread.run_sync(fn, trio_token=self._token)

    @property
    def base_url(self) -> str:
        scheme = "http" if self._ssl_context is None else "https"
        return f"{scheme}://127.0.0.1:{self.port}"

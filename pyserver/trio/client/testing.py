"""Test helpers for applications served by pyserver (imported as :mod:`pyserver.testing`).

For pytest-trio, the habit of the Socket.IO guide's testing section in Python: start the
server, connect a client, emit, assert what comes back::

    import pytest
    from pyserver import testing

    from myapp import sio


    @pytest.fixture
    async def url():
        async with testing.serve(sio) as url:  # a free port, for this test only
            yield url


    async def test_welcome(url):
        async with testing.connect(url) as socket:
            welcome = await testing.wait_for_event(socket, "welcome")
            assert welcome == [{"motd": "hi"}]
            assert await socket.emit_with_ack("add", 1, 2) == 3

``serve`` runs a :class:`~pyserver.Server` or :class:`~pyserver.App` on ``127.0.0.1`` and a
free port in a nursery of its own and stops it when the ``async with`` ends; ``connect`` is
:func:`pyserver.connect` with test-friendly defaults (no reconnection, a 5 s timeout);
``wait_for_event`` waits for one event with a timeout (``TimeoutError``) and gives its
arguments; ``drop_connection`` cuts a client's transport as a network failure would
(no goodbye), to test reconnection and connection state recovery.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

import trio

from pyserver.trio.client.manager import connect as _connect
from pyserver.trio.client.manager import unwrap_single
from pyserver.trio.client.socket import ClientSocket

__all__ = ["connect", "drop_connection", "serve", "wait_for_event"]


class _Servable(Protocol):
    async def serve(self, host: str | None, port: int, *, task_status: Any = ...) -> None: ...


@asynccontextmanager
async def serve(app: _Servable, *, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve ``app`` (a ``Server`` or an ``App``) while the ``async with`` lasts; yields its
    base URL, ``http://127.0.0.1:<port>``."""
    try:
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(app.serve, host, port)
            bound = listeners[0].socket.getsockname()[1]
            try:
                yield f"http://{host}:{bound}"
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        single = unwrap_single(group)
        if single is None:
            raise
        raise single from single.__cause__


@asynccontextmanager
async def connect(url: str, **options: Any) -> AsyncIterator[ClientSocket]:
    """:func:`pyserver.connect` with ``reconnection=False`` and ``timeout=5`` unless given."""
    options.setdefault("reconnection", False)
    options.setdefault("timeout", 5.0)
    async with _connect(url, **options) as socket:
        yield socket


async def wait_for_event(socket: ClientSocket, event: str, timeout: float = 5.0) -> list[Any]:  # noqa: ASYNC109
    """The arguments of the next ``event`` (or of the oldest one not consumed yet);
    ``TimeoutError`` after ``timeout`` seconds."""
    received = await socket.wait_for(event, timeout=timeout)
    return received.args


async def drop_connection(socket: ClientSocket) -> None:
    """Cut the socket's connection without a goodbye, as a network failure does (the client
    then reconnects if it may)."""
    engine = socket.manager.engine
    if engine is not None and engine.transport is not None:
        await engine.transport.aclose(graceful=False)

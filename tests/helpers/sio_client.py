"""Helpers for the Socket.IO server tests: a running Server and clients nobody here wrote.

* :class:`PyClient`: python-socketio's threaded ``socketio.Client``, driven from Trio through
  ``trio.to_thread`` (every blocking call is bounded by the test's ``fail_after``).
* :class:`RawClient`: Engine.IO over WebSocket with the ``websockets`` sync client, for
  protocol-level checks of exact packets (pings answered transparently).
* :func:`next_event`: :meth:`PyClient.event` for pyserver's own Trio client
  (:mod:`pyserver.testing`), which tests of the server's behaviour use instead of PyClient.
"""

from __future__ import annotations

import json
import queue
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import socketio
import trio
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from pyserver import Server
from pyserver.trio.client.socket import ClientSocket

T = TypeVar("T")
WAIT = 5.0


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    return await trio.to_thread.run_sync(fn, *args, abandon_on_cancel=True)


@asynccontextmanager
async def serving(sio: Server) -> AsyncIterator[str]:
    """Serve ``sio`` on a free loopback port; yield its base URL."""
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(sio.serve, "127.0.0.1", 0)
        port = listeners[0].socket.getsockname()[1]
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            nursery.cancel_scope.cancel()


class PyClient:
    """python-socketio's sync client; ``events`` collects every event of ``namespaces``."""

    def __init__(self, namespaces: tuple[str, ...] = ("/",)) -> None:
        self.client = socketio.Client(reconnection=False)
        self.events: queue.Queue[tuple[str, str, tuple[Any, ...]]] = queue.Queue()
        self.errors: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.namespaces = namespaces
        for ns in namespaces:
            self.client.on("*", self._catch_all(ns), namespace=ns)
            self.client.on("connect_error", self._connect_error(ns), namespace=ns)

    def _catch_all(self, ns: str) -> Callable[..., Any]:
        def handler(event: str, *args: Any) -> Any:
            self.events.put((ns, event, args))
            if event == "ask":
                return args[0] if len(args) == 1 else args
            if event == "ask-many":
                return ("one", 2, b"\x03")
            return None

        return handler

    def _connect_error(self, ns: str) -> Callable[..., None]:
        def handler(data: Any = None) -> None:
            self.errors.put((ns, data))

        return handler

    async def connect(self, url: str, transport: str = "websocket", **kw: Any) -> None:
        """Connect over ``transport`` ("polling,websocket": polling, then the upgrade)."""
        await in_thread(
            lambda: self.client.connect(
                url,
                transports=transport.split(","),
                namespaces=list(self.namespaces),
                wait_timeout=WAIT,
                **kw,
            )
        )

    async def event(self, name: str | None = None) -> tuple[str, str, tuple[Any, ...]]:
        """The next event (of that name, skipping others)."""
        while True:
            item = await in_thread(self.events.get, True, WAIT)
            if name is None or item[1] == name:
                return item

    async def call(self, event: str, data: Any = None, namespace: str = "/") -> Any:
        return await in_thread(
            lambda: self.client.call(event, data, namespace=namespace, timeout=WAIT)
        )

    async def emit(self, event: str, data: Any = None, namespace: str = "/") -> None:
        await in_thread(lambda: self.client.emit(event, data, namespace=namespace))

    @property
    def sid(self) -> str:
        sid = self.client.get_sid("/")
        assert sid is not None
        return sid

    async def disconnect(self) -> None:
        await in_thread(self.client.disconnect)


async def next_event(socket: ClientSocket, name: str | None = None) -> list[Any]:
    """The arguments of the next event ``socket`` receives (of that name, skipping and
    dropping the others in between), as :meth:`PyClient.event` does; events received since
    the socket connected and not consumed yet come first. ``trio.TooSlowError`` after
    ``WAIT`` seconds."""
    with trio.fail_after(WAIT):
        async for event in socket:
            if name is None or event.name == name:
                return event.args
    raise AssertionError(f"the socket ended before a {name or 'next'} event")


class RawClient:
    """Engine.IO v4 over WebSocket, packet by packet."""

    def __init__(self, url: str, query: str = "") -> None:
        ws_url = url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
        self.ws: ClientConnection = connect(ws_url + query, open_timeout=WAIT, legacy=True)
        opening = self.ws.recv(timeout=WAIT)
        assert isinstance(opening, str) and opening[0] == "0"
        self.handshake = json.loads(opening[1:])

    @classmethod
    async def open(cls, url: str, query: str = "") -> RawClient:
        return await in_thread(cls, url, query)

    def _recv(self) -> str | bytes:
        while True:
            message = self.ws.recv(timeout=WAIT)
            if message == "2":
                self.ws.send("3")
                continue
            return message

    async def recv(self) -> str | bytes:
        """The next Engine.IO message (text with its type digit, or bytes)."""
        return await in_thread(self._recv)

    async def recv_sio(self) -> str:
        """The next Socket.IO text packet (an Engine.IO "4" message)."""
        message = await self.recv()
        assert isinstance(message, str) and message[0] == "4", message
        return message[1:]

    async def send(self, message: str | bytes) -> None:
        await in_thread(self.ws.send, message)

    async def send_sio(self, packet: str) -> None:
        await self.send("4" + packet)

    def _closed(self) -> list[str | bytes]:
        got: list[str | bytes] = []
        try:
            while True:
                got.append(self.ws.recv(timeout=WAIT))
        except ConnectionClosed:
            return got

    async def wait_closed(self) -> list[str | bytes]:
        """Read until the server closes the connection; return what came before."""
        return await in_thread(self._closed)

    async def join(self, namespace: str = "/", auth: dict[str, Any] | None = None) -> str:
        prefix = "" if namespace == "/" else namespace + ","
        await self.send_sio("0" + prefix + (json.dumps(auth) if auth is not None else ""))
        answer = await self.recv_sio()
        while answer.startswith("2"):  # an event emitted before: skipped
            answer = await self.recv_sio()
        assert answer.startswith("0" + prefix), answer
        sid: str = json.loads(answer[1 + len(prefix) :])["sid"]
        return sid

    async def close(self) -> None:
        await in_thread(self.ws.close)


async def eventually(predicate: Callable[[], bool], step: float = 0.01) -> None:
    """Wait until ``predicate()`` holds (bounded by the caller's ``fail_after``)."""
    while True:
        if predicate():
            return
        await trio.sleep(step)

"""The Engine.IO server under test and clients for it nobody here wrote: ``running`` serves an
``EngineIOServer`` mounted on an App (on loopback TCP, or on in-memory streams for the tests
that run on ``MockClock``), ``http`` is one h11 request, ``WsClient`` a wsproto WebSocket
client, ``waiting_poll`` a long-polling GET parked in the server.

Used by ``test_engineio_server`` and ``test_engineio_idle_footprint``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import h11
import trio
import trio.testing
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

from pyserver.engineio import CloseReason
from pyserver.trio.engineio import EngineIOServer, EngineSession
from pyserver.trio.http.app import App

Connect = Callable[[], Awaitable[trio.abc.Stream]]
EIO = "/engine.io/?EIO=4&transport=polling"
WS = "/engine.io/?EIO=4&transport=websocket"


@dataclass
class Log:
    connected: list[EngineSession] = field(default_factory=list)
    disconnected: list[tuple[str, CloseReason]] = field(default_factory=list)


@dataclass
class Running:
    eio: EngineIOServer
    connect: Connect
    log: Log
    port: int = 0


@asynccontextmanager
async def running(*, memory: bool = False, **options: Any) -> AsyncIterator[Running]:
    log = Log()

    def echo(session: EngineSession, data: str | bytes) -> None:
        session.send(data)

    settings: dict[str, Any] = {
        "ping_interval": 25.0,
        "ping_timeout": 20.0,
        "cors_allowed_origins": "*",
        "on_message": echo,
        "on_connect": log.connected.append,
        "on_disconnect": lambda s, reason: log.disconnected.append((s.sid, reason)),
    }
    settings.update(options)
    eio = EngineIOServer(**settings)
    app = App(serve_client=False, health_path=None)
    app.mount("/engine.io/", eio)
    async with trio.open_nursery() as nursery:
        await nursery.start(eio.serve)
        port = 0
        if memory:

            async def connect() -> trio.abc.Stream:
                client, server = trio.testing.memory_stream_pair()
                nursery.start_soon(app.serve_stream, server)
                return client
        else:
            listeners = await nursery.start(app.serve, "127.0.0.1", 0)
            port = listeners[0].socket.getsockname()[1]

            async def connect() -> trio.abc.Stream:
                return await trio.open_tcp_stream("127.0.0.1", port)

        yield Running(eio, connect, log, port)
        nursery.cancel_scope.cancel()


@dataclass
class HttpResult:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self) -> Any:
        return json.loads(self.body)


async def http(
    connect: Connect,
    method: str,
    target: str,
    body: bytes = b"",
    headers: tuple[tuple[str, str], ...] = (),
) -> HttpResult:
    stream = await connect()
    conn = h11.Connection(h11.CLIENT)
    all_headers = [("Host", "localhost"), ("Connection", "close"), *headers]
    if method in ("POST", "PUT"):
        all_headers.append(("Content-Length", str(len(body))))
    out = conn.send(h11.Request(method=method, target=target, headers=all_headers))
    if body:
        out += conn.send(h11.Data(data=body))
    out += conn.send(h11.EndOfMessage()) or b""
    await stream.send_all(out or b"")
    response: h11.Response | None = None
    chunks: list[bytes] = []
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(bytes(await stream.receive_some(65536)))
        elif isinstance(event, h11.Response):
            response = event
        elif isinstance(event, h11.Data):
            chunks.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            break
    await stream.aclose()
    assert response is not None
    hdrs = {k.decode().lower(): v.decode() for k, v in response.headers}
    return HttpResult(response.status_code, hdrs, b"".join(chunks))


async def handshake(connect: Connect) -> str:
    result = await http(connect, "GET", EIO)
    assert result.status == 200
    sid: str = json.loads(result.text[1:])["sid"]
    return sid


class WsClient:
    """A minimal WebSocket client on wsproto (an implementation nobody here wrote)."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.conn = WSConnection(ConnectionType.CLIENT)
        self.pending: list[str | bytes | None] = []
        self.close_code: int | None = None
        self.text: list[str] = []
        self.data: list[bytes] = []

    @classmethod
    async def open(cls, connect: Connect, target: str, origin: str | None = None) -> WsClient:
        client = cls(await connect())
        headers = [("Origin", origin)] if origin is not None else []
        request = Request(host="localhost", target=target, extra_headers=headers)
        await client.stream.send_all(client.conn.send(request))
        while True:
            event = await client._next()
            if isinstance(event, AcceptConnection):
                return client
            if isinstance(event, RejectConnection):
                raise ConnectionRefusedError(event.status_code)

    async def _next(self) -> Any:
        while True:
            for event in self.conn.events():
                return event
            data = await self.stream.receive_some(65536)
            self.conn.receive_data(bytes(data) if data else None)

    async def send(self, message: str | bytes) -> None:
        event = TextMessage(message) if isinstance(message, str) else BytesMessage(message)
        await self.stream.send_all(self.conn.send(event))

    async def recv(self) -> str | bytes | None:
        """The next message, or None once the server closed."""
        while True:
            event = await self._next()
            if isinstance(event, TextMessage):
                self.text.append(event.data)
                if event.message_finished:
                    message, self.text = "".join(self.text), []
                    return message
            elif isinstance(event, BytesMessage):
                self.data.append(bytes(event.data))
                if event.message_finished:
                    blob, self.data = b"".join(self.data), []
                    return blob
            elif isinstance(event, CloseConnection):
                self.close_code = event.code
                try:
                    await self.stream.send_all(self.conn.send(event.response()))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
                return None
            elif isinstance(event, RejectData):
                continue
            elif event is None:
                return None

    async def recv_until_closed(self) -> list[str | bytes]:
        received: list[str | bytes] = []
        while (message := await self.recv()) is not None:
            received.append(message)
        return received


@asynccontextmanager
async def waiting_poll(r: Running, sid: str) -> AsyncIterator[list[HttpResult]]:
    """A long-polling GET started in the background and parked in the server; its answer is
    in the yielded list once the block ends."""
    results: list[HttpResult] = []

    async def poll() -> None:
        results.append(await http(r.connect, "GET", f"{EIO}&sid={sid}"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(poll)
        await trio.testing.wait_all_tasks_blocked()
        yield results


def open_payload(text: str) -> dict[str, Any]:
    assert text.startswith("0")
    value: dict[str, Any] = json.loads(text[1:])
    return value

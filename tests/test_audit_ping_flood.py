"""Audit (issue 20), the ping flood: a client that sends WebSocket pings and never reads.

Before the fix every Ping queued its own Pong outside the outbox's limit and the reader kept
reading, so such a client grew the server's memory without bound (1.2 M pings on the demo's
``/ws/echo``: +193 MiB). Now the core answers only the latest Ping of a read (RFC 6455
5.5.3), Pongs are counted against the outbox, and while a Pong does not fit the connection
is not read; anything else sent past the limit closes it as a slow consumer (1008).

Checked on real sockets, a raw WebSocket route and Socket.IO over WebSocket, with the
reactor reading and with reader tasks: the flooding connection's outbox stays within its
limit and its reading stops, another client is still answered; and, sans-IO, that many Pings
leave one Pong to send.
"""

from __future__ import annotations

import base64
import json
import os
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from helpers.ws_client import PING, TEXT, RawClient, frame, masked

from pyserver import _frames
from pyserver.http import WebSocket
from pyserver.trio.http.app import App
from pyserver.trio.socketio.server import Server
from pyserver.trio.socketio.socket import Socket
from pyserver.trio.websocket import reactor
from pyserver.trio.websocket.connection import WebSocket as TrioWebSocket
from pyserver.trio.websocket.reader import Reading
from pyserver.ws.connection import ConnectionState, WebSocketConnection

TIMEOUT = 30
MAX_OUTBOX = 16  # frames: a small limit, reached quickly
PAYLOAD = b"p" * 125  # the largest control payload: 131-byte Pings, 127-byte Pongs
FLOOD = 100_000  # Pings at most (13 MB): far more than the sockets and the outbox hold
BURST = 10  # Pings per write: many small reads, so many Pongs before the fix
SIO_PATH = "/socket.io/?EIO=4&transport=websocket"


@pytest.fixture(params=["reactor", "reader-tasks"])
def server_sides(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> list[TrioWebSocket]:
    """The server side of every WebSocket accepted from now on, in order; each gets a
    small kernel send buffer, so what the peer does not read backs up into the outbox
    after a few kilobytes rather than a few megabytes. Each test runs with the run's
    reactor reading the sockets, and with reader tasks (as on other platforms)."""
    monkeypatch.setattr(reactor, "ENABLED", request.param == "reactor" and reactor.ENABLED)
    made: list[TrioWebSocket] = []
    original = App.open_websocket

    def open_websocket(self: App, stream: trio.abc.Stream, *args: Any) -> TrioWebSocket:
        ws = original(self, stream, *args)
        if isinstance(stream, trio.SocketStream):
            stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        made.append(ws)
        return ws

    monkeypatch.setattr(App, "open_websocket", open_websocket)
    return made


@asynccontextmanager
async def serving(serve: Callable[..., Any]) -> AsyncIterator[int]:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(serve, "127.0.0.1", 0)
        yield listeners[0].socket.getsockname()[1]
        nursery.cancel_scope.cancel()


async def never_reading(port: int, path: str) -> trio.SocketStream:
    """A WebSocket client with a small receive window, which reads the 101 and no more.

    The window is clamped (``TCP_WINDOW_CLAMP``), the receive buffer is left as it is: a
    tiny ``SO_RCVBUF`` overflows in memory (many small Pong segments cost far more than
    their bytes) while its window is still open, so the kernel drops Pongs it had room
    for; the server, which sent them, is then ahead of the client's window, and recent
    Linux (nstat's ``TcpExtBeyondWindow``) drops every later segment of the server beyond
    that (zero) window, their ACKs included: the client's sent bytes are never acknowledged
    again, and the flood stalls with the server waiting for bytes (about 1 run in 40). A
    clamped window closes cleanly instead (the buffer has room for all it lets in)."""
    sock = trio.socket.socket()
    if hasattr(socket, "TCP_WINDOW_CLAMP"):  # (Linux)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_WINDOW_CLAMP, 4096)
    else:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await sock.connect(("127.0.0.1", port))
    stream = trio.SocketStream(sock)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    )
    await stream.send_all(request.encode() + b"\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += await stream.receive_some(1)  # (byte by byte: nothing after the head)
    assert head.startswith(b"HTTP/1.1 101 "), head
    return stream


class Flood:
    """Sends ``FLOOD`` masked Pings in bursts and reads nothing."""

    def __init__(self) -> None:
        self.sent = 0
        self.done = False

    async def run(self, stream: trio.SocketStream) -> None:
        burst = masked(PING, PAYLOAD) * BURST
        try:
            while self.sent < FLOOD:
                await stream.send_all(burst)
                self.sent += BURST
        except trio.BrokenResourceError:
            pass  # (closed by the server)
        self.done = True


async def flood_until_not_read(ws: TrioWebSocket, stream: trio.SocketStream) -> Flood:
    """Flood ``ws``'s peer connection until the server stops reading it (or closes it, or
    the flood is over), checking all along that its outbox stays within the limit."""
    flood = Flood()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(flood.run, stream)
        while True:
            assert len(ws._outbox) <= MAX_OUTBOX, f"{len(ws._outbox)} frames queued"
            assert ws._outbox_bytes <= ws._max_outbox_bytes
            if getattr(ws, "_pong", None) is not None or ws.closed or flood.done:
                break
            await trio.sleep(0.002)
        nursery.cancel_scope.cancel()
    return flood


async def sio_never_reading(port: int) -> trio.SocketStream:
    """``never_reading`` on Socket.IO: it joins "/" (and reads no answer)."""
    stream = await never_reading(port, SIO_PATH)
    await stream.send_all(masked(TEXT, b"40"))
    return stream


async def sio_open(port: int) -> RawClient:
    """A Socket.IO client by hand (Engine.IO over WebSocket), connected to "/"."""
    client = await RawClient.open(port, SIO_PATH)
    assert (await client.next()).startswith("0{")
    await client.send(masked(TEXT, b"40"))
    assert (await client.next()).startswith("40{")
    return client


async def sio_echoes(client: RawClient, text: str) -> None:
    packet = "42" + json.dumps(["echo", text], separators=(",", ":"))
    await client.send(masked(TEXT, packet.encode()))
    assert await client.next() == packet


# -- sans-IO ------------------------------------------------------------------------------


def test_audit_ping_flood_many_pings_leave_one_pong_to_send() -> None:
    """Only the latest Ping is answered: many in one read, or over several reads whose
    Pongs were not taken yet, leave one Pong in ``pending`` (the latest one's)."""
    encoder = _frames.Encoder(client=True)
    conn = WebSocketConnection()
    assert conn.receive_data(b"".join(encoder.ping(b"%d" % i) for i in range(10_000))) == []
    assert len(conn.pending) == 1
    for i in range(1000):  # the shell did not take it meanwhile
        assert conn.receive_data(encoder.ping(b"again %d" % i)) == []
    assert conn.pending == [conn.encoder.pong(b"again 999")]
    # a message between Pings is still delivered; a Pong taken is not replaced
    conn.pending.clear()
    got = conn.receive_data(encoder.ping(b"a") + encoder.text("hi") + encoder.ping(b"b"))
    assert got == ["hi"]
    assert conn.pending == [conn.encoder.pong(b"b")]
    conn.pending.clear()
    conn.receive_data(encoder.ping(b"c"))
    assert conn.pending == [conn.encoder.pong(b"c")]
    # next to a Close, the Pong stays where it was and the Close is echoed after it
    conn.pending.clear()
    conn.receive_data(encoder.ping(b"d") + encoder.ping(b"e") + encoder.close(1000, ""))
    assert conn.pending == [conn.encoder.pong(b"e"), conn.encoder.close(1000, "")]
    assert conn.state is ConnectionState.CLOSED


# -- a raw WebSocket route ----------------------------------------------------------------


def echo_app(**options: Any) -> App:
    """A raw WebSocket echo at ``/ws/echo``, with the tests' small outbox."""
    app = App(ws_max_outbox=MAX_OUTBOX, **options)

    @app.websocket("/ws/echo")
    async def echo(ws: WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    return app


async def test_audit_ping_flood_raw_route_outbox_bounded_and_reading_stops(
    server_sides: list[TrioWebSocket],
) -> None:
    app = echo_app()

    with trio.fail_after(TIMEOUT):
        async with serving(app.serve) as port:
            stream = await never_reading(port, "/ws/echo")
            flooded = server_sides[0]
            flood = await flood_until_not_read(flooded, stream)
            assert not flood.done  # its reading stopped before the flood was over
            assert flooded._pong is not None and not flooded.closed
            other = await RawClient.open(port, "/ws/echo")
            await other.send(masked(TEXT, b"still served"))
            assert await other.next() == "still served"
            assert len(flooded._outbox) <= MAX_OUTBOX
            await stream.aclose()


async def test_audit_ping_flood_raw_route_with_keepalive_closes_as_slow_consumer(
    server_sides: list[TrioWebSocket], caplog: pytest.LogCaptureFixture
) -> None:
    """A frame the server must send past the limit (here its keepalive Ping) closes the
    flooding connection as a slow consumer, as a data frame does."""
    app = echo_app(ws_ping_interval=0.2, ws_ping_timeout=60)

    with trio.fail_after(TIMEOUT):
        async with serving(app.serve) as port:
            stream = await never_reading(port, "/ws/echo")
            flooded = server_sides[0]
            await flood_until_not_read(flooded, stream)
            while not flooded.closed:  # noqa: ASYNC110  (the next keepalive Ping closes it)
                await trio.sleep(0.01)
            assert flooded.close_code == 1008
            await stream.aclose()
    assert any("slow consumer" in record.getMessage() for record in caplog.records)


# -- Socket.IO over WebSocket -------------------------------------------------------------


def echo_server() -> Server:
    sio = Server(app=App(ws_max_outbox=MAX_OUTBOX))

    @sio.on("echo")
    async def echo(socket: Socket, text: str) -> None:
        socket.emit("echo", text)

    return sio


async def test_audit_ping_flood_socketio_outbox_bounded_and_reading_stops(
    server_sides: list[TrioWebSocket],
) -> None:
    sio = echo_server()
    with trio.fail_after(TIMEOUT):
        async with serving(sio.serve) as port:
            stream = await sio_never_reading(port)
            flooded = server_sides[0]
            flood = await flood_until_not_read(flooded, stream)
            assert not flood.done
            assert flooded._pong is not None and not flooded.closed
            # (with the reactor, the reading went back to a task, which waits for room)
            assert flooded._reading is not Reading.REACTOR
            other = await sio_open(port)
            await sio_echoes(other, "still served")
            assert len(flooded._outbox) <= MAX_OUTBOX
            await stream.aclose()


async def test_audit_ping_flood_socketio_then_an_emit_past_the_limit_closes_it(
    server_sides: list[TrioWebSocket], caplog: pytest.LogCaptureFixture
) -> None:
    """Once the flooding connection's outbox is full (of Pongs), a broadcast closes it as a
    slow consumer (1008); the other client gets the broadcast."""
    sio = echo_server()
    with trio.fail_after(TIMEOUT):
        async with serving(sio.serve) as port:
            stream = await sio_never_reading(port)
            flooded = server_sides[0]
            await flood_until_not_read(flooded, stream)
            other = await sio_open(port)
            sio.emit("news", "x")  # one frame more than the full outbox takes
            assert await other.next() == '42["news","x"]'
            assert flooded.closed and flooded.close_code == 1008
            await sio_echoes(other, "still served")
            await stream.aclose()
    assert any("slow consumer" in record.getMessage() for record in caplog.records)


# -- log forging (item 7), for the WebSocket shell's log lines ----------------------------


async def test_audit_log_forging_websocket_path_escaped(caplog: pytest.LogCaptureFixture) -> None:
    """A path under a mount (``/socket.io/``) is the client's text: decoded, it may hold
    CR/LF that would forge a log line of its own. The shell's log lines show it escaped."""
    forged = "/socket.io/%0d%0aWARNING%20pyserver.auth:%20forged/?EIO=4&transport=websocket"
    with trio.fail_after(TIMEOUT):
        async with serving(echo_server().serve) as port:
            client = await RawClient.open(port, forged)
            assert (await client.next()).startswith("0{")
            await client.send(frame(TEXT, b"unmasked", mask=None))  # clients must mask: 1002
            assert (await client.until_close())[1] == 1002
    lines = [r.getMessage() for r in caplog.records if r.name == "pyserver.ws"]
    assert any("1002" in line for line in lines)
    assert not any("\n" in line or "\r" in line for line in lines)
    assert any(r"'/socket.io/\r\nWARNING pyserver.auth: forged/'" in line for line in lines)

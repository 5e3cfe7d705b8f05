"""What the official Socket.IO protocol test suite checks, checked here without it.

The server is the suite's own fixture (``tests/compliance/socketio_server.py``:
``build_server()``), served in-process on loopback. The clients are nobody's Socket.IO client:
HTTP long-polling spoken with h11 (``tests/helpers/http_client.py``) and WebSocket with wsproto, and
every assertion is on the exact packets on the wire. Each test of the official suite
(socketio/socket.io-protocol, ``test-suite/test-suite.js``) has its counterpart here, most of
them on both transports, plus what the suite cannot see: the disconnect reasons the server
reports, and that a broken client leaves the others untouched.

Heartbeat tests keep the suite's pingInterval 300 ms / pingTimeout 200 ms and never assert a
timing: they wait for the packets (a ping, then the close). Every other test uses long
heartbeats (``SLOW``) so a loaded machine cannot end a session in the middle of a test.
"""

from __future__ import annotations

import base64
import json
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
import trio.testing
from compliance.socketio_server import build_server
from helpers.http_client import Reply, fetch
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

POLLING = "/socket.io/?EIO=4&transport=polling"
WEBSOCKET = "/socket.io/?EIO=4&transport=websocket"
SLOW: dict[str, Any] = {"ping_interval": 25.0, "ping_timeout": 20.0}
"""Heartbeats that never fire during a test."""
TIMEOUT = 10
"""The bound on every test (seconds); a hang fails, it never blocks the run."""
MAX_POLLS = 20
"""The bound on any loop of polling requests."""

Message = str | bytes


# ---------------------------------------------------------------------------- the server


@dataclass
class Running:
    sio: Any
    port: int
    left: list[tuple[str, str]] = field(default_factory=list)
    """(namespace, reason) of every ``disconnect`` the server reported, in order."""
    gone: trio.Event = field(default_factory=trio.Event)
    """Set at the first ``disconnect``."""


@asynccontextmanager
async def running(**overrides: Any) -> AsyncIterator[Running]:
    sio = build_server(**overrides)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(sio.serve, "127.0.0.1", 0)
        r = Running(sio, listeners[0].socket.getsockname()[1])
        for name in ("/", "/custom"):
            _record_disconnects(sio if name == "/" else sio.of(name), name, r)
        yield r
        nursery.cancel_scope.cancel()


def _record_disconnects(namespace: Any, name: str, r: Running) -> None:
    @namespace.on("disconnect")
    async def disconnected(socket: Any, reason: str) -> None:
        r.left.append((name, str(reason)))
        r.gone.set()


# ---------------------------------------------------------------------------- the clients


def encode_payload(messages: tuple[Message, ...]) -> bytes:
    """An Engine.IO v4 polling payload of message packets ("4..." text, "b..." binary)."""
    parts = ["b" + base64.b64encode(m).decode() if isinstance(m, bytes) else m for m in messages]
    return "\x1e".join(parts).encode()


def decode_payload(body: bytes) -> list[Message]:
    return [
        base64.b64decode(part[1:]) if part.startswith("b") else part
        for part in body.decode().split("\x1e")
    ]


def open_packet(text: Message | None) -> dict[str, Any]:
    """The Engine.IO OPEN packet's handshake data."""
    assert isinstance(text, str) and text.startswith("0"), text
    value: dict[str, Any] = json.loads(text[1:])
    return value


class Polling:
    """An Engine.IO v4 long-polling client: one HTTP request per connection (h11).

    ``send`` takes Engine.IO packets ("4..." for a message, "3" for a pong); ``recv`` returns
    the next Engine.IO packet the server sent, polling when none is buffered.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.sid = ""
        self.buffered: deque[Message] = deque()

    @property
    def url(self) -> str:
        return f"{POLLING}&sid={self.sid}"

    async def open(self) -> dict[str, Any]:
        reply = await fetch(self.port, "GET", POLLING)
        assert reply.status == 200, reply
        value = open_packet(reply.body.decode())
        self.sid = value["sid"]
        return value

    async def send(self, *packets: Message) -> Reply:
        return await fetch(self.port, "POST", self.url, body=encode_payload(packets))

    async def get(self) -> Reply:
        return await fetch(self.port, "GET", self.url)

    async def recv(self) -> Message:
        if not self.buffered:
            reply = await self.get()
            assert reply.status == 200, reply
            self.buffered.extend(decode_payload(reply.body))
        return self.buffered.popleft()

    async def assert_closed(self) -> None:
        """The session ends: at most a CLOSE packet, then "Session ID unknown" (400)."""
        for _ in range(MAX_POLLS):
            reply = await self.get()
            if reply.status == 400:
                assert json.loads(reply.body) == {"code": 1, "message": "Session ID unknown"}
                return
            assert reply.status == 200, reply
            assert set(decode_payload(reply.body)) <= {"1", "6"}, reply  # CLOSE, NOOP
        raise AssertionError("the session stayed open")


class WebSocket:
    """A WebSocket client on wsproto over a loopback TCP stream."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.parts: list[Any] = []
        self.close_code: int | None = None

    @classmethod
    async def open(cls, port: int, target: str = WEBSOCKET) -> WebSocket:
        return await cls.over(await trio.open_tcp_stream("127.0.0.1", port), target)

    @classmethod
    async def over(cls, stream: trio.abc.Stream, target: str = WEBSOCKET) -> WebSocket:
        """The opening handshake on ``stream``; ConnectionRefusedError if refused."""
        client = cls(stream)
        await client.stream.send_all(client.ws.send(Request(host="localhost", target=target)))
        while True:
            event = await client._next()
            if isinstance(event, AcceptConnection):
                return client
            if isinstance(event, RejectConnection):
                await client.stream.aclose()
                raise ConnectionRefusedError(event.status_code)
            if event is None:
                raise ConnectionRefusedError("closed during the handshake")

    async def _next(self) -> Any:
        while True:
            for event in self.ws.events():
                return event
            try:
                data = await self.stream.receive_some(65536)
            except trio.BrokenResourceError:
                data = b""
            if not data:
                return None
            self.ws.receive_data(bytes(data))

    async def send(self, message: Message) -> None:
        event = TextMessage(message) if isinstance(message, str) else BytesMessage(message)
        await self.stream.send_all(self.ws.send(event))

    async def recv(self) -> Message | None:
        """The next message, or ``None`` once the connection is closed."""
        while True:
            event = await self._next()
            if event is None:
                return None
            if isinstance(event, TextMessage | BytesMessage):
                self.parts.append(event.data)
                if event.message_finished:
                    parts, self.parts = self.parts, []
                    if isinstance(event, TextMessage):
                        return "".join(parts)
                    return b"".join(bytes(p) for p in parts)
            elif isinstance(event, CloseConnection):
                self.close_code = event.code
                try:
                    await self.stream.send_all(self.ws.send(event.response()))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
                return None
            elif isinstance(event, RejectData):
                continue

    async def recv_until_closed(self) -> list[Message]:
        """What the server sent until it closed (bounded by the test's ``fail_after``)."""
        received: list[Message] = []
        while (message := await self.recv()) is not None:
            received.append(message)
        return received

    async def aclose(self) -> None:
        await self.stream.aclose()


Client = Polling | WebSocket


async def open_client(transport: str, port: int) -> tuple[Client, dict[str, Any]]:
    """An Engine.IO session on ``transport`` ("polling" or "websocket") and its handshake."""
    if transport == "polling":
        polling = Polling(port)
        return polling, await polling.open()
    ws = await WebSocket.open(port)
    return ws, open_packet(await ws.recv())


async def recv(client: Client) -> Message:
    message = await client.recv()
    assert message is not None, "the server closed the connection"
    return message


async def send(client: Client, *messages: Message) -> None:
    """Send Socket.IO packets (each an Engine.IO message: "4" is prepended to text)."""
    packets = tuple("4" + m if isinstance(m, str) else m for m in messages)
    if isinstance(client, Polling):
        reply = await client.send(*packets)
        assert (reply.status, reply.body) == (200, b"ok"), reply
    else:
        for packet in packets:
            await client.send(packet)


async def send_invalid(client: Client, message: str) -> None:
    """Send a malformed Socket.IO packet in a valid Engine.IO message. Over polling the POST
    may be answered "ok" (Node) or 400 (the session closed while handling it)."""
    if isinstance(client, Polling):
        reply = await client.send("4" + message)
        assert (reply.status, reply.body) == (200, b"ok") or reply.status == 400, reply
    else:
        await client.send("4" + message)


async def recv_sio(client: Client) -> Message:
    """The next Socket.IO packet (an Engine.IO message; text without its "4")."""
    message = await recv(client)
    if isinstance(message, bytes):
        return message
    assert message.startswith("4"), f"not an Engine.IO message: {message!r}"
    return message[1:]


async def assert_closed(client: Client) -> None:
    """The server ends the Engine.IO session without sending a Socket.IO packet first."""
    if isinstance(client, Polling):
        await client.assert_closed()
    else:
        assert set(await client.recv_until_closed()) <= {"1", "6"}  # CLOSE, NOOP at most


async def join(client: Client, connect: str = "0", prefix: str = "") -> str:
    """CONNECT with the packet ``connect``; check the answer and the ``auth`` event.

    ``prefix`` is the namespace as the server writes it ("" or "/custom,"); returns the sid.
    """
    await send(client, connect)
    answer = await recv_sio(client)
    assert isinstance(answer, str) and answer.startswith("0" + prefix), answer
    handshake = json.loads(answer[1 + len(prefix) :])
    assert set(handshake) == {"sid"}
    assert isinstance(handshake["sid"], str) and handshake["sid"]
    auth = await recv_sio(client)
    assert isinstance(auth, str) and auth.startswith(f'2{prefix}["auth",'), auth
    sid: str = handshake["sid"]
    return sid


TRANSPORTS = pytest.mark.parametrize("transport", ["websocket", "polling"])


# ---------------------------------------------------------------------------- Engine.IO


async def test_polling_handshake_has_the_suite_settings() -> None:
    with trio.fail_after(TIMEOUT):
        async with running() as r:
            reply = await fetch(r.port, "GET", POLLING, headers=[("Origin", "http://x.example")])
            assert reply.status == 200
            assert reply.headers["access-control-allow-origin"] in ("*", "http://x.example")
            value = open_packet(reply.body.decode())
            assert set(value) == {"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"}
            assert isinstance(value["sid"], str)
            assert value["upgrades"] == ["websocket"]
            assert (value["pingInterval"], value["pingTimeout"]) == (300, 200)
            assert value["maxPayload"] == 1_000_000


async def test_websocket_handshake_has_the_suite_settings() -> None:
    with trio.fail_after(TIMEOUT):
        async with running() as r:
            ws = await WebSocket.open(r.port)
            value = open_packet(await ws.recv())
            assert set(value) == {"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"}
            assert isinstance(value["sid"], str)
            assert value["upgrades"] == []
            assert (value["pingInterval"], value["pingTimeout"]) == (300, 200)
            assert value["maxPayload"] == 1_000_000
            await ws.aclose()


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("GET", "/socket.io/?transport=polling"),
        ("GET", "/socket.io/?EIO=abc&transport=polling"),
        ("GET", "/socket.io/?EIO=4"),
        ("GET", "/socket.io/?EIO=4&transport=abc"),
        ("POST", POLLING),
        ("PUT", POLLING),
    ],
)
async def test_polling_handshake_refused(method: str, target: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with running(**SLOW) as r:
            reply = await fetch(r.port, method, target)
            assert reply.status == 400


@pytest.mark.parametrize(
    "target",
    [
        "/socket.io/?transport=websocket",
        "/socket.io/?EIO=abc&transport=websocket",
        "/socket.io/?EIO=4",
        "/socket.io/?EIO=4&transport=abc",
    ],
)
async def test_websocket_handshake_refused(target: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with running(**SLOW) as r:
            try:
                ws = await WebSocket.open(r.port, target)
            except ConnectionRefusedError:
                return  # refused at the HTTP level (the pyserver way)
            # or accepted, then closed without a handshake (what Node does for a bad EIO)
            assert await ws.recv_until_closed() == []


@TRANSPORTS
async def test_heartbeat_then_ping_timeout(transport: str) -> None:
    """Three pings answered, then one not: the session ends with "ping timeout"."""
    with trio.fail_after(TIMEOUT):
        async with running() as r:
            client, _ = await open_client(transport, r.port)
            await join(client)
            for _ in range(3):
                assert await recv(client) == "2"
                if isinstance(client, Polling):
                    reply = await client.send("3")
                    assert reply.status == 200
                else:
                    await client.send("3")
            assert await recv(client) == "2"
            await assert_closed(client)
            await r.gone.wait()
            assert r.left == [("/", "ping timeout")]


async def test_polling_close_from_the_client() -> None:
    """A pending poll gets NOOP when the client sends CLOSE; the sid is unknown after."""
    with trio.fail_after(TIMEOUT):
        async with running(**SLOW) as r:
            client = Polling(r.port)
            await client.open()
            await join(client)
            polls: list[Reply] = []

            async def poll() -> None:
                polls.append(await client.get())

            async with trio.open_nursery() as nursery:
                nursery.start_soon(poll)
                await trio.testing.wait_all_tasks_blocked()
                assert (await client.send("1")).status == 200
            assert (polls[0].status, polls[0].body) == (200, b"6")
            assert (await client.get()).status == 400
            await r.gone.wait()
            assert r.left == [("/", "transport close")]


async def test_websocket_close_from_the_client() -> None:
    with trio.fail_after(TIMEOUT):
        async with running(**SLOW) as r:
            ws = await WebSocket.open(r.port)
            await ws.recv()
            await join(ws)
            await ws.send("1")
            await assert_closed(ws)
            await r.gone.wait()
            assert r.left == [("/", "transport close")]


async def test_upgrade_then_the_old_transport_and_a_second_websocket_are_refused() -> None:
    with trio.fail_after(TIMEOUT):
        async with running(**SLOW) as r:
            polling = Polling(r.port)
            await polling.open()
            ws = await WebSocket.open(r.port, f"{WEBSOCKET}&sid={polling.sid}")
            await ws.send("2probe")
            assert await ws.recv() == "3probe"
            await ws.send("5")
            assert (await polling.get()).status == 400
            try:
                second = await WebSocket.open(r.port, f"{WEBSOCKET}&sid={polling.sid}")
            except ConnectionRefusedError:
                pass
            else:
                assert await second.recv_until_closed() in ([], ["1"])
            # the upgraded session works, for Socket.IO too
            await join(ws)
            await send(ws, '2["message","after the upgrade"]')
            assert await recv_sio(ws) == '2["message-back","after the upgrade"]'


# ---------------------------------------------------------------------------- CONNECT


@TRANSPORTS
@pytest.mark.parametrize(
    ("connect", "prefix", "auth"),
    [
        ("0", "", "{}"),
        ('0{"token":"123"}', "", '{"token":"123"}'),
        ("0/custom,", "/custom,", "{}"),
        ("0/custom", "/custom,", "{}"),  # the suite sends this form too (no comma)
        ('0/custom,{"token":"abc"}', "/custom,", '{"token":"abc"}'),
    ],
)
async def test_connect(transport: str, connect: str, prefix: str, auth: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with running(**SLOW) as r:
            client, eio = await open_client(transport, r.port)
            await send(client, connect)
            answer = await recv_sio(client)
            assert isinstance(answer, str) and answer.startswith("0" + prefix)
            handshake = json.loads(answer[1 + len(prefix) :])
            assert set(handshake) == {"sid"}
            assert isinstance(handshake["sid"], str) and handshake["sid"]
            assert handshake["sid"] != eio["sid"]  # v5: not the Engine.IO session id
            assert await recv_sio(client) == f'2{prefix}["auth",{auth}]'


@TRANSPORTS
async def test_connect_to_both_namespaces_gives_two_sockets(transport: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with running(**SLOW) as r:
            client, _ = await open_client(transport, r.port)
            main = await join(client)
            custom = await join(client, "0/custom,", "/custom,")
            assert main != custom
            await send(client, '2/custom,["message","to custom"]', '2["message","to main"]')
            # each socket answers in order; the two sockets' answers may interleave
            answers = {await recv_sio(client), await recv_sio(client)}
            assert answers == {
                '2/custom,["message-back","to custom"]',
                '2["message-back","to main"]',
            }


@TRANSPORTS
@pytest.mark.parametrize("connect", ["0/random", "0/random,", '0/random,{"token":"123"}'])
async def test_unknown_namespace_is_refused(transport: str, connect: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with running(**SLOW) as r:
            client, _ = await open_client(transport, r.port)
            await send(client, connect)
            assert await recv_sio(client) == '4/random,{"message":"Invalid namespace"}'
            await join(client)  # the connection stays usable
            assert r.left == []


@TRANSPORTS
async def test_invalid_handshake_closes(transport: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with running(**SLOW) as r:
            client, _ = await open_client(transport, r.port)
            await send_invalid(client, "abc")
            await assert_closed(client)


@TRANSPORTS
async def test_connect_timeout_closes(transport: str) -> None:
    """No CONNECT within connect_timeout: the server closes the Engine.IO session (with
    heartbeats too long to be what closes it)."""
    with trio.fail_after(TIMEOUT):
        async with running(**SLOW, connect_timeout=0.2) as r:
            client, _ = await open_client(transport, r.port)
            await assert_closed(client)
            assert r.left == []


async def test_connect_timeout_of_the_fixture_on_a_mock_clock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The fixture's own connect_timeout (1 s) closes a client that never sends CONNECT, before
    any heartbeat (25 s here); a memory stream, so the clock can jump."""
    sio = build_server(**SLOW)
    with trio.fail_after(100):
        async with trio.open_nursery() as nursery:
            await nursery.start(sio.run)
            client, server = trio.testing.memory_stream_pair()
            nursery.start_soon(sio.app.serve_stream, server)
            ws = await WebSocket.over(client)
            open_packet(await ws.recv())
            await assert_closed(ws)  # a ping ("2") would mean the heartbeat came first
            nursery.cancel_scope.cancel()


async def test_connect_timeout_of_the_fixture_closes_a_silent_websocket() -> None:
    """The suite's case as it runs it: a client that sends nothing is closed."""
    with trio.fail_after(TIMEOUT):
        async with running() as r:
            ws = await WebSocket.open(r.port)
            open_packet(await ws.recv())
            assert set(await ws.recv_until_closed()) <= {"2", "1"}


# ---------------------------------------------------------------------------- DISCONNECT


async def test_disconnect_from_the_main_namespace_then_only_heartbeats() -> None:
    """The suite's case: after "41" the next packet is a ping, nothing answers the DISCONNECT."""
    with trio.fail_after(TIMEOUT):
        async with running() as r:
            ws = await WebSocket.open(r.port)
            await ws.recv()
            await join(ws)
            await send(ws, "1")
            assert await ws.recv() == "2"
            await r.gone.wait()
            assert r.left == [("/", "client namespace disconnect")]


@TRANSPORTS
async def test_disconnect_keeps_the_connection(transport: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with running(**SLOW) as r:
            client, _ = await open_client(transport, r.port)
            await join(client)
            await send(client, "1")
            # the next packet answers this CONNECT: nothing was sent for the DISCONNECT
            await join(client, "0/custom,", "/custom,")
            await r.gone.wait()
            assert r.left == [("/", "client namespace disconnect")]
            await send(client, '2/custom,["message","still here"]')
            assert await recv_sio(client) == '2/custom,["message-back","still here"]'


@TRANSPORTS
async def test_connect_then_disconnect_from_a_custom_namespace(transport: str) -> None:
    """The suite's sequence: join /custom (no trailing comma), leave it, use the main one."""
    with trio.fail_after(TIMEOUT):
        async with running(**SLOW) as r:
            client, _ = await open_client(transport, r.port)
            await join(client)
            await join(client, "0/custom", "/custom,")
            await send(client, "1/custom", '2["message","message to main namespace"]')
            assert await recv_sio(client) == '2["message-back","message to main namespace"]'
            await r.gone.wait()
            assert r.left == [("/custom", "client namespace disconnect")]


# ---------------------------------------------------------------------------- EVENT and ACK


@TRANSPORTS
@pytest.mark.parametrize("prefix", ["", "/custom,"])
async def test_event_is_echoed_as_message_back(transport: str, prefix: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with running(**SLOW) as r:
            client, _ = await open_client(transport, r.port)
            await join(client, "0" + prefix, prefix)
            await send(client, f'2{prefix}["message",1,"2",{{"3":[true]}}]')
            assert await recv_sio(client) == f'2{prefix}["message-back",1,"2",{{"3":[true]}}]'
            await send(client, f'2{prefix}["message"]', f'2{prefix}["message","é",null]')
            assert await recv_sio(client) == f'2{prefix}["message-back"]'
            assert await recv_sio(client) == f'2{prefix}["message-back","é",null]'


@TRANSPORTS
@pytest.mark.parametrize("prefix", ["", "/custom,"])
async def test_binary_event_is_echoed_with_placeholders(transport: str, prefix: str) -> None:
    placeholders = '{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}'
    with trio.fail_after(TIMEOUT):
        async with running(**SLOW) as r:
            client, _ = await open_client(transport, r.port)
            await join(client, "0" + prefix, prefix)
            await send(
                client,
                f'52-{prefix}["message",{placeholders}]',
                bytes([1, 2, 3]),
                bytes([4, 5, 6]),
            )
            assert await recv_sio(client) == f'52-{prefix}["message-back",{placeholders}]'
            assert await recv_sio(client) == bytes([1, 2, 3])
            assert await recv_sio(client) == bytes([4, 5, 6])


@TRANSPORTS
@pytest.mark.parametrize("prefix", ["", "/custom,"])
async def test_ack(transport: str, prefix: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with running(**SLOW) as r:
            client, _ = await open_client(transport, r.port)
            await join(client, "0" + prefix, prefix)
            await send(client, f'2{prefix}456["message-with-ack",1,"2",{{"3":[false]}}]')
            assert await recv_sio(client) == f'3{prefix}456[1,"2",{{"3":[false]}}]'
            await send(client, f'2{prefix}0["message-with-ack","one"]')
            assert await recv_sio(client) == f'3{prefix}0["one"]'


@TRANSPORTS
@pytest.mark.parametrize("prefix", ["", "/custom,"])
async def test_binary_ack_with_placeholders(transport: str, prefix: str) -> None:
    placeholders = '{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}'
    with trio.fail_after(TIMEOUT):
        async with running(**SLOW) as r:
            client, _ = await open_client(transport, r.port)
            await join(client, "0" + prefix, prefix)
            await send(
                client,
                f'52-{prefix}789["message-with-ack",{placeholders}]',
                bytes([1, 2, 3]),
                bytes([4, 5, 6]),
            )
            assert await recv_sio(client) == f"62-{prefix}789[{placeholders}]"
            assert await recv_sio(client) == bytes([1, 2, 3])
            assert await recv_sio(client) == bytes([4, 5, 6])


# ---------------------------------------------------------------------------- bad input


@TRANSPORTS
@pytest.mark.parametrize(
    "packet",
    [
        "abc",  # unknown packet type
        "2{}",  # the payload is not an array
        '2abc["message-with-ack",1,"2",{"3":[false]}]',  # the ack id is not a number
    ],
)
async def test_invalid_packet_closes_only_that_session(transport: str, packet: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with running(**SLOW) as r:
            bystander, _ = await open_client("websocket", r.port)
            await join(bystander)
            client, _ = await open_client(transport, r.port)
            await join(client)
            await send_invalid(client, packet)
            await assert_closed(client)
            await r.gone.wait()
            assert [namespace for namespace, _ in r.left] == ["/"]
            await send(bystander, '2["message","unharmed"]')
            assert await recv_sio(bystander) == '2["message-back","unharmed"]'

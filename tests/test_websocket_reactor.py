"""The reactor (``pyserver.trio.websocket.reactor``): one task reads every WebSocket whose
messages go to ``serve_messages`` callbacks.

What is checked, on real sockets: one task reads many connections and runs their work;
registrations go away before the descriptors close (so a reused descriptor is not
mistaken); the end of a stream, a reset and a close handshake end the reading in the
reactor; a protocol error goes back to a reader task (which drains what the peer still
sends); a large message split over many reads; blocked work is finished by a reactor task
and cancelled with its connection when the server stops; handlers see the context the
server's caller set; an unexpected error drops only its own connection, with 1011 and one
log line.

Peers: raw sockets with hand-made frames (``tests/helpers/ws_client.py``'s ``RawClient``)
and the ``websockets`` client."""

from __future__ import annotations

import contextvars
import logging
import socket
import struct
from collections.abc import Callable
from typing import Any

import pytest
import trio
from helpers.ws_client import CLOSE, TEXT, RawClient, frame, masked, serving

from pyserver import _frames
from pyserver.http import WebSocket
from pyserver.trio.http.app import App
from pyserver.trio.websocket import connection as shell
from pyserver.trio.websocket import inline, sending
from pyserver.trio.websocket import reactor as reactor_module
from pyserver.trio.websocket.connection import WebSocket as TrioWebSocket
from pyserver.trio.websocket.reader import Reading

pytestmark = pytest.mark.skipif(not reactor_module.ENABLED, reason="no reactor here")

TIMEOUT = 20

CONTEXT_VALUE: contextvars.ContextVar[str] = contextvars.ContextVar("test_reactor_value")


class Served:
    """An app whose connections echo through work offered from ``serve_messages``
    callbacks (the way Socket.IO handlers run); "block" waits until ``gate`` opens."""

    def __init__(self) -> None:
        self.sockets: list[TrioWebSocket] = []
        self.read_by: list[trio.lowlevel.Task] = []
        self.worked_in: list[trio.lowlevel.Task] = []
        self.ended: list[TrioWebSocket] = []
        self.returned: list[TrioWebSocket] = []
        self.context_seen: list[str] = []
        self.context_after_block: list[str] = []
        self.gate = trio.Event()
        self.blocked = trio.Event()
        self.cancelled = trio.Event()
        self.reactor: reactor_module.Reactor | None = None

    def app(self, ws_close_timeout: float = 5.0, ws_max_outbox: int = 1024) -> App:
        app = App(ws_close_timeout=ws_close_timeout, ws_max_outbox=ws_max_outbox)

        @app.websocket("/r")
        async def handler(ws: WebSocket) -> None:
            assert isinstance(ws, TrioWebSocket)
            self.sockets.append(ws)
            self.reactor = reactor_module.current()  # (the serving call's, seen from here)

            def on_message(message: str | bytes) -> inline.Work:
                self.read_by.append(trio.lowlevel.current_task())
                return lambda: self.work(ws, message)  # (run by the reactor, after the read)

            await ws.serve_messages(on_message, lambda: self.ended.append(ws))
            self.returned.append(ws)

        return app

    async def work(self, ws: TrioWebSocket, message: str | bytes) -> None:
        self.worked_in.append(trio.lowlevel.current_task())
        self.context_seen.append(CONTEXT_VALUE.get("unset"))
        if isinstance(message, str) and message.startswith("set "):
            CONTEXT_VALUE.set(message[4:])  # (never reset: it stays in this context)
            message = "block" if message == "set then block" else message
        if message == "bye":
            ws.close_nowait(4000, "bye")
            return
        if message == "shout then block":  # to every other connection, then "block"
            others = [other for other in self.sockets if other is not ws]
            shell.send_frames_to_many(others, [_frames.Encoder().text("shout")])
            message = "block"
        if message == "block":
            self.blocked.set()
            try:
                await self.gate.wait()
            except trio.Cancelled:
                self.cancelled.set()
                raise
            self.context_after_block.append(CONTEXT_VALUE.get("unset"))
        if not ws.closed:
            ws.send_nowait(message)


def registered(served: Served) -> int:
    """Connections the reactor of ``served``'s serving call reads now."""
    reactor = served.reactor
    return 0 if reactor is None or reactor.closed else len(reactor)


async def echoes(client: RawClient, text: str) -> None:
    """``text`` goes out and comes back."""
    await client.send(masked(TEXT, text.encode()))
    assert await client.next() == text


async def until(predicate: Callable[[], bool]) -> None:
    while not predicate():  # noqa: ASYNC110  (internal state: bounded by the caller)
        await trio.sleep(0.005)


async def test_one_task_reads_every_connection_and_runs_its_work() -> None:
    served = Served()
    with trio.fail_after(TIMEOUT):
        async with serving(served.app()) as (_, port):
            clients = [await RawClient.open(port, "/r") for _ in range(5)]
            for round_ in range(3):
                for n, client in enumerate(clients):
                    await client.send(masked(TEXT, b"%d-%d" % (n, round_)))
                for n, client in enumerate(clients):
                    assert await client.next() == f"{n}-{round_}"
            assert registered(served) == 5
            assert all(ws._reading is Reading.REACTOR for ws in served.sockets)
            # no task per connection reads: one reactor task did it all, and ran the work
            assert len(set(served.read_by)) == 1
            assert served.worked_in == served.read_by
            for client in clients:
                await client.send(masked(CLOSE, b"\x03\xe8"))
                assert (await client.until_close())[1] == 1000
            await until(lambda: len(served.returned) == 5)
            assert registered(served) == 0  # (unregistered before each descriptor closed)
            assert sorted(map(id, served.ended)) == sorted(map(id, served.sockets))


async def test_descriptors_reused_by_new_connections_are_read_for_them() -> None:
    served = Served()
    with trio.fail_after(TIMEOUT):
        async with serving(served.app()) as (_, port):
            for n in range(20):  # each new connection likely takes the previous one's fd
                client = await RawClient.open(port, "/r")
                await client.send(masked(TEXT, b"hello %d" % n))
                assert await client.next() == f"hello {n}"
                await client.stream.aclose()
                await until(lambda n=n: len(served.ended) == n + 1)  # type: ignore[misc]
            await until(lambda: registered(served) == 0)


async def test_end_of_stream_and_reset_end_the_reading() -> None:
    served = Served()
    with trio.fail_after(TIMEOUT):
        async with serving(served.app()) as (_, port):
            quiet = await RawClient.open(port, "/r")
            await echoes(quiet, "x")
            await quiet.stream.send_eof()  # a FIN without a Close frame
            reset = await RawClient.open(port, "/r")
            await echoes(reset, "y")
            sock = reset.stream.socket
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()  # an RST
            await until(lambda: len(served.returned) == 2)
            assert all(ws.close_code == 1006 for ws in served.sockets)
            assert registered(served) == 0


async def test_a_close_the_peer_never_answers_ends_after_the_timeout() -> None:
    served = Served()
    with trio.fail_after(TIMEOUT):
        async with serving(served.app(ws_close_timeout=0.2)) as (_, port):
            client = await RawClient.open(port, "/r")
            await client.send(masked(TEXT, b"bye"))
            assert (await client.until_close())[1:] == (4000, "bye")
            # no Close back, no end of stream: the timer drops the connection, after it
            # left the reactor (the descriptor is closed, and may be reused at once)
            assert await client.stream.receive_some(10) == b""
            await until(lambda: len(served.returned) == 1)
            assert registered(served) == 0
            assert served.ended == served.sockets


async def test_a_slow_consumer_is_closed_and_leaves(caplog: pytest.LogCaptureFixture) -> None:
    """A peer that sends and never reads: its replies fill the socket, then the outbox;
    it is closed as a slow consumer (1008) and, never answering the Close, dropped after
    the close timeout, unregistered; another connection is not held up meanwhile."""
    served = Served()
    chunk = b"x" * 32768
    with trio.fail_after(TIMEOUT):
        async with serving(served.app(ws_close_timeout=0.2, ws_max_outbox=8)) as (_, port):
            slow = await RawClient.open(port, "/r")
            other = await RawClient.open(port, "/r")
            with trio.move_on_after(5):  # (the server stops reading once it has dropped us)
                for _ in range(400):  # 12.5 MiB of echoes: more than the sockets hold
                    await slow.send(masked(TEXT, chunk))
                    if served.sockets[0].closed:
                        break
            await echoes(other, "unaffected")
            await until(lambda: len(served.returned) == 1)
            assert served.sockets[0].close_code == 1008
            assert registered(served) == 1  # the other connection only
    assert any("slow consumer" in r.getMessage() for r in caplog.records)


async def test_protocol_error_goes_back_to_a_reader_task(caplog: pytest.LogCaptureFixture) -> None:
    served = Served()
    with trio.fail_after(TIMEOUT):
        async with serving(served.app()) as (_, port):
            bad = await RawClient.open(port, "/r")
            good = await RawClient.open(port, "/r")
            await echoes(bad, "fine")
            await bad.send(frame(TEXT, b"unmasked", mask=None))  # clients must mask: 1002
            assert (await bad.until_close())[1] == 1002
            # the peer goes on sending after the failure: a reader task drains it
            await bad.send(masked(TEXT, b"ignored") * 10)
            await bad.send(masked(CLOSE, b"\x03\xea"))
            assert await bad.stream.receive_some(10) == b""
            await echoes(good, "still here")
            (bad_ws, good_ws) = served.sockets
            assert bad_ws._reading is Reading.TASK
            assert good_ws._reading is Reading.REACTOR
    assert caplog.text.count("closing WebSocket '/r'") == 1


async def test_a_large_message_over_many_reads() -> None:
    served = Served()
    payload = bytes(range(256)) * 1200  # 300 KiB: many reads, a larger read size
    text = payload.hex()[: len(payload)].encode()
    with trio.fail_after(TIMEOUT):
        async with serving(served.app()) as (_, port):
            client = await RawClient.open(port, "/r")
            data = masked(TEXT, text)
            for start in range(0, len(data), 10000):
                await client.send(data[start : start + 10000])
            assert await client.next() == text.decode()
            assert served.sockets[0]._reading is Reading.REACTOR


async def test_blocked_work_keeps_a_reactor_task_and_reading_goes_on() -> None:
    served = Served()
    with trio.fail_after(TIMEOUT):
        async with serving(served.app()) as (_, port):
            client = await RawClient.open(port, "/r")
            other = await RawClient.open(port, "/r")
            await client.send(masked(TEXT, b"block") + masked(TEXT, b"after"))
            assert await client.next() == "after"  # the rest of the batch ran at once
            await echoes(other, "other")
            keeper = served.worked_in[0]
            assert served.worked_in[1] is not keeper  # a new reactor task drives
            served.gate.set()
            assert await client.next() == "block"
            assert served.sockets[0]._keepers == []


async def test_what_a_step_sends_goes_out_at_its_end_also_when_its_work_blocks() -> None:
    """A broadcast made in a reactor step waits for the step's end; a step that stops
    early because work blocked still ends, so the others get it while that work waits."""
    served = Served()
    with trio.fail_after(TIMEOUT):
        async with serving(served.app()) as (_, port):
            client, *others = [await RawClient.open(port, "/r") for _ in range(3)]
            for n, peer in enumerate([client, *others]):
                await echoes(peer, f"hi {n}")
            assert registered(served) == 3
            await client.send(masked(TEXT, b"shout then block"))
            for peer in others:
                assert await peer.next() == "shout"
            assert served.blocked.is_set() and not served.gate.is_set()
            assert sending.ticker_of_run().step is None
            served.gate.set()
            assert await client.next() == "block"


async def test_blocked_work_is_cancelled_when_the_server_stops() -> None:
    served = Served()
    with trio.fail_after(TIMEOUT):
        async with serving(served.app()) as (nursery, port):
            client = await RawClient.open(port, "/r")
            await client.send(masked(TEXT, b"block"))
            await served.blocked.wait()
            nursery.cancel_scope.cancel()
        await served.cancelled.wait()
    close = await client.until_close()
    assert close[1:] == (1001, "server shutting down")
    assert served.ended == []  # cancelled: the server says goodbye itself, no on_end


async def test_work_sees_the_context_of_the_servers_caller() -> None:
    served = Served()
    CONTEXT_VALUE.set("set by the caller")
    with trio.fail_after(TIMEOUT):
        async with serving(served.app()) as (_, port):
            client = await RawClient.open(port, "/r")
            await echoes(client, "x")
    assert served.context_seen == ["set by the caller"]


async def test_each_connection_has_its_own_context() -> None:
    """A ContextVar a handler sets is seen by later handlers of the same connection, also
    after blocking (the blocked work goes on in the connection's context), and never by
    another connection's handlers, although one reactor task runs them all."""
    served = Served()
    with trio.fail_after(TIMEOUT):
        async with serving(served.app()) as (_, port):
            a = await RawClient.open(port, "/r")
            b = await RawClient.open(port, "/r")
            await a.send(masked(TEXT, b"set then block"))
            await served.blocked.wait()
            await echoes(a, "a again")
            await echoes(b, "b")
            await echoes(b, "set b-value")
            await echoes(b, "b again")
            served.gate.set()
            assert await a.next() == "block"
            await echoes(a, "a last")
    assert served.context_seen == [
        "unset",  # a: "set then block" (sets "then block")
        "then block",  # a again
        "unset",  # b: nothing of a's
        "unset",  # b: "set b-value"
        "b-value",  # b again
        "then block",  # a last: b's value never reached a
    ]
    assert served.context_after_block == ["then block"]
    assert len(set(served.read_by)) <= 2  # (one reactor task, and the one after the block)


async def test_an_unexpected_error_drops_only_its_connection(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    served = Served()
    real = TrioWebSocket._react
    victims: list[TrioWebSocket] = []

    def react(self: TrioWebSocket, fd: int) -> object:
        if self in victims:
            raise RuntimeError("a bug")
        return real(self, fd)

    with trio.fail_after(TIMEOUT):
        async with serving(served.app()) as (_, port):
            victim = await RawClient.open(port, "/r")
            bystander = await RawClient.open(port, "/r")
            await echoes(victim, "a")
            victims.append(served.sockets[0])
            monkeypatch.setattr(TrioWebSocket, "_react", react)
            await victim.send(masked(TEXT, b"b"))
            assert (await victim.until_close())[1] == 1011
            await echoes(bystander, "fine")
    assert caplog.text.count("WebSocket reactor failed") == 1


async def test_an_unexpected_error_after_blocked_work_drops_only_its_connection(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    served = Served()

    def go_on(self: TrioWebSocket, works: object) -> object:
        raise RuntimeError("a bug")

    monkeypatch.setattr(TrioWebSocket, "_go_on", go_on)
    with trio.fail_after(TIMEOUT):
        async with serving(served.app()) as (_, port):
            victim = await RawClient.open(port, "/r")
            bystander = await RawClient.open(port, "/r")
            await victim.send(masked(TEXT, b"block") + masked(TEXT, b"lost"))
            assert (await victim.until_close())[1] == 1011
            await echoes(bystander, "fine")
            assert registered(served) == 1  # the victim left the reactor
            served.gate.set()
    assert caplog.text.count("WebSocket reactor failed") == 1


# -- churn: Socket.IO clients come and go every way while a room is broadcast to -------


async def test_churn_leaves_the_server_healthy_and_the_reactor_empty(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """40 Socket.IO clients over raw WebSockets, each connecting five times in a row: each
    time it joins a room, shouts to it, sometimes starts a handler that blocks, and leaves
    one of four ways (an RST, a FIN, a WebSocket Close, an Engine.IO close) while another
    client keeps broadcasting. Afterwards the steady client still gets broadcasts, nothing
    was logged as an error, and no socket is left registered with the reactor."""
    import random

    from pyserver import Server

    sio = Server()
    blocked_started: list[str] = []
    blocked_ended: list[str] = []

    reactors: set[reactor_module.Reactor | None] = set()

    @sio.on("join")
    async def join(socket: Any) -> None:
        socket.join("r")
        reactors.add(reactor_module.current())  # (the serving call's, seen from a handler)

    @sio.on("shout")
    async def shout(socket: Any, data: Any) -> None:
        sio.to("r").emit("heard", data)

    @sio.on("wait")
    async def wait(socket: Any) -> None:
        blocked_started.append(socket.id)
        try:
            await trio.sleep(0.2)
        finally:
            blocked_ended.append(socket.id)

    rng = random.Random(1234)
    path = "/socket.io/?EIO=4&transport=websocket"

    async def connected(port: int) -> RawClient:
        client = await RawClient.open(port, path)
        opening = await client.next()
        assert isinstance(opening, str) and opening.startswith("0{")
        await client.send(masked(TEXT, b"40"))
        while not str(await client.next()).startswith("40"):
            pass
        return client

    async def visitor(port: int, n: int) -> None:
        for visit in range(5):
            client = await connected(port)
            frames = masked(TEXT, b'42["join"]') + masked(TEXT, b'42["shout",%d]' % n)
            if rng.random() < 0.3:
                frames += masked(TEXT, b'42["wait"]')
            await client.send(frames)
            await client.next()  # something came back (a broadcast, likely its own)
            way = (n + visit) % 4
            if way == 0:
                sock = client.stream.socket
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
            elif way == 1:
                await client.stream.send_eof()
            elif way == 2:
                await client.send(masked(CLOSE, b"\x03\xe8"))
            else:
                await client.send(masked(TEXT, b"1"))  # Engine.IO close
            if way != 0:
                while True:  # to the end of the stream, answering the server's Close
                    try:
                        message = await client.next()
                    except EOFError:
                        break
                    if isinstance(message, tuple) and message[0] == "close" and way != 2:
                        await client.send(masked(CLOSE, b"\x03\xe8"))
                await client.stream.aclose()

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as outer:
            listeners = await outer.start(sio.serve, "127.0.0.1", 0)
            port = listeners[0].socket.getsockname()[1]
            steady = await connected(port)
            await steady.send(masked(TEXT, b'42["join"]'))

            async def keep_shouting() -> None:
                while True:
                    await steady.send(masked(TEXT, b'42["shout","steady"]'))
                    await trio.sleep(0.01)

            async with trio.open_nursery() as shouting:
                shouting.start_soon(keep_shouting)
                async with trio.open_nursery() as visitors:
                    for n in range(40):
                        visitors.start_soon(visitor, port, n)
                shouting.cancel_scope.cancel()  # the visitors are done
            (reactor,) = reactors  # one reactor for the whole serving call
            assert reactor is not None
            await until(lambda: len(reactor) == 1)  # the steady client only
            await steady.send(masked(TEXT, b'42["shout","last"]'))
            while (message := await steady.next()) != '42["heard","last"]':
                assert isinstance(message, str)
            await until(lambda: len(sio.clients) == 1)
            await until(lambda: len(blocked_ended) == len(blocked_started))
            outer.cancel_scope.cancel()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert blocked_started  # some handlers blocked (and every one of those ended)

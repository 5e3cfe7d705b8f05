"""The WebSocket shell's task economy (``pyserver.trio.websocket.connection``): the writer task of
an idle connection ends and comes back with the next frame, a callback consumer
(``serve_messages``) reads in its own task, the descriptor I/O path survives partial writes,
and streams without a descriptor (memory streams) take the stream API path.

Peers: raw sockets with hand-made frames (``tests/helpers/ws_client.py``'s ``RawClient``,
independent of the codec under test) and, for the memory-stream path, the codec in the
client role."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from helpers.ws_client import BINARY, CLOSE, TEXT, RawClient, masked, serving

from pyserver import _frames
from pyserver.http import Headers, Request, WebSocket
from pyserver.trio.http.app import App
from pyserver.trio.websocket import connection as shell
from pyserver.trio.websocket import fanout, reactor, sending
from pyserver.trio.websocket.connection import WebSocket as TrioWebSocket
from pyserver.trio.websocket.reader import Reading
from pyserver.trio.websocket.writer import WriterState
from pyserver.ws.connection import WebSocketConnection

TIMEOUT = 20


@pytest.fixture
def quick_sweeper(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shell, "WRITER_IDLE_SECONDS", 0.02)


class Hub:
    """Keeps the server side of each connection, for the white-box checks."""

    def __init__(self) -> None:
        self.members: list[TrioWebSocket] = []
        self.joined = trio.Event()


def hub_app(hub: Hub) -> App:
    app = App()

    @app.websocket("/echo")
    async def echo(ws: WebSocket) -> None:
        assert isinstance(ws, TrioWebSocket)
        hub.members.append(ws)
        hub.joined.set()
        async for message in ws:
            if message == "close please":
                await ws.close(4000, "asked")
                return
            await ws.send(message)

    return app


async def echoed_once(hub: Hub, port: int, text: bytes) -> tuple[RawClient, TrioWebSocket]:
    """A client that had ``text`` echoed (so the server side exists and has written), and
    that connection's server side."""
    client = await RawClient.open(port)
    await client.send(masked(TEXT, text))
    assert await client.next() == text.decode()
    return client, hub.members[-1]


async def wait_until_writer_retired(ws: TrioWebSocket) -> None:
    # the sweeper is internal and signals nobody: poll its outcome (bounded by the caller)
    while ws._writer_state is not WriterState.NONE:  # noqa: ASYNC110
        await trio.sleep(0.005)


@pytest.mark.usefixtures("quick_sweeper")
async def test_idle_writer_ends_and_the_next_frame_brings_it_back() -> None:
    hub = Hub()
    with trio.fail_after(TIMEOUT):
        async with serving(hub_app(hub)) as (_, port):
            client, ws = await echoed_once(hub, port, b"one")
            assert ws._writer_state is WriterState.RUNNING
            await wait_until_writer_retired(ws)
            # the connection is still fine both ways, several times over
            for n in range(3):
                await client.send(masked(BINARY, b"again %d" % n))
                assert await client.next() == b"again %d" % n
                await wait_until_writer_retired(ws)
            # the close handshake needs a writer too
            await client.send(masked(TEXT, b"close please"))
            close = await client.until_close()
            assert close[1:] == (4000, "asked")
            await client.send(masked(CLOSE, b"\x0f\xa0"))
            assert await client.stream.receive_some(10) == b""


@pytest.mark.usefixtures("quick_sweeper")
async def test_peer_close_reaches_a_connection_without_writer() -> None:
    hub = Hub()
    with trio.fail_after(TIMEOUT):
        async with serving(hub_app(hub)) as (_, port):
            client, ws = await echoed_once(hub, port, b"x")
            await wait_until_writer_retired(ws)
            await client.send(masked(CLOSE, b"\x03\xe8bye"))
            close = await client.until_close()  # the echo of our Close
            assert close[1] == 1000
            assert await client.stream.receive_some(10) == b""  # then the server hangs up
            await ws.wait_closed()
            assert ws.close_code == 1000


@pytest.mark.usefixtures("quick_sweeper")
async def test_shutdown_says_going_away_without_a_writer() -> None:
    hub = Hub()
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as server:
            listeners = await server.start(hub_app(hub).serve, "127.0.0.1", 0)
            port = listeners[0].socket.getsockname()[1]
            client, ws = await echoed_once(hub, port, b"up")
            await wait_until_writer_retired(ws)
            server.cancel_scope.cancel()
        close = await client.until_close()
    assert close[1] == 1001


async def test_a_large_message_survives_partial_writes() -> None:
    """4 MiB echoed to a client that reads in small bites: the writer's descriptor path
    meets a full socket buffer many times (partial writes and waits for room)."""
    hub = Hub()
    payload = bytes(range(256)) * (4 << 12)
    with trio.fail_after(TIMEOUT):
        app = hub_app(hub)
        app.ws_max_message_size = 8 << 20
        async with serving(app) as (_, port):
            client = await RawClient.open(port)
            await client.send(masked(BINARY, payload))
            received = b""
            while not client.messages:
                data = await client.stream.receive_some(4096)
                assert data
                client._feed(data)
            received = client.messages.pop(0)
            assert received == payload


# -- serve_messages: the callback consumer ---------------------------------------------


def callback_app(log: list[str | bytes], modes: list[object], done: trio.Event) -> App:
    app = App()

    @app.websocket("/cb")
    async def handler(ws: WebSocket) -> None:
        assert isinstance(ws, TrioWebSocket)

        def on_message(message: str | bytes) -> None:
            log.append(message)
            modes.append(ws._reading)  # who reads (at the end it is Reading.ENDED)
            if message == "boom":
                raise RuntimeError("callback failed")
            ws.send_nowait(message)

        await ws.serve_messages(on_message)
        assert ws._reading is Reading.ENDED
        done.set()

    return app


async def test_serve_messages_reads_in_the_handler_task() -> None:
    log: list[str | bytes] = []
    modes: list[object] = []
    done = trio.Event()
    with trio.fail_after(TIMEOUT):
        async with serving(callback_app(log, modes, done)) as (_, port):
            client = await RawClient.open(port, "/cb", first_frames=masked(TEXT, b"early"))
            assert await client.next() == "early"
            await client.send(masked(TEXT, b"a") + masked(BINARY, b"b"))
            assert [await client.next(), await client.next()] == ["a", b"b"]
            await client.send(masked(CLOSE, b"\x03\xe8"))
            assert (await client.until_close())[1] == 1000
            assert await client.stream.receive_some(10) == b""
            await done.wait()
    assert log == ["early", "a", b"b"]
    # no reader task was needed: the handler task read, then the reactor if there is one
    assert Reading.TASK not in modes
    assert modes[-1] is (Reading.REACTOR if reactor.ENABLED else Reading.INLINE)


async def test_serve_messages_callback_failure_closes_with_1011(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log: list[str | bytes] = []
    with trio.fail_after(TIMEOUT):
        async with serving(callback_app(log, [], trio.Event())) as (_, port):
            client = await RawClient.open(port, "/cb")
            await client.send(masked(TEXT, b"boom") + masked(TEXT, b"after"))
            close = await client.until_close()
    assert close[1] == 1011
    assert log == ["boom"]  # nothing is delivered after the failure
    assert "message callback failed" in caplog.text


# -- a stream without a descriptor ------------------------------------------------------


async def test_memory_stream_path_echoes_and_closes() -> None:
    server_side, client_side = trio.testing.memory_stream_pair()
    request = Request("GET", "/", "", Headers())
    ws = TrioWebSocket(server_side, request, WebSocketConnection())
    assert ws._sock is None
    encoder = _frames.Encoder(client=True)
    decoder = _frames.Decoder(client=True)

    async def echo(ws: TrioWebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    pending: list[object] = []

    async def next_message() -> object:
        while not pending:
            pending.extend(decoder.feed(await client_side.receive_some(65536)))
        return pending.pop(0)

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ws.run, echo)
            await client_side.send_all(encoder.text("hello") + encoder.binary(b"\x00\x01"))
            assert await next_message() == "hello"
            assert await next_message() == b"\x00\x01"
            await client_side.send_all(encoder.close(1000, ""))
            close = await next_message()
            assert isinstance(close, _frames.Close)
            assert close.code == 1000
    assert ws.close_code == 1000


# -- try-write-first: the broadcast path writes from the calling task --------------------


@pytest.mark.usefixtures("quick_sweeper")
async def test_broadcast_frames_are_written_without_starting_a_writer() -> None:
    hub = Hub()
    with trio.fail_after(TIMEOUT):
        async with serving(hub_app(hub)) as (_, port):
            client, ws = await echoed_once(hub, port, b"hi")
            await wait_until_writer_retired(ws)
            encoder = _frames.Encoder()
            for n in range(3):
                frames = [encoder.text(f"part {n}"), encoder.binary(b"blob %d" % n)]
                assert ws.send_frames_nowait(frames)
                # written at once by this task: nothing queued, no writer task started
                assert ws._outbox == []
                assert ws._writer_state is WriterState.NONE
                # busy until the scheduler has gone round (what a volatile emit checks)
                assert ws.outbox_depth == 1
                # one direct write per batch: the next frame waits for the ticker's write
                ws.send_frame_nowait(encoder.text(f"single {n}"))
                assert len(ws._outbox) == 1
                assert ws.outbox_depth == 2
                assert ws._writer_state is WriterState.NONE  # still no writer
                assert await client.next() == f"part {n}"
                assert await client.next() == b"blob %d" % n
                assert await client.next() == f"single {n}"
                await trio.testing.wait_all_tasks_blocked()  # the scheduler went round
                assert ws.outbox_depth == 0
                assert ws._writer_state is WriterState.NONE
            # a normal send still brings a writer back, and the order holds
            await client.send(masked(TEXT, b"after"))
            assert await client.next() == "after"


async def test_broadcast_remainder_goes_to_the_writer_in_order() -> None:
    """A frame bigger than the socket takes at once: the kernel takes part of it directly,
    the rest is queued whole before what follows, and the writer finishes it."""
    hub = Hub()
    big = bytes(range(256)) * (4 << 12)  # 4 MiB
    with trio.fail_after(TIMEOUT):
        async with serving(hub_app(hub)) as (_, port):
            client, ws = await echoed_once(hub, port, b"hi")
            encoder = _frames.Encoder()
            assert ws.send_frames_nowait([encoder.binary(big)])
            assert ws.outbox_depth == 1  # the remainder, for the writer
            assert ws.send_frames_nowait([encoder.text("next")])  # queued behind it
            assert ws.outbox_depth == 2
            while not client.messages:
                data = await client.stream.receive_some(65536)
                assert data
                client._feed(data)
            assert client.messages.pop(0) == big
            assert await client.next() == "next"


# -- the fan-out: one Rust call writes a broadcast to every recipient -------------------


async def test_fan_out_writes_every_recipient_directly_and_in_order() -> None:
    hub = Hub()
    with trio.fail_after(TIMEOUT):
        async with serving(hub_app(hub)) as (_, port):
            pairs = [await echoed_once(hub, port, b"hi %d" % n) for n in range(4)]
            sockets = [ws for _, ws in pairs]
            await trio.testing.wait_all_tasks_blocked()
            encoder = _frames.Encoder()
            frames = [encoder.text("part"), encoder.binary(b"blob")]
            shell.send_frames_to_many(sockets, frames)
            # written by this call: nothing queued, and each is busy for this batch
            assert all(ws._outbox == [] and ws.outbox_depth == 1 for ws in sockets)
            shell.send_frames_to_many(sockets, [encoder.text("second")])
            assert all(len(ws._outbox) == 1 for ws in sockets)  # one direct write per batch
            for client, _ in pairs:
                assert [await client.next() for _ in range(3)] == ["part", b"blob", "second"]
            # a closing recipient is skipped
            await pairs[0][0].send(masked(TEXT, b"close please"))
            assert (await pairs[0][0].until_close())[1] == 4000
            shell.send_frames_to_many(sockets, [encoder.text("third")])
            for client, _ in pairs[1:]:
                assert await client.next() == "third"


def record_fan_out(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """Every call of the Rust fan-out from now on: ``("many", data)`` for ``write_many``,
    ``("each", datas)`` for ``write_each`` (the writes are made)."""
    calls: list[tuple[str, Any]] = []
    write_many, write_each = fanout._write_many, sending._write_each
    assert write_many is not None and write_each is not None

    def many(fds: list[int], data: bytes) -> list[tuple[int, int]]:
        calls.append(("many", data))
        return write_many(fds, data)

    def each(fds: list[int], datas: list[bytes]) -> list[tuple[int, int]]:
        calls.append(("each", list(datas)))
        return write_each(fds, datas)

    monkeypatch.setattr(fanout, "_write_many", many)
    monkeypatch.setattr(sending, "_write_each", each)
    return calls


async def idle_connections(
    hub: Hub, port: int, count: int
) -> tuple[list[RawClient], list[TrioWebSocket]]:
    """``count`` echo connections, each past one round trip, with nothing in flight."""
    pairs = [await echoed_once(hub, port, b"hi %d" % n) for n in range(count)]
    await trio.testing.wait_all_tasks_blocked()
    return [client for client, _ in pairs], [ws for _, ws in pairs]


async def test_a_reactor_step_writes_each_connection_once_at_its_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """During a reactor step what is sent to connections waits for the step's end, which
    writes each connection's queue in one write, all of them in one ``write_each`` call:
    two broadcasts and a send to one of the recipients, in order."""
    calls = record_fan_out(monkeypatch)
    hub = Hub()
    with trio.fail_after(TIMEOUT):
        async with serving(hub_app(hub)) as (_, port):
            clients, sockets = await idle_connections(hub, port, 3)
            encoder = _frames.Encoder()
            one, two, only = encoder.text("one"), encoder.text("two"), encoder.text("only")
            fanout.step_started()
            shell.send_frames_to_many(sockets, [one])
            shell.send_frames_to_many(sockets, [two])
            sockets[0].send_frame_nowait(only)
            assert calls == [] and [len(ws._outbox) for ws in sockets] == [3, 2, 2]
            fanout.step_ended()
            assert calls == [("each", [one + two + only, one + two, one + two])]
            # written: nothing queued, and each is busy for this batch
            assert all(ws._outbox == [] and ws.outbox_depth == 1 for ws in sockets)
            for n, client in enumerate(clients):
                expected = ["one", "two", "only"] if n == 0 else ["one", "two"]
                assert [await client.next() for _ in expected] == expected


async def test_a_reactor_steps_one_broadcast_is_written_whole_unless_more_follows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A step whose only send is one broadcast keeps it whole and writes it at its end as
    outside steps (``write_many``, one frame for all); a send after it in the step queues
    it on each recipient first, so it still goes before what follows."""
    calls = record_fan_out(monkeypatch)
    hub = Hub()
    with trio.fail_after(TIMEOUT):
        async with serving(hub_app(hub)) as (_, port):
            clients, sockets = await idle_connections(hub, port, 3)
            one, two = _frames.Encoder().text("one"), _frames.Encoder().text("two")
            fanout.step_started()
            shell.send_frames_to_many(sockets, [one])
            assert all(ws._outbox == [] for ws in sockets)  # kept whole
            fanout.step_ended()
            assert calls == [("many", one)]
            for client in clients:
                assert await client.next() == "one"
            await trio.testing.wait_all_tasks_blocked()
            calls.clear()
            fanout.step_started()
            shell.send_frames_to_many(sockets, [two])
            sockets[1].send_nowait("after")
            assert [len(ws._outbox) for ws in sockets] == [1, 2, 1]
            fanout.step_ended()
            assert len(calls) == 1 and calls[0][0] == "each"
            for n, client in enumerate(clients):
                expected = ["two", "after"] if n == 1 else ["two"]
                assert [await client.next() for _ in expected] == expected


async def test_a_queue_whose_direct_write_takes_nothing_goes_to_the_writer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A direct write of a connection's whole queue that the kernel takes nothing of (a
    full socket says EAGAIN: here made to say so once), at the end of a reactor step and
    at the end of a reader's batch: the queue is kept, in order, and the writer writes it."""
    hub = Hub()
    with trio.fail_after(TIMEOUT):
        async with serving(hub_app(hub)) as (_, port):
            clients, sockets = await idle_connections(hub, port, 2)
            full = sockets[1]._sock.fileno()  # type: ignore[union-attr]
            write_each, os_write = sending._write_each, sending._os_write
            assert write_each is not None

            def each(fds: list[int], datas: list[bytes]) -> list[tuple[int, int]]:
                monkeypatch.setattr(sending, "_write_each", write_each)  # (once)
                index = fds.index(full)
                short = write_each(
                    fds[:index] + fds[index + 1 :], datas[:index] + datas[index + 1 :]
                )
                return [(i if i < index else i + 1, n) for i, n in short] + [(index, 0)]

            def write(fd: int, data: bytes | memoryview) -> int:
                if fd == full:
                    monkeypatch.setattr(sending, "_os_write", os_write)  # (once)
                    raise BlockingIOError
                return os_write(fd, data)

            monkeypatch.setattr(sending, "_write_each", each)
            encoder = _frames.Encoder()
            fanout.step_started()
            shell.send_frames_to_many(sockets, [encoder.text("one")])
            shell.send_frames_to_many(sockets, [encoder.text("two")])
            fanout.step_ended()
            assert sockets[0]._outbox == [] and sockets[1]._outbox != []
            for client in clients:
                assert [await client.next() for _ in range(2)] == ["one", "two"]
            await trio.testing.wait_all_tasks_blocked()
            monkeypatch.setattr(sending, "_os_write", write)
            ws = sockets[1]
            ws._corked = True  # (as during its reader's batch)
            ws.send_nowait("three")
            ws.send_nowait("four")
            ws._uncork()
            assert ws._outbox != []
            assert [await clients[1].next() for _ in range(2)] == ["three", "four"]


async def test_fan_out_to_a_recipient_that_does_not_read_loses_nothing() -> None:
    """One recipient stops reading: its socket fills, the write to it comes up short (part
    of a frame, or nothing), the rest is queued in order for its writer; the others get
    every frame directly."""
    hub = Hub()
    chunk = bytes(range(256)) * 256  # 64 KiB
    count = 48  # 3 MiB in all: more than a loopback socket takes while nobody reads
    with trio.fail_after(TIMEOUT):
        async with serving(hub_app(hub)) as (_, port):
            fast, fast_ws = await echoed_once(hub, port, b"fast")
            slow, slow_ws = await echoed_once(hub, port, b"slow")
            received: list[bytes] = []

            async def read_fast() -> None:
                for _ in range(count):
                    message = await fast.next()
                    assert isinstance(message, bytes)
                    received.append(message)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_fast)
                encoder = _frames.Encoder()
                came_up_short = False
                for n in range(count):
                    frame = encoder.binary(n.to_bytes(2, "big") + chunk)
                    shell.send_frames_to_many([fast_ws, slow_ws], [frame])
                    came_up_short = came_up_short or bool(slow_ws._outbox)
                    await trio.lowlevel.checkpoint()  # the fast reader and the writers run
            assert came_up_short
            assert [m[:2] for m in received] == [n.to_bytes(2, "big") for n in range(count)]
            assert not slow_ws.closed  # (within the outbox limits: no slow-consumer close)
            for n in range(count):
                message = await slow.next()
                assert isinstance(message, bytes)
                assert message[:2] == n.to_bytes(2, "big") and message[2:] == chunk

"""WebSocket on the HTTP server, against real clients nobody here wrote: ``websockets``
(sync client in a thread), ``trio-websocket`` (native Trio), and raw sockets driven by
``wsproto`` (handshake) plus hand-made frames for protocol violations."""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import h11
import pytest
import trio
import trio_websocket
import websockets.exceptions
from helpers.ws_client import BINARY, CLOSE, TEXT, RawClient, frame, masked
from websockets.sync.client import connect

from pyserver.errors import ConnectionClosed
from pyserver.http import Request, Response, WebSocket
from pyserver.trio.http.app import App
from pyserver.ws import broadcast

TIMEOUT = 20


@asynccontextmanager
async def serving(app: App) -> AsyncIterator[int]:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(app.serve, "127.0.0.1", 0)
        yield listeners[0].socket.getsockname()[1]
        nursery.cancel_scope.cancel()


def echo_app(**options: Any) -> App:
    app = App(**options)

    @app.websocket("/echo")
    async def echo(ws: WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    return app


async def in_thread(fn: Callable[[], Any]) -> Any:
    return await trio.to_thread.run_sync(fn)


# -- echo ------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", [False, True])
async def test_websockets_client_echo(compression: bool) -> None:
    with trio.fail_after(TIMEOUT):
        async with serving(echo_app(compression=compression)) as port:

            def client() -> tuple[list[Any], str | None]:
                with connect(f"ws://127.0.0.1:{port}/echo", max_size=1 << 22) as ws:
                    out = []
                    for message in ["hello", b"\x00\xffbinary", "é" * 3000, b"z" * 300_000]:
                        ws.send(message)
                        out.append(ws.recv())
                    return out, ws.response.headers.get("Sec-WebSocket-Extensions")

            got, extensions = await in_thread(client)
    assert got == ["hello", b"\x00\xffbinary", "é" * 3000, b"z" * 300_000]
    if compression:
        assert extensions is not None
        assert "permessage-deflate" in extensions
    else:
        assert extensions is None


async def test_trio_websocket_echo_and_ping() -> None:
    with trio.fail_after(TIMEOUT):
        async with serving(echo_app()) as port:
            url = f"ws://127.0.0.1:{port}/echo"
            async with trio_websocket.open_websocket_url(url, max_message_size=1 << 22) as ws:
                await ws.send_message("text")
                assert await ws.get_message() == "text"
                await ws.send_message(b"\x01\x02")
                assert await ws.get_message() == b"\x01\x02"
                big = "x" * 700_000
                await ws.send_message(big)
                assert await ws.get_message() == big
                await ws.ping(b"are you there")  # returns once the pong arrives
                for i in range(50):
                    await ws.send_message(f"m{i}")
                assert [await ws.get_message() for _ in range(50)] == [f"m{i}" for i in range(50)]


async def test_handshake_and_first_frame_in_one_packet() -> None:
    """Bytes after the request (h11's trailing_data) reach the frame decoder first."""
    with trio.fail_after(TIMEOUT):
        async with serving(echo_app()) as port:
            first = masked(TEXT, b"early") + masked(BINARY, b"bird")
            client = await RawClient.open(port, first_frames=first)
            assert await client.next() == "early"
            assert await client.next() == b"bird"
            await client.send(masked(CLOSE, b"\x03\xe8"))
            close = await client.until_close()
            assert close[1] == 1000
            assert await client.stream.receive_some(10) == b""  # the server closes TCP


# -- protocol errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (frame(TEXT, b"unmasked", mask=None), 1002),
        (masked(TEXT, b"\xc3\x28 bad utf-8"), 1007),
        (masked(BINARY, b"x" * 2000), 1009),
        (masked(TEXT, b"rsv", rsv2=True), 1002),
    ],
    ids=["unmasked", "bad-utf8", "too-big", "rsv2"],
)
async def test_protocol_errors_close_with_code(
    frame: bytes, code: int, caplog: pytest.LogCaptureFixture
) -> None:
    with trio.fail_after(TIMEOUT):
        async with serving(echo_app(ws_max_message_size=1000)) as port:
            client = await RawClient.open(port)
            await client.send(masked(TEXT, b"fine"))
            assert await client.next() == "fine"
            await client.send(frame)
            close = await client.until_close()
    assert close[1] == code
    records = [r for r in caplog.records if r.name == "pyserver.ws"]
    assert len(records) == 1
    assert str(code) in records[0].getMessage()


async def test_websockets_client_sees_1009() -> None:
    with trio.fail_after(TIMEOUT):
        async with serving(echo_app(ws_max_message_size=1000)) as port:

            def client() -> int | None:
                with connect(f"ws://127.0.0.1:{port}/echo") as ws:
                    ws.send("y" * 5000)
                    with pytest.raises(websockets.exceptions.ConnectionClosedError) as info:
                        ws.recv()
                    assert info.value.rcvd is not None
                    return info.value.rcvd.code

            assert await in_thread(client) == 1009


# -- closing -----------------------------------------------------------------------------


async def test_server_close_code_and_handler_error() -> None:
    app = App()

    @app.websocket("/bye")
    async def bye(ws: WebSocket) -> None:
        await ws.send("leaving")
        await ws.close(4000, "bye now")

    @app.websocket("/boom")
    async def boom(ws: WebSocket) -> None:
        await ws.receive()
        raise RuntimeError("handler bug")

    with trio.fail_after(TIMEOUT):
        async with serving(app) as port:
            async with trio_websocket.open_websocket_url(f"ws://127.0.0.1:{port}/bye") as ws:
                assert await ws.get_message() == "leaving"
                with pytest.raises(trio_websocket.ConnectionClosed) as info:
                    await ws.get_message()
                assert info.value.reason.code == 4000
                assert info.value.reason.reason == "bye now"
            async with trio_websocket.open_websocket_url(f"ws://127.0.0.1:{port}/boom") as ws:
                await ws.send_message("go")
                with pytest.raises(trio_websocket.ConnectionClosed) as info:
                    await ws.get_message()
                assert info.value.reason.code == 1011


async def test_client_close_is_echoed_and_iteration_ends() -> None:
    ended = trio.Event()
    codes: list[int | None] = []
    app = App()

    @app.websocket("/ws")
    async def handler(ws: Any) -> None:
        async for _ in ws:
            pass
        codes.append(ws.close_code)
        ended.set()

    with trio.fail_after(TIMEOUT):
        async with serving(app) as port:
            client = await RawClient.open(port, "/ws")
            await client.send(masked(CLOSE, b"\x0f\xa1going"))  # 4001
            close = await client.until_close()
            assert close[1] == 4001
            await ended.wait()
    assert codes == [4001]


async def test_unanswered_close_is_aborted() -> None:
    app = App(ws_close_timeout=0.2)

    @app.websocket("/ws")
    async def handler(ws: WebSocket) -> None:
        await ws.close(1001, "going away")

    with trio.fail_after(TIMEOUT):
        async with serving(app) as port:
            client = await RawClient.open(port, "/ws")
            close = await client.until_close()
            assert close[1] == 1001
            # we never answer: the server drops the connection after its close timeout
            assert await client.stream.receive_some(10) == b""


async def test_server_pings_and_drops_silent_peer() -> None:
    app = echo_app(ws_ping_interval=0.05, ws_ping_timeout=0.2)
    with trio.fail_after(TIMEOUT):
        async with serving(app) as port:
            # trio-websocket answers pings: the connection stays up across several intervals
            async with trio_websocket.open_websocket_url(f"ws://127.0.0.1:{port}/echo") as ws:
                for i in range(5):
                    await trio.sleep(0.05)
                    await ws.send_message(str(i))
                    assert await ws.get_message() == str(i)
            # a raw client that never answers pings is closed with 1011
            client = await RawClient.open(port)
            first = await client.next()
            assert first[0] == "ping"
            close = await client.until_close()
            assert close[1] == 1011


# -- request data, subprotocols, origins ---------------------------------------------------


async def test_request_details_and_subprotocol() -> None:
    seen: list[Any] = []
    app = App()

    @app.websocket("/chat", subprotocols=["chat.v2", "chat.v1"])
    async def chat(ws: WebSocket) -> None:
        seen.append((ws.request.path, ws.request.query, ws.subprotocol, ws.remote_address[0]))
        await ws.send(ws.subprotocol or "none")

    with trio.fail_after(TIMEOUT):
        async with serving(app) as port:

            def client() -> tuple[str | None, Any]:
                url = f"ws://127.0.0.1:{port}/chat?room=7"
                with connect(url, subprotocols=["chat.v1", "chat.v2"]) as ws:  # type: ignore[list-item]
                    return ws.subprotocol, ws.recv()

            assert await in_thread(client) == ("chat.v2", "chat.v2")
    assert seen == [("/chat", {"room": "7"}, "chat.v2", "127.0.0.1")]


@pytest.mark.parametrize(
    ("allowed", "origin", "ok"),
    [
        (None, "http://evil.example", False),
        (None, "same", True),
        (["http://app.example"], "http://app.example", True),
        (["http://app.example"], "http://evil.example", False),
        (["*"], "http://evil.example", True),
    ],
)
async def test_origin_policy(allowed: list[str] | None, origin: str, ok: bool) -> None:
    with trio.fail_after(TIMEOUT):
        async with serving(echo_app(allowed_origins=allowed)) as port:
            wanted = f"http://127.0.0.1:{port}" if origin == "same" else origin

            def client() -> int:
                try:
                    with connect(f"ws://127.0.0.1:{port}/echo", origin=wanted) as ws:  # type: ignore[arg-type]
                        ws.send("hi")
                        assert ws.recv() == "hi"
                        return 101
                except websockets.exceptions.InvalidStatus as exc:
                    return exc.response.status_code

            assert await in_thread(client) == (101 if ok else 403)


# -- broadcast and slow consumers -----------------------------------------------------------


class Hub:
    def __init__(self, want: int) -> None:
        self.members: list[WebSocket] = []
        self.want = want
        self.ready = trio.Event()

    async def handler(self, ws: WebSocket) -> None:
        self.members.append(ws)
        if len(self.members) == self.want:
            self.ready.set()
        async for _ in ws:
            pass


async def test_broadcast_reaches_all() -> None:
    hub = Hub(4)
    app = App(compression=True)
    app.add_websocket("/hub", hub.handler)
    with trio.fail_after(TIMEOUT):
        async with serving(app) as port:
            url = f"ws://127.0.0.1:{port}/hub"
            async with (
                trio_websocket.open_websocket_url(url) as a,
                trio_websocket.open_websocket_url(url) as b,
                trio_websocket.open_websocket_url(url) as c,
            ):
                results: list[Any] = []
                # a fourth client with permessage-deflate (websockets offers it by default)

                def deflate_client() -> list[Any]:
                    with connect(url) as ws:
                        return [ws.recv(), ws.recv()]

                async def run_deflate_client() -> None:
                    results.append(await in_thread(deflate_client))

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(run_deflate_client)
                    await hub.ready.wait()
                    big = "shared " * 100
                    assert broadcast(hub.members, "hello all") == 4
                    assert broadcast(hub.members, big) == 4
                    for peer in (a, b, c):
                        assert await peer.get_message() == "hello all"
                        assert await peer.get_message() == big
                assert results == [["hello all", big]]


async def test_slow_consumer_dropped_others_keep_receiving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "pyserver.ws")
    hub = Hub(2)
    app = App(ws_max_outbox=64, ws_max_outbox_bytes=256 * 1024)
    app.add_websocket("/hub", hub.handler)
    chunk = b"p" * 65536
    count = 400  # 26 MB: more than any loopback socket buffer
    with trio.fail_after(TIMEOUT):
        async with serving(app) as port:
            stalled = await RawClient.open(port, "/hub")  # never reads
            url = f"ws://127.0.0.1:{port}/hub"
            async with trio_websocket.open_websocket_url(url, max_message_size=1 << 20) as good:
                await hub.ready.wait()
                slow_ws = hub.members[0]
                received = 0
                progress = trio.lowlevel.ParkingLot()

                async def reader() -> None:
                    nonlocal received
                    while received < count:
                        assert await good.get_message() == chunk
                        received += 1
                        progress.unpark_all()

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(reader)
                    for i in range(count):
                        # pace on the good reader only: it stays within 2 messages
                        while received < i - 2:
                            await progress.park()
                        broadcast(hub.members, chunk)
                assert received == count
                assert slow_ws.closed
            await stalled.stream.aclose()
    assert any("slow consumer" in r.getMessage() for r in caplog.records)


# -- mounts --------------------------------------------------------------------------------


class FakeMount:
    def __init__(self) -> None:
        self.sockets: list[WebSocket] = []

    async def handle_http(self, request: Request) -> Response:
        return Response(200, [("Content-Type", "text/plain")], f"mount {request.path}".encode())

    def check_websocket(self, request: Request) -> Response | None:
        if request.query.get("sid") == "bad":
            return Response(400, [], b"unknown sid")
        return None

    async def handle_websocket(self, ws: WebSocket) -> None:
        self.sockets.append(ws)
        async for message in ws:
            ws.send_nowait(f"mount got {message!r}")


async def test_mount_websocket_check_and_accept() -> None:
    mount = FakeMount()
    app = App()
    app.mount("/engine.io/", mount)
    with trio.fail_after(TIMEOUT):
        async with serving(app) as port:
            base = f"ws://127.0.0.1:{port}/engine.io/"
            async with trio_websocket.open_websocket_url(base + "?sid=good") as ws:
                await ws.send_message("x")
                assert await ws.get_message() == "mount got 'x'"
            with pytest.raises(trio_websocket.HandshakeError):
                async with trio_websocket.open_websocket_url(base + "?sid=bad"):
                    pass
    assert len(mount.sockets) == 1


# -- backpressure --------------------------------------------------------------------------


async def test_send_waits_for_a_slow_reader_instead_of_dropping() -> None:
    chunk = b"s" * 65536
    count = 300  # ~20 MB: more than the socket buffers, so ``send`` has to wait
    sent: list[int] = []
    app = App(ws_max_outbox=8, ws_max_outbox_bytes=256 * 1024)

    @app.websocket("/flood")
    async def flood(ws: WebSocket) -> None:
        for i in range(count):
            await ws.send(chunk)
            sent.append(i)
        await ws.send("done")

    with trio.fail_after(TIMEOUT):
        async with serving(app) as port:
            client = await RawClient.open(port, "/flood")
            # don't read until the handler is stuck in ``send``
            while True:
                before = len(sent)
                await trio.sleep(0.05)
                if len(sent) == before:
                    break
            assert len(sent) < count
            got = [await client.next() for _ in range(count + 1)]
    assert got[-1] == "done"
    assert all(message == chunk for message in got[:-1])


async def test_reader_pauses_when_the_inbox_is_full() -> None:
    go = trio.Event()
    received: list[Any] = []
    app = App(ws_max_inbox=4)

    @app.websocket("/lazy")
    async def lazy(ws: WebSocket) -> None:
        await go.wait()
        async for message in ws:
            received.append(message)
            if message == "last":
                await ws.send(str(len(received)))

    with trio.fail_after(TIMEOUT):
        async with serving(app) as port:
            client = await RawClient.open(port, "/lazy")
            payload = b"".join(masked(TEXT, f"m{i}".encode()) for i in range(500))
            await client.send(payload + masked(TEXT, b"last"))
            await trio.sleep(0.05)
            go.set()
            assert await client.next() == "501"
    assert received == [f"m{i}" for i in range(500)] + ["last"]


async def test_receive_and_send_after_close_raise() -> None:
    outcome: list[str] = []
    done = trio.Event()
    app = App()

    @app.websocket("/ws")
    async def handler(ws: WebSocket) -> None:
        assert await ws.receive() == "one"
        with pytest.raises(ConnectionClosed) as info:
            await ws.receive()
        outcome.append(f"receive {info.value.code}")
        with pytest.raises(ConnectionClosed):
            ws.send_nowait("late")
        with pytest.raises(ConnectionClosed):
            await ws.send("late")
        outcome.append(f"closed {ws.closed}")
        done.set()

    with trio.fail_after(TIMEOUT):
        async with serving(app) as port:
            client = await RawClient.open(port, "/ws")
            await client.send(masked(TEXT, b"one") + masked(CLOSE, b"\x03\xe9"))  # 1001
            assert (await client.until_close())[1] == 1001
            await done.wait()
    assert outcome == ["receive 1001", "closed True"]


# -- refusals on the wire -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "status", "header"),
    [
        ({"Sec-WebSocket-Version": "8"}, 426, ("sec-websocket-version", "13")),
        ({"Sec-WebSocket-Key": "short"}, 400, None),
        ({"Origin": "http://elsewhere.example"}, 403, None),
        ({"Upgrade": "h2c"}, 426, ("upgrade", "websocket")),
    ],
)
async def test_handshake_refusals_on_the_wire(
    changes: dict[str, str], status: int, header: tuple[str, str] | None
) -> None:
    with trio.fail_after(TIMEOUT):
        async with serving(echo_app()) as port:
            headers = {
                "Host": f"127.0.0.1:{port}",
                "Upgrade": "websocket",
                "Connection": "Upgrade",
                "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
                "Sec-WebSocket-Version": "13",
                **changes,
            }
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                http = h11.Connection(h11.CLIENT)
                request = h11.Request(method="GET", target="/echo", headers=list(headers.items()))
                await stream.send_all(
                    (http.send(request) or b"") + (http.send(h11.EndOfMessage()) or b"")
                )
                while True:
                    event = http.next_event()
                    if event is h11.NEED_DATA:
                        http.receive_data(await stream.receive_some(65536))
                        continue
                    break
    assert isinstance(event, h11.Response)
    assert event.status_code == status
    if header is not None:
        got = {(k.decode().lower(), v.decode()) for k, v in event.headers}
        assert header in got


async def test_peer_still_sending_after_handler_returns() -> None:
    """Messages arriving after the handler is done are dropped, so the peer's Close is
    still read (the reader is never stuck behind a full inbox nobody reads)."""
    app = App(ws_max_inbox=2, ws_close_timeout=30)

    @app.websocket("/short")
    async def short(ws: WebSocket) -> None:
        await ws.send("bye")

    with trio.fail_after(TIMEOUT):
        async with serving(app) as port:
            client = await RawClient.open(port, "/short")
            assert await client.next() == "bye"
            close = await client.until_close()
            assert close[1] == 1000
            for _ in range(20):
                await client.send(b"".join(masked(TEXT, b"more") for _ in range(10)))
                await trio.sleep(0.01)
            await client.send(masked(CLOSE, b"\x03\xe8"))
            assert await client.stream.receive_some(10) == b""


async def test_server_shutdown_says_going_away() -> None:
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as server:
            listeners = await server.start(echo_app().serve, "127.0.0.1", 0)
            port = listeners[0].socket.getsockname()[1]
            client = await RawClient.open(port)
            await client.send(masked(TEXT, b"up"))
            assert await client.next() == "up"
            server.cancel_scope.cancel()
        close = await client.until_close()
    assert close[1] == 1001


async def test_oversize_close_survives_a_peer_still_sending() -> None:
    """The server refuses a 4 MiB message on its header while the peer is still sending it;
    the 1009 Close must reach the peer (lingering close: half-close, drain, then close)
    instead of being destroyed by a TCP reset. Three times, so luck does not pass it."""
    big = b"n" * (4 << 20)
    with trio.fail_after(TIMEOUT):
        async with serving(echo_app()) as port:
            for _ in range(3):
                client = await RawClient.open(port)
                async with trio.open_nursery() as nursery:

                    async def push(client: RawClient = client) -> None:
                        try:
                            await client.send(masked(BINARY, big))
                        except trio.BrokenResourceError:
                            pass

                    nursery.start_soon(push)
                    close = await client.until_close()
                    assert close[1] == 1009
                    nursery.cancel_scope.cancel()
                await client.stream.aclose()

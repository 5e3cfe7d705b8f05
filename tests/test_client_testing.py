"""pyserver.testing, as the README's "Testing your app" uses it, and the client's bounds and
endings seen from pyserver's own Server (in the test's Trio run)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

import pyserver
from pyserver import App, Server, SocketDisconnected, testing
from pyserver.trio.client import BufferFull


def build_app() -> Server:
    """The README's example app."""
    sio = Server()
    sio.left: dict[str, str] = {}  # type: ignore[attr-defined]

    @sio.on("connection")
    async def connection(socket: Any) -> None:
        socket.emit("welcome", {"motd": "hi"})

    @sio.on("add")
    async def add(socket: Any, a: int, b: int) -> int:
        return a + b

    @sio.on("chat message")
    async def chat(socket: Any, msg: str) -> None:
        socket.broadcast.emit("chat message", msg)

    @sio.on("flood")
    async def flood(socket: Any, n: int) -> int:
        for i in range(n):
            socket.emit("tick", i)
        return n

    @sio.on("slow")
    async def slow(socket: Any) -> None:
        await trio.sleep_forever()

    @sio.on("disconnect")
    async def disconnect(socket: Any, reason: str) -> None:
        sio.left[socket.id] = reason  # type: ignore[attr-defined]

    return sio


@pytest.fixture
async def sio() -> Server:
    return build_app()


@pytest.fixture
async def url(sio: Server) -> AsyncIterator[str]:
    async with testing.serve(sio) as url:
        yield url


async def test_welcome_and_ack(url: str) -> None:
    async with testing.connect(url) as socket:
        assert await testing.wait_for_event(socket, "welcome") == [{"motd": "hi"}]
        assert await socket.emit_with_ack("add", 1, 2) == 3


async def test_chat_between_two_clients(url: str) -> None:
    async with testing.connect(url) as alice, testing.connect(url) as bob:
        alice.emit("chat message", "hi bob")
        assert await testing.wait_for_event(bob, "chat message") == ["hi bob"]


async def test_wait_for_event_times_out(url: str) -> None:
    async with testing.connect(url) as socket:
        with pytest.raises(TimeoutError):
            await testing.wait_for_event(socket, "never", timeout=0.2)
        # the waiter is gone: a later event of that name is kept, not lost
        assert await socket.emit_with_ack("add", 2, 2) == 4


async def test_serve_an_app() -> None:
    app = App()

    @app.websocket("/echo")
    async def echo(ws: Any) -> None:
        async for message in ws:
            await ws.send(message)

    async with testing.serve(app) as url:
        assert url.startswith("http://127.0.0.1:")
        # pyserver.connect against an App with no Socket.IO: a clear error, no hang
        with trio.fail_after(10), pytest.raises(pyserver.ConnectionLost):
            async with testing.connect(url):
                pass


async def test_leaving_the_async_with_disconnects(sio: Server, url: str) -> None:
    async with testing.connect(url, transports=["websocket"]) as socket:
        sid = socket.id
    with trio.fail_after(5):
        while sid not in sio.left:  # type: ignore[attr-defined]  # noqa: ASYNC110
            await trio.sleep(0.01)
    assert sio.left[sid] == "client namespace disconnect"  # type: ignore[attr-defined]


async def test_kept_events_are_bounded_dropping_the_oldest(url: str) -> None:
    async with testing.connect(url, max_queued_events=50) as socket:
        assert await socket.emit_with_ack("flood", 200) == 200
        # nobody consumed: welcome + 200 ticks kept at most 50, the newest
        assert socket.dropped_events == 151
        got = []
        async for event in socket:
            got.append(event.args[0])
            if event.args[0] == 199:
                break
        assert got == list(range(150, 200))


async def test_awaited_ack_fails_when_the_connection_drops(url: str) -> None:
    async with testing.connect(url, transports=["websocket"], reconnection=True) as socket:
        async with trio.open_nursery() as nursery:
            outcome: list[BaseException] = []

            async def ask() -> None:
                try:
                    await socket.emit_with_ack("slow")
                except SocketDisconnected as exc:
                    outcome.append(exc)

            nursery.start_soon(ask)
            await trio.sleep(0.05)
            await testing.drop_connection(socket)
        assert len(outcome) == 1 and isinstance(outcome[0], SocketDisconnected)


async def test_emit_buffer_while_disconnected_is_bounded(url: str) -> None:
    async with testing.connect(
        url,
        transports=["websocket"],
        reconnection=True,
        reconnection_delay=30,
        reconnection_delay_max=30,
        max_buffered_emits=3,
    ) as socket:
        await testing.drop_connection(socket)
        with trio.fail_after(5):
            while socket.connected:  # noqa: ASYNC110
                await trio.sleep(0.01)
        for i in range(3):
            socket.emit("add", i, i)
        with pytest.raises(BufferFull):
            socket.emit("add", 9, 9)
        assert socket.volatile.emit("add", 1, 1) is False


async def test_a_refusal_on_reconnection_ends_the_client() -> None:
    """The server comes back refusing the client's auth: no connect() call is there to raise
    it, so it comes out of the async with."""
    first = build_app()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            scope = trio.CancelScope()

            async def serve(app: Server, port: int, task_status: Any) -> None:
                with scope:
                    async with testing.serve(app, port=port) as url:
                        task_status.started(url)
                        await trio.sleep_forever()

            url = await nursery.start(serve, first, 0)
            port = int(url.rsplit(":", 1)[1])
            with pytest.raises(pyserver.ConnectionRefused) as caught:
                async with testing.connect(
                    url, transports=["websocket"], reconnection=True, reconnection_delay=0.05
                ) as socket:
                    assert await socket.emit_with_ack("add", 1, 1) == 2
                    scope.cancel()
                    while socket.connected:  # noqa: ASYNC110
                        await trio.sleep(0.01)
                    refusing = build_app()

                    @refusing.use
                    async def refuse(socket: Any) -> None:
                        raise pyserver.ConnectionRefused("go away", data={"code": 7})

                    scope = trio.CancelScope()
                    await nursery.start(serve, refusing, port)
                    await trio.sleep_forever()
            assert caught.value.message == "go away" and caught.value.data == {"code": 7}
            scope.cancel()


@pytest.mark.parametrize("transports", [["polling", "websocket"], ["websocket"]])
async def test_https_and_wss(transports: list[str]) -> None:
    """TLS: https polling, the upgrade to wss, and wss alone (the writer task writes: no
    direct write on TLS)."""
    import ssl

    import trustme

    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    sio = build_app()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                lambda task_status: sio.serve(
                    "127.0.0.1", 0, ssl_context=server_context, task_status=task_status
                )
            )
            port = listeners[0].transport_listener.socket.getsockname()[1]
            async with testing.connect(
                f"https://localhost:{port}", transports=transports, ssl_context=client_context
            ) as socket:
                assert await testing.wait_for_event(socket, "welcome") == [{"motd": "hi"}]
                assert await socket.emit_with_ack("add", 20, 22) == 42
                with trio.fail_after(5):
                    while socket.transport != "websocket":  # noqa: ASYNC110
                        await trio.sleep(0.01)
                assert await socket.emit_with_ack("add", 1, b"x"[0]) == 121
            nursery.cancel_scope.cancel()

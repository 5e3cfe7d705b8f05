"""pyserver's Trio client against servers that misbehave: each ends with a clear error
(``pyserver.ConnectionLost`` with Engine.IO's reason, or ``ConnectionRefused``), never a
hang. The servers are pyserver's raw WebSocket ``App`` (for full control over what is sent)
and plain TCP listeners; every test is bounded with ``fail_after``."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio

from pyserver import App, ConnectionLost, FrameError, WebSocket, connect, testing

OPEN = "0" + json.dumps(
    {"sid": "s1", "upgrades": [], "pingInterval": 200, "pingTimeout": 200, "maxPayload": 100000}
)
NO_RECONNECT = {"transports": ["websocket"], "reconnection": False, "timeout": 5.0}


def engine_app(behaviour: Callable[[WebSocket], Awaitable[None]]) -> App:
    app = App(ws_ping_interval=None)
    app.websocket("/socket.io/")(behaviour)
    return app


async def connected_then(ws: WebSocket, then: Callable[[WebSocket], Awaitable[None]]) -> None:
    """A server that opens the session and accepts the CONNECT, then does ``then``."""
    await ws.send(OPEN)
    assert await ws.receive() == "40"
    await ws.send('40{"sid":"abc"}')
    await then(ws)


async def run_client(url: str, body: Callable[[Any], Awaitable[None]] | None = None) -> None:
    async with connect(url, **NO_RECONNECT) as socket:
        if body is not None:
            await body(socket)
        await trio.sleep_forever()


async def test_junk_after_the_handshake_is_a_parse_error() -> None:
    async def junk(ws: WebSocket) -> None:
        await ws.send("x-not-engine-io")
        await trio.sleep_forever()

    app = engine_app(lambda ws: connected_then(ws, junk))
    with trio.fail_after(10):
        async with testing.serve(app) as url:
            with pytest.raises(ConnectionLost) as caught:
                await run_client(url)
    assert caught.value.reason == "parse error"


async def test_junk_instead_of_the_open_packet() -> None:
    async def junk(ws: WebSocket) -> None:
        await ws.send('0{"no sid":1}')
        await trio.sleep_forever()

    with trio.fail_after(10):
        async with testing.serve(engine_app(junk)) as url:
            with pytest.raises(ConnectionLost) as caught:
                await run_client(url)
    assert caught.value.reason == "parse error"
    assert "sid" in str(caught.value)


async def test_a_server_that_stops_pinging() -> None:
    async def silent(ws: WebSocket) -> None:
        await trio.sleep_forever()

    app = engine_app(lambda ws: connected_then(ws, silent))
    with trio.fail_after(10):
        async with testing.serve(app) as url:
            with pytest.raises(ConnectionLost) as caught:
                await run_client(url)
    assert caught.value.reason == "ping timeout"


async def test_pings_are_answered_and_keep_it_alive() -> None:
    pongs: list[str] = []

    async def ping_twice_then_close(ws: WebSocket) -> None:
        for _ in range(3):
            await trio.sleep(0.1)
            await ws.send("2")
            pongs.append(await ws.receive())  # type: ignore[arg-type]
        await ws.send("1")  # the server closes the session

    app = engine_app(lambda ws: connected_then(ws, ping_twice_then_close))
    with trio.fail_after(10):
        async with testing.serve(app) as url:
            with pytest.raises(ConnectionLost) as caught:
                await run_client(url)
    # 0.3 s of pings kept it alive past the 0.4 s window; then a close, not a ping timeout
    assert pongs == ["3", "3", "3"]
    assert caught.value.reason == "transport close"


async def test_close_in_the_middle_of_the_handshake() -> None:
    async def close_after_open(ws: WebSocket) -> None:
        await ws.send(OPEN)
        await ws.receive()  # the CONNECT, never answered
        await ws.close()

    with trio.fail_after(10):
        async with testing.serve(engine_app(close_after_open)) as url:
            with pytest.raises(ConnectionLost) as caught:
                await run_client(url)
    assert caught.value.reason == "transport close"


async def test_an_oversized_packet() -> None:
    async def huge(ws: WebSocket) -> None:
        await ws.send("42" + json.dumps(["big", "x" * 200_000]))
        await trio.sleep_forever()

    app = engine_app(lambda ws: connected_then(ws, huge))
    with trio.fail_after(10):
        async with testing.serve(app) as url:
            with pytest.raises(ConnectionLost) as caught:
                async with connect(url, max_message_bytes=100_000, **NO_RECONNECT):
                    await trio.sleep_forever()
    assert caught.value.reason == "parse error"
    assert isinstance(caught.value.__cause__, FrameError)
    assert caught.value.__cause__.close_code == 1009  # message too big


async def test_junk_over_http_polling() -> None:
    async def answer(stream: trio.SocketStream) -> None:
        await stream.receive_some(65536)
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\ngarbage")
        await stream.aclose()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(trio.serve_tcp, answer, 0)
            port = listeners[0].socket.getsockname()[1]
            with pytest.raises(ConnectionLost) as caught:
                async with connect(
                    f"http://127.0.0.1:{port}", transports=["polling"], reconnection=False
                ):
                    pass
            nursery.cancel_scope.cancel()
    assert caught.value.reason == "parse error"


async def test_a_server_that_closes_at_once() -> None:
    async def slam(stream: trio.SocketStream) -> None:
        await stream.aclose()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(trio.serve_tcp, slam, 0)
            port = listeners[0].socket.getsockname()[1]
            for transports in (["polling"], ["websocket"]):
                with pytest.raises(ConnectionLost) as caught:
                    async with connect(f"http://127.0.0.1:{port}", transports=transports):
                        pass
                assert caught.value.reason == "transport error", transports
            nursery.cancel_scope.cancel()


async def test_no_server_at_all() -> None:
    async with trio.open_nursery() as nursery:  # a port that was free a moment ago
        listeners = await nursery.start(trio.serve_tcp, lambda s: s.aclose(), 0)
        port = listeners[0].socket.getsockname()[1]
        nursery.cancel_scope.cancel()
    with trio.fail_after(10), pytest.raises(ConnectionLost) as caught:
        async with connect(f"http://127.0.0.1:{port}"):
            pass
    assert caught.value.reason == "transport error"
    assert isinstance(caught.value.__cause__, OSError)


async def test_a_handler_exception_comes_out_of_the_async_with() -> None:
    async def ask(ws: WebSocket) -> None:
        await ws.send('42["boom",1]')
        await trio.sleep_forever()

    app = engine_app(lambda ws: connected_then(ws, ask))

    async def body(socket: Any) -> None:
        @socket.on("boom")
        def boom(n: int) -> None:
            raise KeyError(f"handler failed on {n}")

    with trio.fail_after(10):
        async with testing.serve(app) as url:
            with pytest.raises(KeyError, match="handler failed on 1"):
                await run_client(url, body)

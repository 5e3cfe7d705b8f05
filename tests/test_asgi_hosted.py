"""A Starlette app served by pyserver's own HTTP server: ``Server(app=App(asgi=starlette))``
(pyserver.trio.asgi.hosted). Real peers in a thread of their own (requests,
websocket-client, python-socketio's client) against the server in its own ``trio.run``:
Starlette's routes (a streamed response, a request body), a body over the App's limit refused
413 before Starlette sees it, Starlette's WebSocket route, Socket.IO on the same port, and
Starlette's lifespan run around the serving."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import requests
import trio
from helpers.server_thread import ServerThread

from pyserver import App, Server

starlette = pytest.importorskip("starlette")

from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request as StarletteRequest  # noqa: E402
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse  # noqa: E402
from starlette.routing import Route, WebSocketRoute  # noqa: E402
from starlette.websockets import WebSocket as StarletteWebSocket  # noqa: E402

TRACE: list[str] = []
SEEN_BODIES: list[int] = []
CHUNKS: list[int] = []  # the sizes of the body parts /chunked's app receives, as they come


def build() -> Server:
    async def hello(request: StarletteRequest) -> PlainTextResponse:
        return PlainTextResponse("hello from starlette")

    release = trio.Event()

    async def stream(request: StarletteRequest) -> StreamingResponse:
        async def parts() -> AsyncIterator[bytes]:
            for i in range(3):
                yield f"part {i}\n".encode()

        return StreamingResponse(parts(), media_type="text/plain")

    async def held(request: StarletteRequest) -> StreamingResponse:
        async def parts() -> AsyncIterator[bytes]:
            yield b"first\n"
            await release.wait()  # until the client, having read the first part, says so
            yield b"second\n"

        return StreamingResponse(parts(), media_type="text/plain")

    async def let_go(request: StarletteRequest) -> PlainTextResponse:
        release.set()
        return PlainTextResponse("released")

    async def chunked(request: StarletteRequest) -> JSONResponse:
        async for part in request.stream():
            if part:
                CHUNKS.append(len(part))
        return JSONResponse(CHUNKS)

    async def chunks(request: StarletteRequest) -> JSONResponse:
        return JSONResponse(CHUNKS)

    async def upload(request: StarletteRequest) -> JSONResponse:
        body = await request.body()
        SEEN_BODIES.append(len(body))
        return JSONResponse({"length": len(body)})

    async def shout(request: StarletteRequest) -> JSONResponse:
        return JSONResponse({"sent_to": sio.emit("shout", await request.json())})

    async def echo_ws(ws: StarletteWebSocket) -> None:
        await ws.accept()
        while True:
            text = await ws.receive_text()
            if text == "bye":
                await ws.close(4000)
                return
            await ws.send_text("echo " + text)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        TRACE.append("startup")
        yield
        TRACE.append("shutdown")

    web = Starlette(
        routes=[
            Route("/hello", hello),
            Route("/stream", stream),
            Route("/held", held),
            Route("/let-go", let_go),
            Route("/chunked", chunked, methods=["POST"]),
            Route("/chunks", chunks),
            Route("/upload", upload, methods=["POST"]),
            Route("/shout", shout, methods=["POST"]),
            WebSocketRoute("/ws", echo_ws),
        ],
        lifespan=lifespan,
    )
    sio = Server(app=App(asgi=web, max_body_size=1000))

    @sio.on("connection")
    async def connection(socket: Any) -> None:
        socket.emit("init", socket.id)

    return sio


@pytest.fixture(scope="module")
def site() -> Iterator[ServerThread]:
    TRACE.clear()
    server = ServerThread(build)
    server.start()
    try:
        yield server
    finally:
        server.stop()
    assert TRACE == ["startup", "shutdown"]


def test_starlette_routes(site: ServerThread) -> None:
    assert TRACE == ["startup"]
    hello = requests.get(site.base_url + "/hello", timeout=10)
    assert (hello.status_code, hello.text) == (200, "hello from starlette")
    assert requests.get(site.base_url + "/stream", timeout=10).text == "part 0\npart 1\npart 2\n"
    assert requests.post(site.base_url + "/upload", data=b"x" * 900, timeout=10).json() == {
        "length": 900
    }
    assert requests.get(site.base_url + "/nope", timeout=10).status_code == 404  # Starlette's
    assert requests.get(site.base_url + "/healthz", timeout=10).json() == {"status": "ok"}


def test_body_over_the_limit_refused_before_the_app(site: ServerThread) -> None:
    SEEN_BODIES.clear()
    refused = requests.post(site.base_url + "/upload", data=b"x" * 5000, timeout=10)
    assert refused.status_code == 413
    assert SEEN_BODIES == []


def test_starlette_websocket_route(site: ServerThread) -> None:
    import websocket

    conn = websocket.create_connection(site.base_url.replace("http", "ws") + "/ws", timeout=10)
    try:
        conn.send("one")
        assert conn.recv() == "echo one"
        conn.send("bye")
        opcode, data = conn.recv_data(control_frame=True)
        assert opcode == websocket.ABNF.OPCODE_CLOSE
        assert int.from_bytes(data[:2], "big") == 4000
    finally:
        conn.close()


def test_socketio_on_the_same_port(site: ServerThread) -> None:
    import socketio

    for transports in (["polling"], ["websocket"]):
        with socketio.SimpleClient() as client:
            client.connect(site.base_url, transports=transports, wait_timeout=10)
            assert client.receive(timeout=10) == ["init", client.sid]
            sent = requests.post(site.base_url + "/shout", json={"a": 1}, timeout=10).json()
            assert sent["sent_to"] == 1
            assert client.receive(timeout=10) == ["shout", {"a": 1}]


def test_response_body_is_streamed(site: ServerThread) -> None:
    """The first part of a streamed response reaches the client while the app still holds
    the second (it waits for a request the client makes only after reading the first)."""
    with requests.get(site.base_url + "/held", stream=True, timeout=10) as held:
        lines = held.iter_lines()
        assert next(lines) == b"first"
        assert requests.get(site.base_url + "/let-go", timeout=10).text == "released"
        assert next(lines) == b"second"


def test_request_body_is_streamed(site: ServerThread) -> None:
    """The app reads the first part of a request body before the rest is sent."""
    import socket
    import time

    CHUNKS.clear()
    sock = socket.create_connection(("127.0.0.1", site.port), timeout=10)
    try:
        sock.sendall(b"POST /chunked HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello")
        deadline = time.monotonic() + 10
        while requests.get(site.base_url + "/chunks", timeout=10).json() != [5]:
            assert time.monotonic() < deadline, "the app did not get the first part alone"
            time.sleep(0.02)
        sock.sendall(b"world")
        reply = b""
        while b"[5,5]" not in reply:
            data = sock.recv(4096)
            assert data, reply
            reply += data
        assert reply.startswith(b"HTTP/1.1 200")
    finally:
        sock.close()


def test_keep_alive_across_streamed_exchanges(site: ServerThread) -> None:
    with requests.Session() as session:
        for _ in range(3):
            assert session.get(site.base_url + "/hello", timeout=10).text == "hello from starlette"
            assert session.get(site.base_url + "/stream", timeout=10).text.endswith("part 2\n")


def test_chunked_body_over_the_limit_refused(site: ServerThread) -> None:
    """Without a Content-Length the limit holds as the body streams in: 413, and the app's
    receive gets http.disconnect (it never sees more than the limit)."""
    SEEN_BODIES.clear()

    def body() -> Iterator[bytes]:
        for _ in range(10):
            yield b"y" * 500

    refused = requests.post(site.base_url + "/upload", data=body(), timeout=10)
    assert refused.status_code == 413
    assert SEEN_BODIES == []

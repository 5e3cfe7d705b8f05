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


def build() -> Server:
    async def hello(request: StarletteRequest) -> PlainTextResponse:
        return PlainTextResponse("hello from starlette")

    async def stream(request: StarletteRequest) -> StreamingResponse:
        async def parts() -> AsyncIterator[bytes]:
            for i in range(3):
                yield f"part {i}\n".encode()

        return StreamingResponse(parts(), media_type="text/plain")

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

"""pyserver as an ASGI app under a real Hypercorn process (``hypercorn -k trio``), beside a
Starlette app: ``ASGIApp(sio, other_asgi_app=starlette_app)``.

Peers: the official ``socket.io-client`` under Node (``sio_client.js``'s basic scenario over
polling, WebSocket and the upgrade), python-socketio's client, plain HTTP for the Starlette
route and for bad input. The lifespan is checked through a log the served module writes:
Starlette's startup and shutdown, and a room task started and cancelled when Hypercorn stops.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from .conftest import NodeRun, run_sio_client

pytestmark = pytest.mark.interop

HYPERCORN = Path(sys.executable).with_name("hypercorn")

#: The module Hypercorn serves: the interop test protocol's handlers (init, echo, echo-ack,
#: join) on pyserver, a Starlette app with REST routes sharing the Server, and lifespan
#: traces written to $ASGI_TEST_LOG.
APP_MODULE = textwrap.dedent(
    """
    import contextlib, os, trio
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
    from starlette.routing import Route
    from pyserver import ASGIApp, Response, Server

    LOG = os.environ["ASGI_TEST_LOG"]

    def trace(line):
        with open(LOG, "a") as f:
            f.write(line + "\\n")

    sio = Server(
        cors_allowed_origins="*",
        max_http_buffer_size=100_000,
        connection_state_recovery=bool(os.environ.get("ASGI_TEST_RECOVERY")),
        ping_interval=float(os.environ.get("ASGI_TEST_PING", "25")),
        ping_timeout=float(os.environ.get("ASGI_TEST_PING", "20")),
    )

    @sio.on("disconnect")
    async def disconnect(socket, reason):
        trace(f"disconnect {socket.id} {reason}")

    @sio.on("connection")
    async def connection(socket):
        socket.emit("init", {"id": socket.id, "nsp": "/", "auth": socket.handshake.auth})

    @sio.on("echo")
    async def echo(socket, *args):
        socket.emit("echo", *args)

    @sio.on("echo-ack")
    async def echo_ack(socket, *args):
        return args

    @sio.on("join")
    async def join(socket, room):
        socket.join(room)
        return sorted(socket.rooms)

    @sio.app.route("/native/hello")
    async def native_hello(request):
        return Response(200, [("Content-Type", "text/plain")], b"hello from an App route")

    @sio.app.websocket("/native/raw", subprotocols=["chat.v1"])
    async def native_raw(ws):
        async for message in ws:
            await ws.send("raw " + message if isinstance(message, str) else message)

    async def ticker():
        trace("room task started")
        try:
            await trio.sleep_forever()
        finally:
            trace("room task cancelled")

    async def stats(request):
        return JSONResponse(sio.statistics())

    async def start_task(request):
        sio.room("lobby", grace=3600).start_soon(ticker)
        return PlainTextResponse("started")

    async def shout(request):
        body = await request.json()
        return JSONResponse({"sent_to": sio.emit("shout", body)})

    async def room_emit(request):
        body = await request.json()
        sio.to(body["room"]).emit("news", body["data"])
        return PlainTextResponse("sent")

    async def flood(request):
        blob = "x" * 65536
        for _ in range(int(request.query_params["n"])):
            sio.emit("flood", blob)
        return PlainTextResponse("flooded")

    async def stream(request):
        async def parts():
            for i in range(3):
                yield f"part {i}\\n".encode()
        return StreamingResponse(parts(), media_type="text/plain")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        trace("starlette startup")
        yield
        trace("starlette shutdown")

    web = Starlette(
        routes=[
            Route("/api/stats", stats),
            Route("/api/task", start_task, methods=["POST"]),
            Route("/api/shout", shout, methods=["POST"]),
            Route("/api/stream", stream),
            Route("/api/room-emit", room_emit, methods=["POST"]),
            Route("/api/flood", flood, methods=["POST"]),
        ],
        lifespan=lifespan,
    )
    app = ASGIApp(sio, other_asgi_app=web)
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"hypercorn exited: {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("hypercorn did not listen")


@dataclass
class Hypercorn:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path
    output: Path

    def trace(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def stop(self) -> int:
        """SIGINT (Hypercorn's graceful stop: lifespan shutdown) and wait."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_hypercorn(tmp: Path, env: dict[str, str] | None = None) -> Hypercorn:
    if not HYPERCORN.exists():
        pytest.fail(f"{HYPERCORN} is missing: scripts/bootstrap.sh installs the dev extra")
    (tmp / "asgi_test_app.py").write_text(APP_MODULE)
    port = free_port()
    log = tmp / "trace.log"
    output = tmp / "hypercorn.out"
    full_env = {**os.environ, "ASGI_TEST_LOG": str(log), "PYTHONPATH": str(tmp), **(env or {})}
    with output.open("wb") as out:
        proc = subprocess.Popen(
            [str(HYPERCORN), "-k", "trio", "--bind", f"127.0.0.1:{port}", "asgi_test_app:app"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=tmp,
        )
    server = Hypercorn(proc, f"http://127.0.0.1:{port}", log, output)
    try:
        wait_port(port, proc)
    except RuntimeError:
        server.stop()
        pytest.fail(f"hypercorn did not start:\n{output.read_text()}")
    return server


@pytest.fixture(scope="module")
def hypercorn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hypercorn]:
    server = start_hypercorn(tmp_path_factory.mktemp("hypercorn"))
    try:
        yield server
    finally:
        server.stop()


def assert_completed(run: NodeRun) -> None:
    problems = [e for e in run.events if e["event"] in ("timeout", "exception", "unparsed")]
    assert run.returncode == 0 and not problems, f"the client did not complete:\n{run}"
    assert run.of("done"), f"no 'done' line:\n{run}"


@pytest.mark.parametrize("transports", ["polling", "websocket", "both"])
def test_node_client_basic(hypercorn: Hypercorn, node_sio: str, transports: str) -> None:
    run = run_sio_client(
        node_sio, hypercorn.url, "basic", transports=transports, auth={"token": "t"}
    )
    assert_completed(run)
    init = run.one("init")["data"]
    assert init["auth"] == {"token": "t"}
    echoes = run.of("echo")
    assert echoes and all(e["got"] == e["sent"] for e in echoes)
    final = {"polling": "polling", "websocket": "websocket", "both": "websocket"}[transports]
    assert run.one("done")["transport"] == final
    if transports == "both":
        assert run.one("upgrade")["transport"] == "websocket"  # polling first, then upgraded
        assert echoes[-1]["transport"] == "websocket"


def test_python_socketio_client(hypercorn: Hypercorn) -> None:
    import socketio

    for transports in (["polling"], ["websocket"], None):
        with socketio.SimpleClient() as client:
            client.connect(hypercorn.url, transports=transports, wait_timeout=10)
            event, data = client.receive(timeout=10)
            assert event == "init" and data["id"] == client.sid
            client.emit("echo", ({"n": 1}, b"\x00\x01"))
            assert client.receive(timeout=10) == ["echo", {"n": 1}, b"\x00\x01"]
            assert client.call("echo-ack", "x", timeout=10) == "x"


def test_starlette_routes_beside_socketio(hypercorn: Hypercorn) -> None:
    """Starlette answers its paths (a streamed response too) and sees the Server's state;
    its REST route emits to a connected Socket.IO client; unknown paths are Starlette's."""
    import socketio

    with socketio.SimpleClient() as client:
        client.connect(hypercorn.url, transports=["websocket"], wait_timeout=10)
        client.receive(timeout=10)  # init
        stats = requests.get(hypercorn.url + "/api/stats", timeout=10).json()
        assert stats["transports"]["websocket"] >= 1, stats
        sent = requests.post(hypercorn.url + "/api/shout", json={"hi": 1}, timeout=10).json()
        assert sent["sent_to"] >= 1
        assert client.receive(timeout=10) == ["shout", {"hi": 1}]
    streamed = requests.get(hypercorn.url + "/api/stream", timeout=10)
    assert streamed.text == "part 0\npart 1\npart 2\n"
    assert requests.get(hypercorn.url + "/nope", timeout=10).status_code == 404
    bundle = requests.get(hypercorn.url + "/socket.io/socket.io.min.js", timeout=10)
    assert bundle.status_code == 200 and b"io" in bundle.content[:4096]


def test_bad_input_same_answers_as_native(hypercorn: Hypercorn) -> None:
    base = hypercorn.url + "/socket.io/"
    unknown_transport = requests.get(base, params={"EIO": "4", "transport": "nope"}, timeout=10)
    assert unknown_transport.status_code == 400
    assert unknown_transport.json() == {"code": 0, "message": "Transport unknown"}
    unsupported = requests.get(base, params={"EIO": "3", "transport": "polling"}, timeout=10)
    assert unsupported.status_code == 400
    assert unsupported.json()["code"] == 5
    unknown_sid = requests.get(
        base, params={"EIO": "4", "transport": "polling", "sid": "nope"}, timeout=10
    )
    assert unknown_sid.status_code == 400 and unknown_sid.json()["code"] == 1
    handshake = requests.get(base, params={"EIO": "4", "transport": "polling"}, timeout=10)
    sid = json.loads(handshake.text[1:])["sid"]
    too_big = requests.post(
        base,
        params={"EIO": "4", "transport": "polling", "sid": sid},
        data="4" + "x" * 200_000,
        timeout=10,
    )
    assert too_big.status_code == 413
    preflight = requests.options(base, headers={"Origin": "http://elsewhere.example"}, timeout=10)
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] in ("*", "http://elsewhere.example")


def test_websocket_refusals_and_close_codes(hypercorn: Hypercorn) -> None:
    """An upgrade for an unknown sid is refused 400 with the Engine.IO error body (the
    native answer); a WebSocket message over maxPayload closes 1009."""
    import websocket  # websocket-client

    ws_url = hypercorn.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(ws_url + "&sid=nope", timeout=10)
    assert refused.value.status_code == 400
    conn = websocket.create_connection(ws_url, timeout=10)
    try:
        assert conn.recv().startswith("0{")
        conn.send("4" + "x" * 200_000)
        opcode, data = conn.recv_data(control_frame=True)
        while opcode != websocket.ABNF.OPCODE_CLOSE:
            opcode, data = conn.recv_data(control_frame=True)
        assert int.from_bytes(data[:2], "big") == 1009
    finally:
        conn.close()


def test_lifespan_starts_and_stops_the_server(tmp_path: Path) -> None:
    """Starlette's lifespan is forwarded; a room task runs in the Server's nursery, started
    on lifespan startup, and is cancelled on shutdown (Hypercorn stopped with SIGINT)."""
    server = start_hypercorn(tmp_path)
    try:
        assert requests.post(server.url + "/api/task", timeout=10).text == "started"
        deadline = time.monotonic() + 10
        while "room task started" not in server.trace() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.trace() == ["starlette startup", "room task started"]
    finally:
        code = server.stop()
    assert server.trace() == [
        "starlette startup",
        "room task started",
        "room task cancelled",
        "starlette shutdown",
    ], server.output.read_text()
    assert code == 0, server.output.read_text()


def test_refused_under_asyncio(tmp_path: Path) -> None:
    """Under an asyncio worker the app refuses at startup with one line, and the server
    does not start serving."""
    (tmp_path / "asgi_test_app.py").write_text(APP_MODULE)
    port = free_port()
    proc = subprocess.run(
        [str(HYPERCORN), "-k", "asyncio", "--bind", f"127.0.0.1:{port}", "asgi_test_app:app"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "ASGI_TEST_LOG": str(tmp_path / "log"), "PYTHONPATH": str(tmp_path)},
        cwd=tmp_path,
        check=False,
    )
    output = proc.stdout + proc.stderr  # (it exited: the worker stopped at startup)
    assert "pyserver runs on Trio, not asyncio" in output and "hypercorn -k trio" in output


def test_app_routes_and_raw_websocket_routes(hypercorn: Hypercorn) -> None:
    """The App's own HTTP routes and raw WebSocket routes are pyserver's under ASGI too
    (the subprotocol chosen as natively; a cross-origin upgrade refused 403)."""
    import websocket

    hello = requests.get(hypercorn.url + "/native/hello", timeout=10)
    assert (hello.status_code, hello.text) == (200, "hello from an App route")
    assert requests.post(hypercorn.url + "/native/hello", timeout=10).status_code == 405
    url = hypercorn.url.replace("http", "ws") + "/native/raw"
    conn = websocket.create_connection(url, subprotocols=["x", "chat.v1"], timeout=10)
    try:
        assert conn.getsubprotocol() == "chat.v1"
        conn.send("ping")
        assert conn.recv() == "raw ping"
        conn.send_binary(b"\x00\xff")
        assert conn.recv() == b"\x00\xff"
    finally:
        conn.close()
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(url, origin="http://evil.example", timeout=10)
    assert refused.value.status_code == 403


def test_refused_under_uvicorn(tmp_path: Path) -> None:
    """uvicorn (asyncio) gets the same one line at startup and stops."""
    uvicorn = Path(sys.executable).with_name("uvicorn")
    if not uvicorn.exists():
        pytest.skip("uvicorn is not installed (the bench extra installs it)")
    (tmp_path / "asgi_test_app.py").write_text(APP_MODULE)
    proc = subprocess.run(
        [str(uvicorn), "--port", str(free_port()), "asgi_test_app:app"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "ASGI_TEST_LOG": str(tmp_path / "log"), "PYTHONPATH": str(tmp_path)},
        cwd=tmp_path,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "pyserver runs on Trio, not asyncio" in output and "hypercorn -k trio" in output


async def test_connection_state_recovery(tmp_path: Path) -> None:
    """pyserver's Trio client loses its WebSocket without a goodbye and reconnects: the
    session is recovered through the ASGI mount (same id, its room kept), and a room
    broadcast sent meanwhile arrives once."""

    hypercorn = start_hypercorn(tmp_path, {"ASGI_TEST_RECOVERY": "1"})
    try:
        await _recover(hypercorn)
    finally:
        hypercorn.stop()


async def _recover(hypercorn: Hypercorn) -> None:
    import trio

    from pyserver import testing

    async with testing.connect(
        hypercorn.url, transports=["websocket"], reconnection=True, reconnection_delay=0.1
    ) as socket:
        await testing.wait_for_event(socket, "init")
        first_id = socket.id
        assert sorted(await socket.emit_with_ack("join", "r1")) == sorted([first_id, "r1"])
        await testing.drop_connection(socket)
        posted = await trio.to_thread.run_sync(
            lambda: requests.post(
                hypercorn.url + "/api/room-emit", json={"room": "r1", "data": "x"}, timeout=10
            )
        )
        assert posted.text == "sent"
        news = await testing.wait_for_event(socket, "news", timeout=10)
        assert news[0] == "x" and len(news) == 2  # (and the offset, recovery's last argument)
        with trio.fail_after(10):
            while not socket.connected:  # noqa: ASYNC110
                await trio.sleep(0.02)
        assert socket.recovered and socket.id == first_id


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hypercorn]:
    """A Hypercorn-served app with a 0.2 s ping interval and timeout."""
    server = start_hypercorn(tmp_path_factory.mktemp("tight"), {"ASGI_TEST_PING": "0.2"})
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("transports", ["polling", "websocket"])
def test_heartbeat_under_asgi(node_sio: str, tight: Hypercorn, transports: str) -> None:
    """Engine.IO's heartbeat runs (the Server's timers, started on the lifespan): 1.5 s at
    a 0.2 s interval, several pings answered, the same session throughout."""
    run = run_sio_client(node_sio, tight.url, "heartbeat", transports=transports)
    assert_completed(run)
    done = run.one("done")
    assert done["pings"] >= 2 and done["sameEngine"] is True, str(run)
    assert done["connected"] is True and done["reply"] == ["awake"], str(run)


@pytest.mark.parametrize("transports", ["polling", "websocket"])
def test_ping_timeout_under_asgi(node_sio: str, tight: Hypercorn, transports: str) -> None:
    """A client that stops answering pings is dropped with "ping timeout" on the server."""
    run = run_sio_client(node_sio, tight.url, "no-pong", transports=transports)
    assert_completed(run)
    assert run.one("done")["dropped"] >= 1, str(run)
    sid = run.one("ready")["id"]
    deadline = time.monotonic() + 10
    while not any(line.startswith(f"disconnect {sid}") for line in tight.trace()):
        assert time.monotonic() < deadline, tight.trace()
        time.sleep(0.05)
    assert f"disconnect {sid} ping timeout" in tight.trace()


def test_a_client_that_does_not_read_is_dropped(hypercorn: Hypercorn) -> None:
    """A Socket.IO client over WebSocket that stops reading while 32 MiB are emitted to it:
    the outbox stays bounded and the connection is closed as a slow consumer (the server's
    disconnect handler sees a transport error), never buffered without bound."""
    import base64

    host, port = hypercorn.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            (
                "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
                f"Host: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head
        payload = b"40"  # the Socket.IO CONNECT, masked as a client must
        mask = os.urandom(4)
        sock.sendall(
            bytes([0x81, 0x80 | len(payload)]) + mask
            + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        )  # fmt: skip
        before = {line.split()[1] for line in hypercorn.trace() if line.startswith("disconnect")}
        flooded = requests.post(hypercorn.url + "/api/flood", params={"n": "512"}, timeout=30)
        assert flooded.text == "flooded"
        deadline = time.monotonic() + 20
        while True:
            gone = [
                line
                for line in hypercorn.trace()
                if line.startswith("disconnect") and line.split()[1] not in before
            ]
            if gone:
                break
            assert time.monotonic() < deadline, "the client that does not read was kept"
            time.sleep(0.1)
        assert gone[0].endswith("transport error"), gone
    finally:
        sock.close()

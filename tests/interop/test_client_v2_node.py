"""socket.io-client 2.x (Engine.IO v3, Socket.IO protocol v4) under Node against
``Server(allow_eio3=True)``: polling only, WebSocket only, and the polling -> WebSocket
upgrade; acks and binary both ways, a namespace with a query, a middleware refusal, an
unknown namespace, the client-driven heartbeat, and a room shared with socket.io-client 4.x.
Without ``allow_eio3`` an ``EIO=3`` request is refused as the Node server refuses it.

The client is the real one from npm (``socket.io-client-v2``, an alias of
``socket.io-client@2.5.0`` in tests/interop/package.json); ``sio_v2_client.js`` drives it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.server_thread import ServerThread

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "sio_v2_client.js"


def bin_(data: bytes) -> dict[str, str]:
    return {"$bin": data.hex()}


class V2Site:
    """A Server(allow_eio3=True) with the script's protocol, and what its handlers saw."""

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.lock = threading.Lock()
        self.seen: list[Any] = []
        self.server: ServerThread | None = None

    def build(self) -> Any:
        from pyserver import ConnectionRefused, Server

        sio = Server(allow_eio3=True, **self.options)
        site = self

        def install(nsp: Any, name: str) -> None:
            @nsp.on("connection")
            async def connection(socket: Any) -> None:
                hs = socket.handshake
                socket.emit(
                    "init", {"nsp": name, "auth": hs.auth, "x": hs.query.get("x"), "id": socket.id}
                )

            @nsp.on("echo-ack")
            async def echo_ack(socket: Any, *args: Any) -> Any:
                return args

            @nsp.on("echo")
            async def echo(socket: Any, *args: Any) -> None:
                with site.lock:
                    site.seen.append(("echo", args))
                socket.emit("echo", *args)

            @nsp.on("ask")
            async def ask(socket: Any, question: str) -> None:
                reply = await socket.emit_with_ack("question", question, timeout=10)
                socket.emit("answer", list(reply))

            @nsp.on("join")
            async def join(socket: Any, room: str) -> str:
                socket.join(room)
                return "ok"

            @nsp.on("shout")
            async def shout(socket: Any, room: str, *args: Any) -> None:
                nsp.to(room).emit("shouted" if len(args) > 1 else "told", *args)

        install(sio, "/")
        chat = sio.of("/chat")
        install(chat, "/chat")

        @chat.use
        async def authenticate(socket: Any) -> None:
            if socket.handshake.auth.get("token") == "bad":
                raise ConnectionRefused("not authorized")

        return sio

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.base_url


def _serve(site: V2Site) -> Iterator[V2Site]:
    site.server = ServerThread(site.build)
    site.server.start()
    try:
        yield site
    finally:
        site.server.stop()


@pytest.fixture(scope="module")
def site() -> Iterator[V2Site]:
    yield from _serve(V2Site(cors_allowed_origins="*"))


@pytest.fixture(scope="module")
def deflate_site() -> Iterator[V2Site]:
    """permessage-deflate on (the v2 client's ws agrees to it): broadcasts' frames are
    compressed for the v4 peers, re-framed plain for the v2 ones."""
    yield from _serve(V2Site(per_message_deflate={"threshold": 0}))


@pytest.fixture(scope="module")
def quick_site() -> Iterator[V2Site]:
    """Short heartbeats: several ping intervals fit in a second."""
    yield from _serve(V2Site(ping_interval=0.2, ping_timeout=0.3))


@pytest.fixture(scope="session")
def node_v2() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (socket.io-client 2.x runs under Node)")
    if not (HERE / "node_modules" / "socket.io-client-v2").is_dir():
        pytest.fail(f"socket.io-client-v2 is missing: run `npm ci` in {HERE}")
    return node


def run(
    node: str, url: str, scenario: str, transports: str, **options: Any
) -> list[dict[str, Any]]:
    argv = [node, str(SCRIPT), "--url", url, "--scenario", scenario, "--transports", transports]
    for key, value in options.items():
        argv += [f"--{key}", str(value)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=40, check=False)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert proc.returncode == 0, f"{argv}\n{proc.stdout}\n{proc.stderr}"
    assert events[-1]["event"] == "done", events
    return events


def of(events: list[dict[str, Any]], name: str, client: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == name and e.get("client") == client]


@pytest.mark.parametrize("transports", ["polling", "websocket", "upgrade"])
def test_v2_client_over_each_transport(node_v2: str, site: V2Site, transports: str) -> None:
    events = run(node_v2, site.url, "basic", transports)
    # joined to "/" by the server (the v2 client does not ask), auth empty, query as sent;
    # the socket's id is the one the client computed (it is never told it)
    init = of(events, "init", "A")[0]["data"]
    assert init == {"nsp": "/", "auth": {}, "x": "1", "id": of(events, "connect", "A")[0]["id"]}
    if transports == "upgrade":
        assert of(events, "upgrade", "A") == [
            {"event": "upgrade", "client": "A", "transport": "websocket"}
        ]
    # an ack with several arguments, the client's callback
    acks = of(events, "ack", "A")
    assert acks[0]["args"] == ["hi", 1, {"k": [True, None]}]
    # binary both ways, nested too
    sent = ["bin", bin_(b"\x01\x02\x03\xff"), {"nested": bin_(b"\x00")}]
    got = {e["name"]: e["args"] for e in of(events, "got", "A")}
    assert got["echo"] == sent
    with site.lock:
        assert ("echo", ("bin", b"\x01\x02\x03\xff", {"nested": b"\x00"})) in site.seen
    # the server's emit_with_ack, answered with binary by the client
    assert got["question"] == ["what?"]
    assert got["answer"] == [["answer", bin_(b"\x09\x08")]]
    # a namespace: its query is the middleware's auth
    chat_id = of(events, "connect", "B")[0]["id"]
    assert chat_id.startswith("/chat#")
    assert of(events, "init", "B")[0]["data"] == {
        "nsp": "/chat",
        "auth": {"token": "good"},
        "x": None,
        "id": chat_id,
    }
    assert of(events, "ack", "B")[0]["args"] == ["in chat"]
    # refused by the middleware, and an unknown namespace: v4 ERROR packets
    assert of(events, "error", "C") == [{"event": "error", "client": "C", "data": "not authorized"}]
    assert of(events, "error", "D") == [
        {"event": "error", "client": "D", "data": "Invalid namespace"}
    ]
    assert not of(events, "connect", "C") and not of(events, "connect", "D")


@pytest.mark.parametrize("transports", ["polling", "websocket"])
def test_v2_client_with_force_base64(node_v2: str, site: V2Site, transports: str) -> None:
    # the client asked for b64=1: it sends binary as "b4<base64>" text, and over polling it
    # must get text payloads (over WebSocket it reads the server's "b4..." and binary alike)
    events = run(node_v2, site.url, "basic", transports, b64=1)
    got = {e["name"]: e["args"] for e in of(events, "got", "A")}
    assert got["echo"] == ["bin", bin_(b"\x01\x02\x03\xff"), {"nested": bin_(b"\x00")}]
    assert got["answer"] == [["answer", bin_(b"\x09\x08")]]


@pytest.mark.parametrize("transports", ["polling", "websocket"])
def test_v2_and_v4_clients_share_a_room(node_v2: str, site: V2Site, transports: str) -> None:
    events = run(node_v2, site.url, "room", transports)
    expected = ["text", bin_(b"\x07\x07\x00\x07")]
    assert [e["args"] for e in of(events, "got", "V2")] == [expected, ["private"]]
    assert [e["args"] for e in of(events, "got", "V4")] == [expected]


@pytest.mark.parametrize("scenario", ["basic", "room"])
def test_v2_client_with_permessage_deflate(
    node_v2: str, deflate_site: V2Site, scenario: str
) -> None:
    events = run(node_v2, deflate_site.url, scenario, "websocket")
    if scenario == "room":
        expected = ["text", bin_(b"\x07\x07\x00\x07")]
        assert [e["args"] for e in of(events, "got", "V2")] == [expected, ["private"]]
        assert [e["args"] for e in of(events, "got", "V4")] == [expected]
    else:
        got = {e["name"]: e["args"] for e in of(events, "got", "A")}
        assert got["echo"] == ["bin", bin_(b"\x01\x02\x03\xff"), {"nested": bin_(b"\x00")}]


@pytest.mark.parametrize("transports", ["polling", "websocket"])
def test_v2_heartbeat_keeps_a_quiet_client(
    node_v2: str, quick_site: V2Site, transports: str
) -> None:
    # ping every 0.2 s, timeout 0.3 s: 1.5 s quiet is several intervals; the client pings,
    # the server answers (a server that waited for pongs, as in v4, would have closed it)
    events = run(node_v2, quick_site.url, "heartbeat", transports, wait=1500)
    assert not [e for e in events if e["event"] == "disconnect"], events
    assert of(events, "ack", "A")[0]["args"] == ["still here"]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_eio3_refused_without_the_option() -> None:
    from pyserver import Server

    server = ServerThread(lambda: Server())
    server.start()
    try:
        status, body = _get(f"{server.base_url}/socket.io/?EIO=3&transport=polling")
    finally:
        server.stop()
    assert status == 400
    assert json.loads(body) == {"code": 5, "message": "Unsupported protocol version"}


def test_eio3_handshake_with_the_option(site: V2Site) -> None:
    status, body = _get(f"{site.url}/socket.io/?EIO=3&transport=polling")
    assert status == 200
    length, _, packet = body.partition(":")
    assert int(length) == len(packet) and packet.startswith("0{")
    handshake = json.loads(packet[1:])
    assert set(handshake) == {"sid", "upgrades", "pingInterval", "pingTimeout"}

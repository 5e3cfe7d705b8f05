"""pyserver's Trio client with another parser than the built-in one: ``parser="msgpack"``
against the official socket.io 4.8 server with socket.io-msgpack-parser 3.0.2 under Node
(``sio_server.js --parser msgpack``, a real Node process) and against pyserver's
``Server(parser="msgpack")``; ``json=codec`` against both servers' default wire. A client
whose parser is not the server's ends with a clear ``ConnectionLost``, never a hang.

The protocol is sio_server.js's (written at its top); the pyserver side below runs the part
of it these tests use. Every test is bounded with ``fail_after``.
"""

from __future__ import annotations

import datetime
import decimal
import json
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from pyserver import ConnectionRefused, Server, StateRecovery, testing
from pyserver.socketio.client import ConnectionLost
from pyserver.trio.client import connect

pytestmark = pytest.mark.interop

HERE = Path(__file__).resolve().parent
SIO_SERVER_JS = HERE / "sio_server.js"
FAST = {"reconnection_delay": 0.05, "reconnection_delay_max": 0.2, "timeout": 5.0}
TRANSPORTS = [["websocket"], ["polling"], ["polling", "websocket"]]
WHEN = datetime.datetime(2024, 2, 29, 12, 30, 1, 250000, tzinfo=datetime.UTC)


def build_pyserver(**options: Any) -> Server:
    """pyserver's side of the part of sio_server.js's protocol used here."""
    sio = Server(**options)
    for nsp in (sio, sio.of("/admin")):

        @nsp.use
        async def authenticate(socket: Any) -> None:
            if (socket.handshake.auth or {}).get("token") == "bad":
                raise ConnectionRefused("Authentication error", data={"reason": "bad token"})

        @nsp.on("connection")
        async def connection(socket: Any) -> None:
            socket.emit(
                "welcome",
                {"id": socket.id, "nsp": socket.nsp.name, "auth": socket.handshake.auth},
            )

        @nsp.on("echo")
        async def echo(socket: Any, *args: Any) -> tuple[Any, ...]:
            return args

        @nsp.on("echo-event")
        async def echo_event(socket: Any, *args: Any) -> None:
            socket.emit("echo", *args)

        @nsp.on("ask")
        async def ask(socket: Any, spec: dict[str, Any]) -> dict[str, Any]:
            reply = await socket.emit_with_ack(spec["event"], *spec.get("args", []), timeout=5)
            return {"reply": reply}

        @nsp.on("join")
        async def join(socket: Any, room: str) -> list[str]:
            socket.join(room)
            return sorted(socket.rooms)

        @nsp.on("broadcast-when-gone")
        async def broadcast_when_gone(socket: Any, spec: dict[str, Any]) -> int:
            with trio.fail_after(10):
                while spec["id"] in socket.nsp.sockets:  # noqa: ASYNC110
                    await trio.sleep(0.01)
            for i in range(spec["n"]):
                socket.nsp.to(spec["room"]).emit("missed", i)
            return int(spec["n"])

        @nsp.on("disconnect-me")
        async def disconnect_me(socket: Any) -> None:
            socket.disconnect()

    return sio


@asynccontextmanager
async def node_server(parser: str, recovery: bool = False) -> AsyncIterator[str]:
    """sio_server.js with ``--parser`` (``msgpack`` or ``default``), ``--recovery``; yields
    its URL."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    if not (HERE / "node_modules" / "socket.io-msgpack-parser").is_dir():
        pytest.fail(f"socket.io-msgpack-parser is missing in {HERE}/node_modules: `npm ci` there")
    argv = [node, str(SIO_SERVER_JS), "--port", "0", "--parser", parser]
    if recovery:
        argv.append("--recovery")
    proc = await trio.lowlevel.open_process(
        argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=HERE
    )
    try:
        assert proc.stdout is not None
        buffer = b""
        with trio.fail_after(10):
            while b"\n" not in buffer:
                chunk = await proc.stdout.receive_some(4096)
                assert chunk, "sio_server.js ended before listening"
                buffer += chunk
        event = json.loads(buffer.split(b"\n")[0])
        assert event["event"] == "listening"
        yield f"http://127.0.0.1:{event['port']}"
    finally:
        proc.send_signal(signal.SIGKILL)
        with trio.move_on_after(5):
            await proc.wait()


@asynccontextmanager
async def serving(kind: str, **options: Any) -> AsyncIterator[str]:
    """The Node server (msgpack unless ``options`` say ``parser="default"``) or pyserver's
    ``Server(**options)``; yields the URL."""
    if kind == "node":
        recovery = options.get("connection_state_recovery") is not None
        async with node_server(options.get("parser", "msgpack"), recovery) as url:
            yield url
    else:
        options.setdefault("parser", "msgpack")
        if options["parser"] == "default":
            del options["parser"]
        async with testing.serve(build_pyserver(**options)) as url:
            yield url


@pytest.fixture(params=["node", "pyserver"])
async def msgpack_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    async with serving(request.param) as url:
        yield url


@pytest.mark.parametrize("transports", TRANSPORTS)
async def test_events_acks_binary_and_dates(msgpack_url: str, transports: list[str]) -> None:
    """Both transports and the upgrade: the welcome emitted by the connection handler (kept
    until asked for), acks with one, several and no values, bytes as msgpack bin (nested
    too), a ``datetime`` as notepack's Date and back, an event emitted back."""
    with trio.fail_after(20):
        async with connect(
            msgpack_url, parser="msgpack", transports=transports, auth={"u": "ada"}, **FAST
        ) as socket:
            assert socket.connected and socket.id
            (welcome,) = (await socket.wait_for("welcome", timeout=5)).args
            assert welcome["id"] == socket.id and welcome["nsp"] == "/"
            assert welcome["auth"] == {"u": "ada"}
            reply = await socket.emit_with_ack("echo", 1, b"\x00\xff", {"k": [b"x", "y"]})
            assert reply == (1, b"\x00\xff", {"k": [b"x", "y"]})
            assert await socket.emit_with_ack("echo", "one") == "one"
            assert await socket.emit_with_ack("echo") is None
            assert await socket.emit_with_ack("echo", WHEN) == WHEN
            socket.emit("echo-event", "hello", b"\x01")
            assert (await socket.wait_for("echo", timeout=5)).args == ["hello", b"\x01"]
            if transports == ["polling", "websocket"]:
                with trio.fail_after(5):
                    while socket.transport != "websocket":  # noqa: ASYNC110
                        await trio.sleep(0.01)
            else:
                assert socket.transport == transports[0]
            assert await socket.emit_with_ack("echo", [1, 2]) == [1, 2]


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]])
async def test_server_asks_the_client(msgpack_url: str, transports: list[str]) -> None:
    """The server's emit_with_ack is answered by the handler's return value (bytes in it)."""
    with trio.fail_after(10):
        async with connect(msgpack_url, parser="msgpack", transports=transports, **FAST) as socket:

            @socket.on("question")
            async def question(n: int, blob: bytes) -> dict[str, Any]:
                return {"double": n * 2, "blob": blob[::-1]}

            answer = await socket.emit_with_ack(
                "ask", {"event": "question", "args": [21, b"\x01\x02"]}
            )
            assert answer == {"reply": {"double": 42, "blob": b"\x02\x01"}}
            # an event given to an iteration, answered with ack()
            async with trio.open_nursery() as nursery:

                async def answer_one() -> None:
                    async for event in socket:  # (the welcome, kept, comes first)
                        if event.name == "question":
                            event.ack(["iterated", event.args[0]])
                            return

                socket.off("question")
                nursery.start_soon(answer_one)
                answer = await socket.emit_with_ack("ask", {"event": "question", "args": [5]})
            assert answer == {"reply": ["iterated", 5]}


async def test_namespaces_refusal_and_server_disconnect(msgpack_url: str) -> None:
    """A second namespace over the same connection; a refusal's message and data (the
    server's CONNECT_ERROR map, read in full); the server disconnecting a socket."""
    with trio.fail_after(15):
        async with connect(msgpack_url, parser="msgpack", **FAST) as main:
            async with main.manager.connect("/admin", auth={"role": "admin"}) as admin:
                assert admin.namespace == "/admin" and admin.id != main.id
                (welcome,) = (await admin.wait_for("welcome", timeout=5)).args
                assert welcome["nsp"] == "/admin" and welcome["auth"] == {"role": "admin"}
                assert await admin.emit_with_ack("echo", b"a", 2) == (b"a", 2)
                assert await main.emit_with_ack("echo", "main") == "main"
            # (Node's server closes a connection whose CONNECT comes in the same tick as the
            # DISCONNECT of that namespace, before it has let the socket go: a round trip)
            assert await main.emit_with_ack("echo", "left") == "left"
            with pytest.raises(ConnectionRefused) as caught:
                async with main.manager.connect("/admin", auth={"token": "bad"}):
                    pytest.fail("connected despite the refusal")
            assert caught.value.message == "Authentication error"
            assert caught.value.data == {"reason": "bad token"}
            assert await main.emit_with_ack("echo", "still") == "still"
            main.emit("disconnect-me")
            with trio.fail_after(5):
                while main.disconnect_reason is None:  # noqa: ASYNC110
                    await trio.sleep(0.01)
            assert main.disconnect_reason == "io server disconnect"


async def test_refused_on_connect(msgpack_url: str) -> None:
    with trio.fail_after(10):
        with pytest.raises(ConnectionRefused) as caught:
            async with connect(msgpack_url, parser="msgpack", auth={"token": "bad"}, **FAST):
                pytest.fail("connected despite the refusal")
    assert caught.value.message == "Authentication error"
    assert caught.value.data == {"reason": "bad token"}


@pytest.mark.parametrize("kind", ["node", "pyserver"])
async def test_connection_state_recovery(kind: str) -> None:
    """The reconnection's CONNECT carries recovery's pid and offset in msgpack; the session
    comes back and the broadcasts missed meanwhile arrive, in order, once (the offset, the
    last argument of each, was read from msgpack events)."""
    async with serving(kind, connection_state_recovery=StateRecovery()) as url:
        with trio.fail_after(30):
            async with (
                connect(url, parser="msgpack", transports=["websocket"], **FAST) as a,
                connect(url, parser="msgpack", transports=["polling"], **FAST) as b,
            ):
                assert await a.emit_with_ack("join", "r") == sorted([a.id, "r"])
                missed: list[Any] = []
                a.on("missed", lambda i, *offset: missed.append(i))
                first = a.id
                reconnected: list[int] = []
                a.manager.on("reconnect", reconnected.append)
                await testing.drop_connection(a)
                spec = {"id": first, "room": "r", "n": 5}
                assert await b.emit_with_ack("broadcast-when-gone", spec) == 5
                while not (reconnected and a.connected):  # noqa: ASYNC110
                    await trio.sleep(0.01)
                assert a.id == first and a.recovered
                assert await a.emit_with_ack("echo", "after") == "after"
                assert missed == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("kind", ["node", "pyserver"])
@pytest.mark.parametrize("transports", [["websocket"], ["polling"]])
async def test_msgpack_client_json_server_is_a_clear_error(
    kind: str, transports: list[str]
) -> None:
    """A server on the default parser closes the connection on the msgpack CONNECT: the
    client, reconnection on and a 20 s timeout, ends at once with ConnectionLost naming the
    parser (it retried until the timeout before)."""
    async with serving(kind, parser="default") as url:
        with trio.fail_after(10):  # well under the connect timeout
            with pytest.raises(ConnectionLost) as caught:
                async with connect(
                    url, parser="msgpack", transports=transports, reconnection_delay=0.05,
                    timeout=20.0,
                ):  # fmt: skip
                    pytest.fail("connected with the wrong parser")
    assert "'msgpack' parser" in str(caught.value)
    assert "without answering CONNECT /" in str(caught.value)


@pytest.mark.parametrize("kind", ["node", "pyserver"])
async def test_json_client_msgpack_server_is_a_clear_error(kind: str) -> None:
    """The other way round: a msgpack server refuses the text CONNECT of a JSON client."""
    async with serving(kind) as url:
        with trio.fail_after(10):
            with pytest.raises(ConnectionLost) as caught:
                async with connect(url, transports=["websocket"], timeout=20.0):
                    pytest.fail("connected with the wrong parser")
    assert "'json' parser" in str(caught.value)


class DecimalCodec:
    """A JSON codec that reads numbers with a fraction as ``Decimal`` (what the built-in
    parser's ack fast path would read as float)."""

    def dumps(self, obj: Any) -> str:
        return json.dumps(obj, separators=(",", ":"))

    def loads(self, text: str | bytes) -> Any:
        return json.loads(text, parse_float=decimal.Decimal)


@pytest.mark.parametrize("kind", ["node", "pyserver"])
@pytest.mark.parametrize("transports", [["websocket"], ["polling"]])
async def test_json_codec(kind: str, transports: list[str]) -> None:
    """``json=codec`` on the default wire: every packet the server sends, acks on "/"
    included, is read by the codec (never by the built-in ack fast path); binary stays
    attachments both ways."""
    async with serving(kind, parser="default") as url:
        with trio.fail_after(10):
            async with connect(url, json=DecimalCodec(), transports=transports, **FAST) as socket:
                reply = await socket.emit_with_ack("echo", 1.5, b"\x01", {"n": 2.25})
                assert reply == (decimal.Decimal("1.5"), b"\x01", {"n": decimal.Decimal("2.25")})
                # (a Decimal equals the float of the same exact value: 0.1 has none)
                assert await socket.emit_with_ack("echo", 0.1) == decimal.Decimal("0.1")
                socket.emit("echo-event", 3.5)
                assert (await socket.wait_for("echo", timeout=5)).args == [decimal.Decimal("3.5")]


async def test_json_codec_against_orjson_server() -> None:
    """The client's codec and the server's needn't be the same: json=orjson both sides."""
    orjson = pytest.importorskip("orjson")
    async with serving("pyserver", parser="default", json=orjson) as url:
        with trio.fail_after(10):
            async with connect(url, json=orjson, **FAST) as socket:
                assert await socket.emit_with_ack("echo", {"a": [1, b"\x02"]}) == {
                    "a": [1, b"\x02"]
                }


async def test_cli_parser_msgpack() -> None:
    """``pyserver client URL --parser msgpack`` against both msgpack servers."""
    for kind in ("node", "pyserver"):
        async with serving(kind) as url:
            with trio.fail_after(20):
                proc = await trio.run_process(
                    [sys.executable, "-m", "pyserver", "--log-level", "WARNING", "client", url,
                     "--parser", "msgpack", "--no-reconnect", "--emit", 'echo "hi" [1, 2]'],
                    capture_stdout=True, capture_stderr=True, check=False,
                )  # fmt: skip
            lines = [json.loads(line) for line in proc.stdout.decode().splitlines() if line]
            assert proc.returncode == 0, proc.stderr.decode()
            assert {"ack": "echo", "args": ["hi", [1, 2]]} in lines, lines

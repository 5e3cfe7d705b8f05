"""pyserver's Trio client (``pyserver.connect``) against two servers: the official socket.io
4.8 server under Node (``sio_server.js``, a real Node process) and pyserver's own ``Server``
(in the test's Trio run, through ``pyserver.testing.serve``), both running the same small
protocol (written at the top of ``sio_server.js``, and in :func:`build_pyserver`).

Every test runs against both; each is bounded with ``fail_after``.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from pyserver import ConnectionRefused, Server, SocketDisconnected, StateRecovery, testing
from pyserver.trio.client import ClientSocket, Manager, connect

pytestmark = pytest.mark.interop

HERE = Path(__file__).resolve().parent
SIO_SERVER_JS = HERE / "sio_server.js"
FAST = {"reconnection_delay": 0.05, "reconnection_delay_max": 0.2, "timeout": 5.0}


async def until(predicate: Callable[[], bool], timeout: float) -> None:  # noqa: ASYNC109
    """Poll ``predicate`` until it holds (fails the test after ``timeout`` seconds)."""
    with trio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110
            await trio.sleep(0.01)


def build_pyserver(recovery: bool, fast_pings: bool = False) -> Server:
    """pyserver's side of the protocol of sio_server.js."""
    pings = {"ping_interval": 0.1, "ping_timeout": 0.2} if fast_pings else {}
    sio = Server(connection_state_recovery=StateRecovery() if recovery else False, **pings)
    for nsp in (sio, sio.of("/admin")):
        _install(sio, nsp)
    return sio


def _install(sio: Server, nsp: Any) -> None:
    @nsp.use
    async def authenticate(socket: Any) -> None:
        if (socket.handshake.auth or {}).get("token") == "bad":
            raise ConnectionRefused("Authentication error", data={"reason": "bad token"})

    @nsp.on("connection")
    async def connection(socket: Any) -> None:
        socket.emit(
            "welcome",
            {
                "id": socket.id,
                "nsp": socket.nsp.name,
                "auth": socket.handshake.auth,
                "recovered": socket.recovered,
            },
        )

    @nsp.on("echo")
    async def echo(socket: Any, *args: Any) -> tuple[Any, ...]:
        return args

    @nsp.on("echo-event")
    async def echo_event(socket: Any, *args: Any) -> None:
        socket.emit("echo", *args)

    @nsp.on("ask")
    async def ask(socket: Any, spec: dict[str, Any]) -> dict[str, Any]:
        try:
            reply = await socket.emit_with_ack(spec["event"], *spec.get("args", []), timeout=5)
        except Exception as exc:
            return {"error": repr(exc)}
        return {"reply": reply}

    @nsp.on("join")
    async def join(socket: Any, room: str) -> list[str]:
        socket.join(room)
        return sorted(socket.rooms)

    @nsp.on("handshake")
    async def handshake(socket: Any) -> dict[str, Any]:
        return {
            "query": dict(socket.handshake.query),
            "header": socket.handshake.headers.get("x-test"),
        }

    @nsp.on("disconnect-me")
    async def disconnect_me(socket: Any) -> None:
        socket.disconnect()

    @nsp.on("broadcast-when-gone")
    async def broadcast_when_gone(socket: Any, spec: dict[str, Any]) -> int:
        await until(lambda: spec["id"] not in socket.nsp.sockets, 10)
        for i in range(spec["n"]):
            socket.nsp.to(spec["room"]).emit("missed", i)
        return int(spec["n"])

    @nsp.on("burst")
    async def burst(socket: Any, n: int) -> int:
        for i in range(n):
            if i % 3 == 0:
                socket.emit("seq", i, bytes([i % 256, 1, 2]))
            else:
                socket.emit("seq", i)
        return n


class Target:
    """A server under test: its URL, and a way to stop and start it again (same port)."""

    def __init__(
        self, kind: str, nursery: trio.Nursery, recovery: bool, fast_pings: bool = False
    ) -> None:
        self.kind = kind
        self.nursery = nursery
        self.recovery = recovery
        self.fast_pings = fast_pings
        self.port = 0
        self.lines: list[dict[str, Any]] = []
        self._stop: Callable[[], Any] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        if self.kind == "node":
            await self._start_node()
        else:
            await self._start_pyserver()

    async def _start_pyserver(self) -> None:
        scope = trio.CancelScope()
        sio = build_pyserver(self.recovery, self.fast_pings)

        # served in the fixture's nursery; the scope stops it
        async def serve(task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
            with scope:
                async with trio.open_nursery() as inner:
                    listeners = await inner.start(sio.serve, "127.0.0.1", self.port)
                    task_status.started(listeners[0].socket.getsockname()[1])

        self.port = await self.nursery.start(serve)
        self._stop = scope.cancel

    async def _start_node(self) -> None:
        node = shutil.which("node")
        if node is None:
            pytest.skip("node is not installed")
        if not (HERE / "node_modules" / "socket.io").is_dir():
            pytest.fail(f"socket.io is missing in {HERE}/node_modules: run `npm ci` there")
        argv = [node, str(SIO_SERVER_JS), "--port", str(self.port)]
        if self.recovery:
            argv.append("--recovery")
        if self.fast_pings:
            argv += ["--ping-interval", "100", "--ping-timeout", "200"]
        proc = await trio.lowlevel.open_process(
            argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=HERE
        )
        listening = trio.Event()

        async def read() -> None:
            assert proc.stdout is not None
            buffer = b""
            async for chunk in proc.stdout:
                buffer += chunk
                *complete, buffer = buffer.split(b"\n")
                for line in complete:
                    if line.strip():
                        event = json.loads(line)
                        self.lines.append(event)
                        if event["event"] == "listening":
                            self.port = event["port"]
                            listening.set()

        self.nursery.start_soon(read)
        with trio.fail_after(10):
            await listening.wait()

        async def stop() -> None:
            proc.send_signal(signal.SIGKILL)
            with trio.move_on_after(5):
                await proc.wait()

        self._stop = stop

    async def stop(self) -> None:
        if self._stop is not None:
            result = self._stop()
            if result is not None:
                await result
            self._stop = None


async def _serving(kind: str, recovery: bool, fast_pings: bool = False) -> AsyncIterator[Target]:
    async with trio.open_nursery() as nursery:
        target = Target(kind, nursery, recovery, fast_pings)
        await target.start()
        try:
            yield target
        finally:
            await target.stop()
            nursery.cancel_scope.cancel()


@pytest.fixture(params=["node", "pyserver"])
async def server(request: pytest.FixtureRequest) -> AsyncIterator[Target]:
    async for target in _serving(request.param, recovery=False):
        yield target


@pytest.fixture(params=["node", "pyserver"])
async def recovering_server(request: pytest.FixtureRequest) -> AsyncIterator[Target]:
    """The same servers with connection state recovery on."""
    async for target in _serving(request.param, recovery=True):
        yield target


@pytest.fixture(params=["node", "pyserver"])
async def pinging_server(request: pytest.FixtureRequest) -> AsyncIterator[Target]:
    """The same servers pinging every 0.1 s and waiting 0.2 s for the pong."""
    async for target in _serving(request.param, recovery=False, fast_pings=True):
        yield target


@pytest.mark.parametrize("transports", [["websocket"], ["polling"], ["polling", "websocket"]])
async def test_heartbeats_are_answered(pinging_server: Target, transports: list[str]) -> None:
    """Ten ping intervals later the first connection is still the one in use: every ping
    was answered in time (a missed pong makes the server close it, and the client would
    have reconnected)."""
    with trio.fail_after(20):
        async with connect(pinging_server.url, transports=transports, **FAST) as socket:
            attempts: list[int] = []
            socket.manager.on("reconnect_attempt", attempts.append)
            first = socket.id
            await trio.sleep(1.0)
            assert await socket.emit_with_ack("echo", "alive") == "alive"
            assert socket.id == first and attempts == []


@pytest.mark.parametrize("transports", [["websocket"], ["polling"], ["polling", "websocket"]])
async def test_connect_events_acks_and_binary(server: Target, transports: list[str]) -> None:
    with trio.fail_after(20):
        async with connect(server.url, transports=transports, **FAST) as socket:
            assert socket.connected and socket.id
            # the welcome was emitted by the connection handler before anything was
            # registered here: it was kept
            (welcome,) = (await socket.wait_for("welcome", timeout=5)).args
            assert welcome["id"] == socket.id and welcome["nsp"] == "/"
            reply = await socket.emit_with_ack("echo", 1, b"\x00\xff", {"k": [b"x", "y"]})
            assert reply == (1, b"\x00\xff", {"k": [b"x", "y"]})
            assert await socket.emit_with_ack("echo", "one") == "one"
            assert await socket.emit_with_ack("echo") is None
            socket.emit("echo-event", "hello", b"\x01")
            assert (await socket.wait_for("echo", timeout=5)).args == ["hello", b"\x01"]
            if transports == ["polling", "websocket"]:
                await until(lambda: socket.transport == "websocket", 5)
            else:
                assert socket.transport == transports[0]
            # still working after the upgrade
            assert await socket.emit_with_ack("echo", [1, 2]) == [1, 2]


async def test_auth_refused(server: Target) -> None:
    with trio.fail_after(10):
        with pytest.raises(ConnectionRefused) as caught:
            async with connect(server.url, auth={"token": "bad"}, **FAST):
                pytest.fail("connected despite the refusal")
    assert caught.value.message == "Authentication error"
    assert caught.value.data == {"reason": "bad token"}


async def test_auth_query_and_headers(server: Target) -> None:
    auth = {"token": "good", "user": "ada"}
    with trio.fail_after(10):
        async with connect(
            server.url + "/?room=7",
            auth=auth,
            query={"x": "1"},
            headers={"X-Test": "yes"},
            transports=["websocket"],
            **FAST,
        ) as socket:
            (welcome,) = (await socket.wait_for("welcome", timeout=5)).args
            assert welcome["auth"] == auth
            seen = await socket.emit_with_ack("handshake")
            assert seen["query"]["x"] == "1" and seen["query"]["room"] == "7"
            assert seen["header"] == "yes"


async def test_namespaces_over_one_connection(server: Target) -> None:
    with trio.fail_after(10):
        async with connect(server.url, **FAST) as main:
            async with main.manager.connect("/admin", auth={"role": "admin"}) as admin:
                assert admin.namespace == "/admin" and admin.id != main.id
                (welcome,) = (await admin.wait_for("welcome", timeout=5)).args
                assert welcome == {
                    "id": admin.id,
                    "nsp": "/admin",
                    "auth": {"role": "admin"},
                    "recovered": False,
                }
                assert await admin.emit_with_ack("echo", b"a", 2) == (b"a", 2)
                assert await main.emit_with_ack("echo", "main") == "main"
            with pytest.raises(ConnectionRefused):
                async with main.manager.connect("/admin", auth={"token": "bad"}):
                    pass
            assert await main.emit_with_ack("echo", "still") == "still"


async def test_server_asks_the_client(server: Target) -> None:
    with trio.fail_after(10):
        async with connect(server.url, transports=["websocket"], **FAST) as socket:

            @socket.on("question")
            async def question(n: int, blob: bytes) -> dict[str, Any]:
                return {"double": n * 2, "blob": blob[::-1]}

            answer = await socket.emit_with_ack(
                "ask", {"event": "question", "args": [21, b"\x01\x02"]}
            )
            assert answer == {"reply": {"double": 42, "blob": b"\x02\x01"}}


async def test_events_before_a_handler_are_kept_in_order(server: Target) -> None:
    with trio.fail_after(10):
        async with connect(server.url, transports=["websocket"], **FAST) as socket:
            assert await socket.emit_with_ack("burst", 30) == 30
            got: list[Any] = []
            done = trio.Event()

            @socket.on("seq")
            def seq(i: int, *rest: Any) -> None:
                got.append([i, *rest])
                if i == 29:
                    done.set()

            await done.wait()
            assert [g[0] for g in got] == list(range(30))
            assert all(g[1:] == ([bytes([g[0], 1, 2])] if g[0] % 3 == 0 else []) for g in got)


async def test_iteration_gets_kept_events_then_new_ones(server: Target) -> None:
    with trio.fail_after(10):
        async with connect(server.url, transports=["websocket"], **FAST) as socket:
            assert await socket.emit_with_ack("burst", 5) == 5
            names = []
            async for event in socket:
                names.append((event.name, event.args[0] if event.args else None))
                if event.name == "seq" and event.args[0] == 4:
                    socket.emit("echo-event", "last")
                if event.name == "echo":
                    break
            assert names[0][0] == "welcome"
            assert names[1:] == [("seq", i) for i in range(5)] + [("echo", "last")]


async def test_server_disconnect_ends_the_socket(server: Target) -> None:
    with trio.fail_after(10):
        async with connect(server.url, transports=["websocket"], **FAST) as socket:
            reasons: list[str] = []
            socket.on("disconnect", reasons.append)
            await socket.wait_for("welcome", timeout=5)
            socket.emit("disconnect-me")
            async for _ in socket:  # ends when the socket does
                pass
            assert socket.disconnect_reason == "io server disconnect"
            assert not socket.connected
            with pytest.raises(SocketDisconnected):
                socket.emit("echo", 1)
            await until(lambda: bool(reasons), 5)
            assert reasons == ["io server disconnect"]


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]])
async def test_reconnects_after_server_restart(server: Target, transports: list[str]) -> None:
    with trio.fail_after(30):
        async with connect(server.url, transports=transports, **FAST) as socket:
            attempts: list[int] = []
            socket.manager.on("reconnect_attempt", attempts.append)
            connects: list[str | None] = []
            socket.on("connect", lambda: connects.append(socket.id))
            first = socket.id
            await server.stop()
            await until(lambda: not socket.connected, 10)
            socket.emit("echo-event", "buffered while down")
            assert socket.volatile.emit("echo-event", "volatile: dropped") is False
            await server.start()
            (echo,) = (await socket.wait_for("echo", timeout=10)).args
            assert echo == "buffered while down"
            assert socket.connected and socket.id != first and not socket.recovered
            assert attempts and attempts[0] == 1
            assert connects == [socket.id]


async def test_connection_state_recovery(recovering_server: Target) -> None:
    server = recovering_server
    with trio.fail_after(30):
        async with (
            connect(server.url, transports=["websocket"], **FAST) as a,
            connect(server.url, transports=["websocket"], **FAST) as b,
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
            await until(lambda: bool(reconnected) and a.connected, 10)
            assert a.id == first
            assert a.recovered
            assert await a.emit_with_ack("echo", "after") == "after"
            assert missed == [0, 1, 2, 3, 4]


async def test_manager_without_connect(server: Target) -> None:
    """The Manager on its own: two namespaces opened from it, one Engine.IO session."""
    with trio.fail_after(10):
        async with Manager(server.url, transports=["websocket"]) as manager:
            async with manager.connect("/") as one, manager.connect("/admin") as two:
                assert isinstance(one, ClientSocket) and isinstance(two, ClientSocket)
                assert manager.engine is not None and manager.engine.info is not None
                assert await one.emit_with_ack("echo", 1) == 1
                assert await two.emit_with_ack("echo", 2) == 2

"""Listeners and handler habits of Node's socket.io and python-socketio: ``prepend_any``,
``off_any``, ``listeners_any``, the outgoing family (``on_any_outgoing``...), ``socket.off``
and ``once``, the namespace catch-all ``"*"``, class-based namespaces
(``NamespaceHandlers`` + ``register_namespace``) and sync connection middleware. Driven by
pyserver's Trio client against a Server in the test's Trio run (both transports where the
path differs: the outgoing listeners see what is sent whatever carries it)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from pyserver import ConnectionRefused, NamespaceHandlers, Server, testing
from pyserver.trio.socketio.socket import Socket

TRANSPORTS = [["polling"], ["websocket"]]


@pytest.fixture
async def sio() -> Server:
    return Server()


@pytest.fixture
async def url(sio: Server) -> AsyncIterator[str]:
    async with testing.serve(sio) as url:
        yield url


async def _only_socket(sio: Server, nsp: str = "/") -> Socket:
    (socket,) = sio.namespaces[nsp].sockets.values()
    return socket


# -- incoming catch-alls -----------------------------------------------------------------


async def test_prepend_off_and_listeners_any(sio: Server, url: str) -> None:
    seen: list[tuple[str, Any]] = []

    def first(event: str, *args: Any) -> None:
        seen.append(("first", event))

    async def second(event: str, *args: Any) -> None:
        seen.append(("second", event))

    def front(event: str, *args: Any) -> None:
        seen.append(("front", event))

    @sio.on("connection")
    def connection(socket: Socket) -> None:
        socket.on_any(first)
        socket.on_any(second)
        socket.prepend_any(front)
        assert socket.listeners_any() == [front, first, second]

    @sio.on("drop")
    def drop(socket: Socket, which: str) -> list[str]:
        socket.off_any({"first": first, "front": front}[which] if which != "all" else None)
        return [f.__name__ for f in socket.listeners_any()]

    async with testing.connect(url) as client:
        assert await client.emit_with_ack("drop", "first") == ["front", "second"]
        assert seen == [("front", "drop"), ("first", "drop"), ("second", "drop")]
        seen.clear()
        assert await client.emit_with_ack("drop", "front") == ["second"]
        assert seen == [("front", "drop"), ("second", "drop")]  # removed after this event
        seen.clear()
        assert await client.emit_with_ack("drop", "all") == []
        assert seen == [("second", "drop")]
        seen.clear()
        assert await client.emit_with_ack("drop", "all") == []
        assert seen == []


async def test_a_listener_removing_itself_does_not_skip_the_next(sio: Server, url: str) -> None:
    seen: list[str] = []

    @sio.on("connection")
    def connection(socket: Socket) -> None:
        def once(event: str, *args: Any) -> None:
            seen.append("once")
            socket.off_any(once)

        socket.on_any(once)
        socket.on_any(lambda event, *args: seen.append("always"))

    @sio.on("ping")
    def ping(socket: Socket) -> str:
        return "pong"

    async with testing.connect(url) as client:
        assert await client.emit_with_ack("ping") == "pong"
        assert await client.emit_with_ack("ping") == "pong"
    assert seen == ["once", "always", "always"]


# -- outgoing listeners --------------------------------------------------------------------


@pytest.mark.parametrize("transports", TRANSPORTS)
async def test_outgoing_listeners_see_emits_acks_asked_and_broadcasts(
    sio: Server, url: str, transports: list[str]
) -> None:
    out: list[tuple[str, ...]] = []

    def logger(event: str, *args: Any) -> None:
        out.append((event, *args))

    def front(event: str, *args: Any) -> None:
        out.append(("front", event))

    @sio.on("connection")
    def connection(socket: Socket) -> None:
        socket.on_any_outgoing(logger)
        socket.prepend_any_outgoing(front)
        assert socket.listeners_any_outgoing() == [front, logger]

    @sio.on("go")
    async def go(socket: Socket) -> None:
        socket.emit("direct", 1)
        sio.emit("to all", 2)
        sio.to("nobody").emit("to nobody", 3)  # not sent to this socket: not seen
        assert await socket.emit_with_ack("question", 4) == "answer"
        socket.off_any_outgoing(front)
        socket.emit("after off", 5)
        socket.off_any_outgoing()
        socket.emit("after all off", 6)
        return None

    async with testing.connect(url, transports=transports) as client:
        client.on("question", lambda n: "answer")
        await client.emit_with_ack("go")
        assert await testing.wait_for_event(client, "after all off") == [6]
    assert out == [
        ("front", "direct"),
        ("direct", 1),
        ("front", "to all"),
        ("to all", 2),
        ("front", "question"),
        ("question", 4),
        ("after off", 5),
    ]


async def test_outgoing_listeners_count_on_the_adapter(sio: Server, url: str) -> None:
    """A broadcast looks for outgoing listeners only while a connected socket has some."""

    def listener(event: str, *args: Any) -> None:
        pass

    left = trio.Event()
    sio.on("disconnect", lambda socket, reason: left.set())

    @sio.on("watch")
    def watch(socket: Socket, on: bool) -> int:
        if on:
            socket.on_any_outgoing(listener)
        else:
            socket.off_any_outgoing(listener)
        return sio.main.adapter.outgoing_watchers

    async with testing.connect(url) as client:
        assert await client.emit_with_ack("watch", True) == 1
        assert await client.emit_with_ack("watch", True) == 1  # the same socket
        assert await client.emit_with_ack("watch", False) == 1  # one listener left
        assert await client.emit_with_ack("watch", False) == 0
        assert await client.emit_with_ack("watch", True) == 1
    with trio.fail_after(5):  # the socket leaves: no longer counted
        await left.wait()
    assert sio.main.adapter.outgoing_watchers == 0


async def test_an_async_outgoing_listener_is_refused() -> None:
    sio = Server()

    async def listener(event: str, *args: Any) -> None:
        pass

    refused: list[str] = []

    @sio.on("connection")
    def connection(socket: Socket) -> None:
        try:
            socket.on_any_outgoing(listener)
        except TypeError as exc:
            refused.append(str(exc))
        socket.emit("ready")

    async with testing.serve(sio) as url, testing.connect(url) as client:
        await testing.wait_for_event(client, "ready")
    assert refused and "plain function" in refused[0]


async def test_a_failing_outgoing_listener_does_not_stop_the_emit(
    sio: Server, url: str, caplog: pytest.LogCaptureFixture
) -> None:
    @sio.on("connection")
    def connection(socket: Socket) -> None:
        socket.on_any_outgoing(lambda event, *args: 1 / 0)
        socket.emit("still sent", 1)

    async with testing.connect(url) as client:
        assert await testing.wait_for_event(client, "still sent") == [1]
    assert "on_any_outgoing listener failed" in caplog.text


# -- per-socket off and once ----------------------------------------------------------------


async def test_socket_once_and_off(sio: Server, url: str) -> None:
    @sio.on("connection")
    def connection(socket: Socket) -> None:
        socket.once("hello", lambda: "first hello")

        @socket.on("echo")
        def echo(value: Any) -> Any:
            return value

        @socket.on("stop")
        def stop(which: str) -> str:
            socket.off(which, echo if which == "echo" else None)
            return "stopped"

    @sio.on("hello")
    def hello(socket: Socket) -> str:  # the namespace's handler, behind the socket's
        return "namespace hello"

    @sio.on("echo")
    def ns_echo(socket: Socket, value: Any) -> str:
        return "namespace echo"

    async with testing.connect(url) as client:
        assert await client.emit_with_ack("hello") == "first hello"
        assert await client.emit_with_ack("hello") == "namespace hello"
        assert await client.emit_with_ack("echo", 7) == 7
        assert await client.emit_with_ack("stop", "echo") == "stopped"
        assert await client.emit_with_ack("echo", 7) == "namespace echo"


async def test_off_removes_a_once_handler_by_its_function(sio: Server, url: str) -> None:
    def greet() -> str:
        return "socket"

    @sio.on("connection")
    def connection(socket: Socket) -> None:
        socket.once("greet", greet)
        socket.off("greet", lambda: None)  # another function: nothing removed
        assert "greet" in socket._handlers
        socket.off("greet", greet)
        socket.emit("ready")

    @sio.on("greet")
    def ns_greet(socket: Socket) -> str:
        return "namespace"

    async with testing.connect(url) as client:
        await testing.wait_for_event(client, "ready")
        assert await client.emit_with_ack("greet") == "namespace"


# -- the namespace catch-all --------------------------------------------------------------


async def test_namespace_catch_all_answers_events_without_handler(sio: Server, url: str) -> None:
    @sio.on("known")
    def known(socket: Socket, value: int) -> str:
        return f"known {value}"

    @sio.on("*")
    async def anything(socket: Socket, event: str, *args: Any) -> list[Any]:
        return [socket.connected, event, *args]

    async with testing.connect(url) as client:
        assert await client.emit_with_ack("known", 1) == "known 1"
        assert await client.emit_with_ack("unknown", 1, {"a": 2}) == [True, "unknown", 1, {"a": 2}]


# -- class-based namespaces ------------------------------------------------------------------


class Chat(NamespaceHandlers):
    def __init__(self, namespace: str) -> None:
        super().__init__(namespace)
        self.left: list[str] = []

    async def on_connect(self, socket: Socket) -> None:
        socket.join("lobby")
        socket.emit("welcome", self.namespace)

    async def on_message(self, socket: Socket, text: str) -> str:
        self.to("lobby").emit("message", text)
        return "sent"

    def on_add(self, socket: Socket, a: int, b: int) -> int:
        return a + b

    def on_any_event(self, socket: Socket, event: str, *args: Any) -> str:
        return f"caught {event}"

    def on_disconnect(self, socket: Socket, reason: str) -> None:
        self.left.append(reason)


async def test_class_based_namespace(sio: Server, url: str) -> None:
    chat = Chat("chat")
    nsp = sio.register_namespace(chat)
    assert nsp is sio.namespaces["/chat"] and chat.nsp is nsp
    assert set(chat.handlers()) == {"connection", "message", "add", "*", "disconnect"}
    async with testing.connect(url + "/chat") as alice, testing.connect(url + "/chat") as bob:
        assert await testing.wait_for_event(alice, "welcome") == ["/chat"]
        assert await alice.emit_with_ack("add", 2, 3) == 5
        assert await alice.emit_with_ack("message", "hi") == "sent"
        assert await testing.wait_for_event(bob, "message") == ["hi"]
        assert await bob.emit_with_ack("what") == "caught what"
    with pytest.raises(RuntimeError, match="already registered"):
        sio.register_namespace(chat)


async def test_unregistered_handlers_say_so() -> None:
    with pytest.raises(RuntimeError, match="register_namespace"):
        Chat("/x").emit("nothing")


# -- sync connection middleware -------------------------------------------------------------


async def test_sync_connection_middleware(sio: Server, url: str) -> None:
    @sio.use
    def check(socket: Socket) -> None:
        if socket.handshake.auth.get("token") != "ok":
            raise ConnectionRefused("bad token", data={"code": 7})
        socket.data["user"] = "ada"

    @sio.on("whoami")
    def whoami(socket: Socket) -> str:
        return str(socket.data["user"])

    async with testing.connect(url, auth={"token": "ok"}) as client:
        assert await client.emit_with_ack("whoami") == "ada"
    with pytest.raises(ConnectionRefused) as refused:
        async with testing.connect(url, auth={"token": "no"}):
            pass
    assert refused.value.message == "bad token"

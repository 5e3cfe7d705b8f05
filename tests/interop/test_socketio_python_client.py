"""python-socketio's clients (``socketio.Client``, ``SimpleClient``, ``AsyncClient``, 5.x)
against our Socket.IO server.

The server is ours, in-process (a background thread with its own ``trio.run``), running the
"test protocol" of ``conftest.SioSite`` (echo, ack, rooms, broadcast forms, asking the client
for an ack, ...). python-socketio's sync client runs its own threads; what its handlers see is
collected in an :class:`Inbox` and waited for with a bound.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import socketio  # python-socketio[client], a dev dependency: missing is a setup error

from .conftest import SioSite

pytestmark = pytest.mark.interop

TRANSPORTS = ["websocket", "polling"]
WAIT = 10.0
CLIENT_LEFT = ("client namespace disconnect", "transport close")
# Over polling, python-engineio's write loop checks ``state == "connected"`` after each POST
# returns. When disconnect() runs while a POST is still waiting for its response (the ack it
# waited for came back on the GET first), the loop ends with DISCONNECT and CLOSE still queued:
# nothing reaches the server, and the client only stops answering pings. Any server, Node's
# included, then sees the client leave by its heartbeat (about 1 in 100 runs here).
POLLING_CLIENT_LEFT = (*CLIENT_LEFT, "ping timeout")
# Short enough that a heartbeat notices such a client within WAIT, long enough for a loaded
# machine's client threads to answer pings in time.
PING_INTERVAL = 2.0
PING_TIMEOUT = 4.0
AUTH_REFUSED = {"message": "Authentication error", "data": {"reason": "bad token"}}


@pytest.fixture(scope="module")
def site() -> Iterator[SioSite]:
    s = SioSite(ping_interval=PING_INTERVAL, ping_timeout=PING_TIMEOUT)
    s.start()
    try:
        yield s
    finally:
        s.stop()


class Inbox:
    """What a client's handlers received: (event, namespace, args), in arrival order."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str, tuple[Any, ...]]] = []
        self.cond = threading.Condition()

    def put(self, event: str, namespace: str, args: tuple[Any, ...]) -> None:
        with self.cond:
            self.items.append((event, namespace, args))
            self.cond.notify_all()

    def of(self, event: str, namespace: str = "/") -> list[tuple[Any, ...]]:
        with self.cond:
            return [a for e, n, a in self.items if e == event and n == namespace]

    def wait(
        self, event: str, namespace: str = "/", count: int = 1, timeout: float = WAIT
    ) -> list[tuple[Any, ...]]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                found = [a for e, n, a in self.items if e == event and n == namespace]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"{event!r} on {namespace} x{count} not received in {timeout}s; "
                        f"got {self.items}"
                    )
                self.cond.wait(left)


def recording(client: Any, inbox: Inbox, events: list[str], namespace: str = "/") -> None:
    """Record ``events`` (plus connect, connect_error, disconnect) on ``namespace``."""

    def handler_for(event: str) -> Callable[..., None]:
        def handler(*args: Any) -> None:
            inbox.put(event, namespace, args)

        return handler

    for event in [*events, "connect", "connect_error", "disconnect"]:
        client.on(event, handler_for(event), namespace=namespace)


def client_left(transports: str) -> tuple[str, ...]:
    """The reasons the server may give for a python-socketio client that disconnected."""
    return POLLING_CLIENT_LEFT if transports == "polling" else CLIENT_LEFT


def new_client(**kwargs: Any) -> Any:
    return socketio.Client(reconnection=False, request_timeout=5, **kwargs)


def fenced(clients: dict[str, Any], inboxes: dict[str, Inbox], sender: str, n: int) -> None:
    """After the sender's broadcast was acked: a namespace-wide "fence" n; once every client has
    it, it has everything sent to it before (each connection delivers in order)."""
    assert clients[sender].call("fence", n, timeout=WAIT) == n
    for name, inbox in inboxes.items():
        fences = inbox.wait("fence", count=n)
        assert fences[-1] == (n,), (name, fences)


# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("transports", TRANSPORTS)
def test_connect_with_auth_events_and_acks(site: SioSite, transports: str) -> None:
    client = new_client()
    inbox = Inbox()
    recording(client, inbox, ["init", "echo"])
    auth = {"token": "py-secret", "n": 1}
    client.connect(site.url, auth=auth, transports=[transports], wait_timeout=WAIT)
    try:
        assert client.transport() == transports
        sid = client.get_sid("/")
        [(init,)] = inbox.wait("init")
        assert init == {"id": sid, "nsp": "/", "auth": auth}
        assert site.wait_connected(sid) == {"nsp": "/", "auth": auth}
        # Events both ways.
        client.emit("echo", ("text", 3, {"nested": [1, None, 2.5]}))
        [echo] = inbox.wait("echo")
        assert echo == ("text", 3, {"nested": [1, None, 2.5]})
        # client -> server acks: one argument, and a tuple (several arguments).
        assert client.call("echo-ack", "single", timeout=WAIT) == "single"
        assert client.call("echo-ack", ("a", [1, 2], {"k": "v"}), timeout=WAIT) == (
            "a",
            [1, 2],
            {"k": "v"},
        )
    finally:
        client.disconnect()
    # python-socketio queues DISCONNECT and then closes its WebSocket without waiting for the
    # queue, so the packet is often lost: Node's own socket.io server then reports "transport
    # close" too (9 times in 10, measured). The Node client test checks the exact reason.
    assert site.wait_disconnect(sid) in client_left(transports)


@pytest.mark.parametrize("transports", TRANSPORTS)
def test_connect_refused_with_data(site: SioSite, transports: str) -> None:
    client = new_client()
    inbox = Inbox()
    recording(client, inbox, [])
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(site.url, auth={"token": "bad"}, transports=[transports], wait_timeout=WAIT)
    [(err,)] = inbox.wait("connect_error")
    assert err == AUTH_REFUSED
    assert not inbox.of("connect")
    client.disconnect()


def test_invalid_namespace(site: SioSite) -> None:
    client = new_client()
    inbox = Inbox()
    recording(client, inbox, [], namespace="/nope")
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(site.url, namespaces=["/nope"], transports=["websocket"], wait_timeout=WAIT)
    [(err,)] = inbox.wait("connect_error", namespace="/nope")
    assert err == {"message": "Invalid namespace"}
    client.disconnect()


def test_acks_server_to_client(site: SioSite) -> None:
    client = new_client()

    @client.on("question")
    def question(a: Any, b: Any) -> dict[str, Any]:
        return {"answer": [a, b], "from": "py"}

    late = threading.Event()

    @client.on("slow")
    def slow() -> str:
        # python-socketio acks every event that asks (even unhandled ones), so "no answer in
        # time" is an answer that comes too late: the server must time out and drop it.
        late.wait(1.0)
        return "too late"

    client.connect(site.url, transports=["websocket"], wait_timeout=WAIT)
    try:
        got = client.call(
            "ask", {"event": "question", "args": ["what", 7], "timeout": 5}, timeout=WAIT
        )
        assert got == {"reply": [{"answer": ["what", 7], "from": "py"}]}
        got = client.call("ask", {"event": "slow", "args": [], "timeout": 0.3}, timeout=WAIT)
        assert "error" in got and "Timeout" in got["error"], got
        assert client.call("echo-ack", "still-alive", timeout=WAIT) == "still-alive"
    finally:
        client.disconnect()


@pytest.mark.parametrize("transports", TRANSPORTS)
def test_binary_both_ways(site: SioSite, transports: str) -> None:
    client = new_client()
    inbox = Inbox()
    recording(client, inbox, ["echo"])

    @client.on("bin-question")
    def bin_question(q: Any) -> dict[str, Any]:
        return {"youSent": q, "mine": b"\xca\xfe"}

    client.connect(site.url, transports=[transports], wait_timeout=WAIT)
    try:
        payload = {
            "text": "h\u00e9llo",
            "blob": bytes([0, 1, 2, 253, 254, 255]),
            "nested": {"list": [1, b"nested bytes", {"deeper": b""}], "flag": True},
        }
        client.emit("echo", (payload, b"second arg"))
        [echo] = inbox.wait("echo")
        assert echo == (payload, b"second arg")
        assert client.call("echo-ack", (b"\x09\x08\x07", {"b": b"ack me"}), timeout=WAIT) == (
            b"\x09\x08\x07",
            {"b": b"ack me"},
        )
        got = client.call(
            "ask", {"event": "bin-question", "args": [b"\x01\x02\x03"], "timeout": 5}, timeout=WAIT
        )
        assert got == {"reply": [{"youSent": b"\x01\x02\x03", "mine": b"\xca\xfe"}]}
    finally:
        client.disconnect()


@pytest.mark.parametrize("transports", TRANSPORTS)
def test_namespaces(site: SioSite, transports: str) -> None:
    client = new_client()
    inbox = Inbox()
    namespaces = ["/", "/chat", "/dyn-7"]
    for nsp in namespaces:
        recording(client, inbox, ["init", "echo"], namespace=nsp)
    client.connect(
        site.url,
        auth={"token": "multi"},
        namespaces=namespaces,
        transports=[transports],
        wait_timeout=WAIT,
    )
    try:
        sids = {nsp: client.get_sid(nsp) for nsp in namespaces}
        assert len(set(sids.values())) == 3, sids
        for nsp in namespaces:
            [(init,)] = inbox.wait("init", namespace=nsp)
            assert init == {"id": sids[nsp], "nsp": nsp, "auth": {"token": "multi"}}
            client.emit("echo", f"in {nsp}", namespace=nsp)
            assert inbox.wait("echo", namespace=nsp) == [(f"in {nsp}",)]
            assert client.call("echo-ack", nsp, namespace=nsp, timeout=WAIT) == nsp
        # A namespace-wide emit in /chat is not seen in "/" nor in /dyn-7.
        assert (
            client.call(
                "broadcast",
                {"form": "all", "event": "echo", "data": "chat-only"},
                namespace="/chat",
                timeout=WAIT,
            )
            == "ok"
        )
        inbox.wait("echo", namespace="/chat", count=2)
        assert client.call("echo-ack", "sync", timeout=WAIT) == "sync"
        assert inbox.of("echo", "/") == [("in /",)]
        assert inbox.of("echo", "/dyn-7") == [("in /dyn-7",)]
    finally:
        client.disconnect()
    for nsp in namespaces:
        assert site.wait_disconnect(sids[nsp]) in client_left(transports), nsp


@pytest.mark.parametrize("transports", TRANSPORTS)
def test_rooms_broadcast(site: SioSite, transports: str) -> None:
    names = ["A", "B", "C"]
    clients = {n: new_client() for n in names}
    inboxes = {n: Inbox() for n in names}
    for n in names:
        recording(clients[n], inboxes[n], ["bcast", "fence"])
    try:
        for n in names:
            clients[n].connect(
                site.url, auth={"token": n}, transports=[transports], wait_timeout=WAIT
            )
        ids = {n: clients[n].get_sid("/") for n in names}
        assert clients["A"].call("join", "r1", timeout=WAIT) == sorted([ids["A"], "r1"])
        clients["B"].call("join", "r1", timeout=WAIT)
        assert clients["B"].call("join", "r2", timeout=WAIT) == sorted([ids["B"], "r1", "r2"])
        clients["C"].call("join", "r2", timeout=WAIT)
        assert clients["A"].call("fetch-room", "r2", timeout=WAIT) == sorted([ids["B"], ids["C"]])
        cases = [
            ("all", "A", {"form": "all"}, {"A", "B", "C"}),
            ("broadcast", "A", {"form": "broadcast"}, {"B", "C"}),
            ("to-r1", "C", {"form": "to", "rooms": ["r1"]}, {"A", "B"}),
            ("to-r1-r2", "A", {"form": "to", "rooms": ["r1", "r2"]}, {"A", "B", "C"}),
            ("to-except", "A", {"form": "to-except", "rooms": ["r2"], "except": ["r1"]}, {"C"}),
            ("socket-to-r1", "A", {"form": "socket-to", "rooms": ["r1"]}, {"B"}),
            ("binary", "C", {"form": "to-binary", "rooms": ["r2"]}, {"B", "C"}),
        ]
        for fence_no, (label, sender, spec, expected) in enumerate(cases, start=1):
            before = {n: len(inboxes[n].of("bcast")) for n in names}
            reply = clients[sender].call(
                "broadcast", {"event": "bcast", "data": label, **spec}, timeout=WAIT
            )
            assert reply == "ok"
            fenced(clients, inboxes, sender, fence_no)
            want = (label, f"bin:{label}".encode()) if label == "binary" else (label,)
            for n in names:
                got = inboxes[n].of("bcast")[before[n] :]
                assert got == ([want] if n in expected else []), (label, n, got)
    finally:
        for c in clients.values():
            c.disconnect()


def test_room_emit_with_ack(site: SioSite) -> None:
    names = ["P", "Q"]
    clients = {n: new_client() for n in names}
    for n in names:
        clients[n].on("poll", lambda data, n=n: {"from": n, "data": data})
    try:
        for n in names:
            clients[n].connect(site.url, transports=["websocket"], wait_timeout=WAIT)
            clients[n].call("join", "py-ackroom", timeout=WAIT)
        got = clients["P"].call(
            "ask-room",
            {"room": "py-ackroom", "event": "poll", "data": "q", "timeout": 5},
            timeout=WAIT,
        )
        assert "replies" in got, got
        assert sorted(r["from"] for r in got["replies"]) == ["P", "Q"]
        assert all(r["data"] == "q" for r in got["replies"])
    finally:
        for c in clients.values():
            c.disconnect()


def test_server_disconnect_reason(site: SioSite) -> None:
    client = new_client()
    inbox = Inbox()
    recording(client, inbox, [])
    client.connect(site.url, transports=["websocket"], wait_timeout=WAIT)
    sid = client.get_sid("/")
    client.emit("disconnect-me")
    [args] = inbox.wait("disconnect")
    assert args == (client.reason.SERVER_DISCONNECT,)  # python-socketio: "server disconnect"
    assert site.wait_disconnect(sid) == "server namespace disconnect"
    client.disconnect()


@pytest.mark.parametrize("transports", TRANSPORTS)
def test_simple_client(site: SioSite, transports: str) -> None:
    with socketio.SimpleClient() as client:
        client.connect(
            site.url, auth={"token": "simple"}, transports=[transports], wait_timeout=WAIT
        )
        event, payload = client.receive(timeout=WAIT)
        assert event == "init" and payload == {
            "id": client.sid,
            "nsp": "/",
            "auth": {"token": "simple"},
        }
        client.emit("echo", ("x", b"\x00\xff"))
        assert client.receive(timeout=WAIT) == ["echo", "x", b"\x00\xff"]
        assert client.call("echo-ack", ("y", 2), timeout=WAIT) == ("y", 2)


def test_async_client(site: SioSite) -> None:
    """The asyncio client, in an event loop of its own (this test is a plain sync test)."""

    async def scenario() -> tuple[Any, Any, Any]:
        client = socketio.AsyncClient(reconnection=False)
        inits: asyncio.Queue[Any] = asyncio.Queue()
        client.on("init", inits.put)
        await client.connect(
            site.url, auth={"token": "aio"}, transports=["websocket"], wait_timeout=WAIT
        )
        try:
            init = await asyncio.wait_for(inits.get(), WAIT)
            ack = await client.call("echo-ack", ("a", b"\x01"), timeout=WAIT)
            rooms = await client.call("join", "aio-room", timeout=WAIT)
            return init, ack, rooms
        finally:
            await client.disconnect()

    init, ack, rooms = asyncio.run(asyncio.wait_for(scenario(), 3 * WAIT))
    assert init["auth"] == {"token": "aio"} and init["nsp"] == "/"
    assert ack == ("a", b"\x01")
    assert rooms == sorted([init["id"], "aio-room"])


@pytest.mark.parametrize("transports", TRANSPORTS)
def test_reconnects_after_server_restart(transports: str) -> None:
    """The server stops; a new one starts on the same port; the client reconnects by itself."""
    first = SioSite()
    port = first.start()
    second: SioSite | None = None
    client = socketio.Client(
        reconnection=True,
        reconnection_delay=0.1,
        reconnection_delay_max=0.3,
        randomization_factor=0,
        request_timeout=5,
    )
    inbox = Inbox()
    recording(client, inbox, ["init"])
    try:
        client.connect(
            first.url, auth={"token": "py-again"}, transports=[transports], wait_timeout=WAIT
        )
        old_sid = client.get_sid("/")
        inbox.wait("init")
        first.stop()
        inbox.wait("disconnect")
        second = SioSite()
        assert second.start(port=port) == port
        inbox.wait("connect", count=2)
        new_sid = client.get_sid("/")
        assert new_sid != old_sid
        [_, (init,)] = inbox.wait("init", count=2)
        assert init == {"id": new_sid, "nsp": "/", "auth": {"token": "py-again"}}
        assert second.wait_connected(new_sid) == {"nsp": "/", "auth": {"token": "py-again"}}
        assert client.call("echo-ack", "after", timeout=WAIT) == "after"
    finally:
        client.disconnect()
        first.stop()
        if second is not None:
            second.stop()

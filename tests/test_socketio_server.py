"""The Socket.IO server end to end: pyserver's Trio client (:mod:`pyserver.testing`), raw
Engine.IO over WebSocket (``websockets``) and long-polling (``urllib``) against
``pyserver.Server`` on loopback.

Covers connection (auth, middleware refusal, invalid and dynamic namespaces), events and acks
both ways (several arguments, binary), per-packet middleware, on_any, disconnect reasons,
malformed input, connect timeout, rate limits and statistics.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.request
from typing import Any

import pytest
import trio
from helpers.sio_client import RawClient, eventually, in_thread, next_event, serving
from websockets.sync.client import connect

from pyserver import ConnectionRefused, Server, testing
from pyserver.socketio.ratelimit import RateLimiter, Verdict
from pyserver.trio.socketio import Socket


class Log:
    """Things the server's handlers saw, waitable from the test."""

    def __init__(self) -> None:
        self.items: list[tuple[Any, ...]] = []
        self._changed = trio.Event()

    def add(self, *item: Any) -> None:
        self.items.append(item)
        self._changed.set()
        self._changed = trio.Event()

    async def wait(self, kind: str, count: int = 1) -> list[tuple[Any, ...]]:
        while True:
            found = [item for item in self.items if item[0] == kind]
            if len(found) >= count:
                return found
            await self._changed.wait()


def chat_server(**options: Any) -> tuple[Server, Log]:
    sio = Server(**options)
    log = Log()

    @sio.on("connection")
    async def connected(socket: Socket) -> None:
        log.add("connection", socket.id, socket.handshake.auth, socket.handshake.query)
        socket.emit("init", {"id": socket.id})

    @sio.on("disconnect")
    async def gone(socket: Socket, reason: str) -> None:
        log.add("disconnect", socket.id, reason)

    @sio.on("echo")
    async def echo(socket: Socket, *args: Any) -> tuple[Any, ...]:
        socket.emit("echo", *args)
        return args

    @sio.on("echo-ack")
    async def echo_ack(socket: Socket, *args: Any) -> tuple[Any, ...]:
        return args

    @sio.on("fail")
    async def fail(socket: Socket) -> None:
        raise RuntimeError("boom")

    @sio.on("ask-client")
    async def ask_client(socket: Socket, event: str, *args: Any) -> Any:
        reply = await socket.emit_with_ack(event, *args, timeout=5)
        return {"reply": list(reply) if isinstance(reply, tuple) else reply}

    @sio.on("bye")
    async def bye(socket: Socket) -> None:
        socket.disconnect()

    return sio, log


@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_connect_auth_events_and_acks(transport: str) -> None:
    sio, log = chat_server()
    with trio.fail_after(20):
        async with serving(sio) as url:
            async with testing.connect(
                url + "/?room=a", transports=[transport], auth={"token": "t1"}
            ) as client:
                client.on("ask", lambda *args: args[0] if len(args) == 1 else args)
                client.on("ask-many", lambda *args: ("one", 2, b"\x03"))
                (init,) = await next_event(client, "init")
                assert init == {"id": client.id}
                [(_, sid, auth, query)] = await log.wait("connection")
                assert sid == client.id and auth == {"token": "t1"} and query["room"] == "a"
                # events both ways
                client.emit("echo", "hello")
                assert await next_event(client, "echo") == ["hello"]
                # acks: one argument, several arguments, binary
                assert await client.emit_with_ack("echo-ack", "x") == "x"
                assert await client.emit_with_ack("echo-ack", "a", [1, 2], {"k": None}) == (
                    "a",
                    [1, 2],
                    {"k": None},
                )
                assert await client.emit_with_ack("echo-ack", b"\x00\xff", {"deep": [b"\x01"]}) == (
                    b"\x00\xff",
                    {"deep": [b"\x01"]},
                )
                # binary event from the client, echoed as a binary event
                client.emit("echo", {"blob": b"\x10\x20"})
                assert await next_event(client, "echo") == [{"blob": b"\x10\x20"}]
                # a failing handler answers the ack instead of leaving the client hanging
                assert await client.emit_with_ack("fail") == {"error": "internal server error"}
                # server -> client acks: one value, several (with binary)
                assert await client.emit_with_ack("ask-client", "ask", 42) == {"reply": 42}
                assert await client.emit_with_ack("ask-client", "ask-many") == {
                    "reply": ["one", 2, b"\x03"]
                }
            [(_, _, reason)] = await log.wait("disconnect")
            assert reason in ("client namespace disconnect", "transport close")


async def test_raw_packets_main_namespace_without_handlers() -> None:
    sio = Server()
    with trio.fail_after(10):
        async with serving(sio) as url:
            raw = await RawClient.open(url)
            sid = await raw.join("/")
            assert len(sid) == 20
            sio.emit("hi", 1, b"\x01")
            assert await raw.recv_sio() == '51-["hi",1,{"_placeholder":true,"num":0}]'
            assert await raw.recv() == b"\x01"
            # an event without a handler is ignored (no ack), the connection stays up
            await raw.send_sio('21["nobody",1]')
            sio.emit("still", "here")
            assert await raw.recv_sio() == '2["still","here"]'
            await raw.close()


async def test_invalid_namespace_and_middleware_refusal() -> None:
    sio = Server()

    @sio.use
    async def auth(socket: Socket) -> None:
        if socket.handshake.auth.get("token") != "good":
            raise ConnectionRefused("Authentication error", data={"reason": "bad token"})
        socket.data["user"] = "ada"
        socket.join("users")

    seen: list[Any] = []

    @sio.on("connection")
    async def connected(socket: Socket) -> None:
        seen.append((socket.data, set(socket.rooms)))

    with trio.fail_after(10):
        async with serving(sio) as url:
            raw = await RawClient.open(url)
            await raw.send_sio("0/nope,")
            assert await raw.recv_sio() == '4/nope,{"message":"Invalid namespace"}'
            await raw.send_sio('0{"token":"bad"}')
            assert await raw.recv_sio() == (
                '4{"message":"Authentication error","data":{"reason":"bad token"}}'
            )
            sid = await raw.join("/", {"token": "good"})
            await eventually(lambda: bool(seen))
            assert seen == [({"user": "ada"}, {sid, "users"})]
            await raw.close()
            # a client sees the refusal with its message and data
            with pytest.raises(ConnectionRefused) as info:
                async with testing.connect(url, auth={"token": "bad"}, transports=["websocket"]):
                    pass
            assert info.value.message == "Authentication error"
            assert info.value.data == {"reason": "bad token"}


async def test_namespaces_static_and_dynamic() -> None:
    sio = Server()
    chat = sio.of("/chat")
    dyn = sio.of(re.compile(r"^/dyn-\d+$"))
    pred = sio.of(lambda name, auth: name.startswith("/team-") and auth == {"ok": True})

    @chat.on("where")
    async def where_chat(socket: Socket) -> str:
        return "chat:" + socket.nsp.name

    @dyn.on("where")
    async def where_dyn(socket: Socket) -> str:
        return "dyn:" + socket.nsp.name

    @pred.on("where")
    async def where_pred(socket: Socket) -> str:
        return "pred:" + socket.nsp.name

    with trio.fail_after(10):
        async with serving(sio) as url:
            raw = await RawClient.open(url)
            await raw.join("/chat")
            await raw.send_sio('2/chat,1["where"]')
            assert await raw.recv_sio() == '3/chat,1["chat:/chat"]'
            await raw.join("/dyn-12")
            await raw.send_sio('2/dyn-12,2["where"]')
            assert await raw.recv_sio() == '3/dyn-12,2["dyn:/dyn-12"]'
            await raw.send_sio("0/dyn-x,")
            assert await raw.recv_sio() == '4/dyn-x,{"message":"Invalid namespace"}'
            await raw.send_sio('0/team-a,{"ok":false}')
            assert await raw.recv_sio() == '4/team-a,{"message":"Invalid namespace"}'
            await raw.join("/team-a", {"ok": True})
            await raw.send_sio('2/team-a,3["where"]')
            assert await raw.recv_sio() == '3/team-a,3["pred:/team-a"]'
            assert "/dyn-12" in sio.namespaces
            # a broadcast from the dynamic parent reaches its children
            dyn.emit("all", 1)
            assert await raw.recv_sio() == '2/dyn-12,["all",1]'
            await raw.close()


async def test_per_packet_middleware_error_handler_and_on_any() -> None:
    sio = Server()
    errors: list[str] = []
    anys: list[tuple[Any, ...]] = []

    @sio.on("connection")
    async def connected(socket: Socket) -> None:
        @socket.use
        async def guard(sock: Socket, packet: list[Any]) -> None:
            if packet[0] == "forbidden":
                raise ValueError("not allowed")
            if packet[0] == "rename":
                packet[0] = "renamed"

        socket.on("error", lambda exc: errors.append(str(exc)))
        socket.on_any(lambda event, *args: anys.append((event, *args)))

    @sio.on("renamed")
    async def renamed(socket: Socket, x: int) -> int:
        return x + 1

    with trio.fail_after(10):
        async with serving(sio) as url:
            raw = await RawClient.open(url)
            await raw.join()
            await raw.send_sio('21["forbidden"]')
            assert await raw.recv_sio() == '31[{"error":"not allowed"}]'
            assert errors == ["not allowed"]
            await raw.send_sio('22["rename",1]')
            assert await raw.recv_sio() == "32[2]"
            assert anys == [("renamed", 1)]
            await raw.close()


async def test_malformed_packet_ends_only_that_client() -> None:
    sio, log = chat_server()
    with trio.fail_after(10):
        async with serving(sio) as url:
            good = await RawClient.open(url)
            await good.join()
            for bad_packet in [
                '2["echo"',
                "9",
                '3["no ack id"]',
                '51-["x",{"_placeholder":true,"num":4}]',
            ]:
                bad = await RawClient.open(url)
                await bad.join()
                await bad.send_sio(bad_packet)
                if bad_packet.startswith("51-"):
                    await bad.send(b"\x00")
                await bad.wait_closed()
            reasons = [r for (_, _, r) in await log.wait("disconnect", 4)]
            assert reasons == ["parse error"] * 4
            await good.send_sio('21["echo","ok"]')
            assert await good.recv_sio() == '2["init",{"id":' + json.dumps(log.items[0][1]) + "}]"
            assert await good.recv_sio() == '2["echo","ok"]'
            assert await good.recv_sio() == '31["ok"]'
            await good.close()


class PollingClient:
    """Engine.IO v4 long-polling with urllib, payload by payload (blocking: use in_thread)."""

    def __init__(self, url: str) -> None:
        self.base = url + "/socket.io/?EIO=4&transport=polling"
        opening = self.get()
        assert opening[0].startswith("0")
        self.base += "&sid=" + json.loads(opening[0][1:])["sid"]

    def get(self) -> list[str]:
        with urllib.request.urlopen(self.base, timeout=5) as answer:
            body: bytes = answer.read()
        return body.decode().split("\x1e")

    def post(self, *packets: str) -> int:
        data = "\x1e".join(packets).encode()
        request = urllib.request.Request(self.base, data=data, method="POST")
        with urllib.request.urlopen(request, timeout=5) as answer:
            status: int = answer.status
        return status


async def test_packet_for_a_namespace_not_joined_ends_only_that_client(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The reference server (Client.ondecoded): "invalid state", then client.close(): Engine.IO
    # "forced close", every socket of that client "forced server close".
    sio, log = chat_server()
    sio.of("/chat")
    eio_reasons: list[str] = []
    on_disconnect = sio.eio.on_disconnect
    assert on_disconnect is not None

    def record(session: Any, reason: Any) -> None:
        eio_reasons.append(str(reason))
        on_disconnect(session, reason)

    sio.eio.on_disconnect = record
    caplog.set_level(logging.INFO, "pyserver.socketio")
    with trio.fail_after(15):
        async with serving(sio) as url:
            good = await RawClient.open(url)
            good_sid = await good.join()
            for bad_packet, join in [
                ('2/chat,["echo","x"]', True),
                ("3/chat,0[]", True),
                ("1/chat,", True),
                ('21["echo","before connect"]', False),
            ]:
                bad = await RawClient.open(url)
                if join:
                    await bad.join()
                await bad.send_sio(bad_packet)
                got = await bad.wait_closed()
                assert got[-1:] == ["1"], (bad_packet, got)
            # an event in flight when the server disconnected that socket: Node closes too
            bad = await RawClient.open(url)
            late_sid = await bad.join()
            await bad.send_sio('2["bye"]')
            while (packet := await bad.recv_sio()) != "1":
                assert packet.startswith('2["init"')
            await bad.send_sio('21["echo","late"]')
            assert (await bad.wait_closed())[-1:] == ["1"]
            # polling: the rest of the POST is dropped, the next GET carries the close
            polling = await in_thread(PollingClient, url)
            assert await in_thread(polling.post, "40") == 200
            assert (await in_thread(polling.get))[0].startswith("40")
            await log.wait("connection", 6)
            assert await in_thread(polling.post, '42/chat,["x"]', '42["echo","after"]') == 200
            got = await in_thread(polling.get)
            assert got[-1] == "1" and '42["echo","after"]' not in got, got

            reasons = [(sid, r) for (_, sid, r) in await log.wait("disconnect", 5)]
            assert (late_sid, "server namespace disconnect") in reasons
            assert [r for _, r in reasons if _ != late_sid] == ["forced server close"] * 4
            await eventually(lambda: len(eio_reasons) == 6)
            assert eio_reasons == ["forced close"] * 6
            lines = [r for r in caplog.records if "which it has not joined" in r.getMessage()]
            assert len(lines) == 6
            assert all(r.name == "pyserver.socketio" for r in lines)
            # the other client is untouched
            assert good_sid not in [sid for sid, _ in reasons]
            await good.send_sio('21["echo","ok"]')
            assert await good.recv_sio() == '2["init",{"id":' + json.dumps(good_sid) + "}]"
            assert await good.recv_sio() == '2["echo","ok"]'
            assert await good.recv_sio() == '31["ok"]'
            await good.close()


async def test_disconnect_reasons() -> None:
    sio, log = chat_server()
    with trio.fail_after(15):
        async with serving(sio) as url:
            # client namespace disconnect
            raw = await RawClient.open(url)
            await raw.join()
            await raw.send_sio("1")
            assert (await log.wait("disconnect", 1))[-1][2] == "client namespace disconnect"
            # server namespace disconnect (the client gets a DISCONNECT packet)
            sid = await raw.join()
            await raw.send_sio('2["bye"]')
            while (packet := await raw.recv_sio()) != "1":
                assert packet.startswith('2["init"')
            assert (await log.wait("disconnect", 2))[-1][1:] == (sid, "server namespace disconnect")
            # transport close
            await raw.close()
            raw = await RawClient.open(url)
            await raw.join()
            await raw.close()
            assert (await log.wait("disconnect", 3))[-1][2] == "transport close"
            # disconnect(close=True) ends the whole connection
            raw = await RawClient.open(url)
            sid = await raw.join()
            for socket in await sio.fetch_sockets():
                if socket.id == sid:
                    socket.disconnect(close=True)
            got = await raw.wait_closed()
            assert "41" in got
            assert (await log.wait("disconnect", 4))[-1][2] == "server namespace disconnect"


async def test_ping_timeout_reason() -> None:
    sio, log = chat_server(ping_interval=0.2, ping_timeout=0.2)
    with trio.fail_after(10):
        async with serving(sio) as url:
            client = await RawClient.open(url)
            client.ws.send("40")
            await log.wait("connection")
            # nobody reads: the pings go unanswered
            assert (await log.wait("disconnect"))[-1][2] == "ping timeout"
            await client.wait_closed()


async def test_connect_timeout_closes_idle_connection() -> None:
    sio = Server(connect_timeout=0.2)
    with trio.fail_after(10):
        async with serving(sio) as url:
            raw = await RawClient.open(url)
            got = await raw.wait_closed()
            assert got[-1:] == ["1"]
            assert sio.statistics()["clients"] == 0


async def test_rate_limit_refusal_and_flood_disconnect() -> None:
    sio, _ = chat_server(rate_limit=(2, 60))
    # the first window over the limit counts as flooding
    flooded, log = chat_server(flood_windows=1)
    flood = flooded.of("/flood", rate_limit=(1, 60))

    @flood.on("x")
    async def x(socket: Socket) -> None:
        pass

    @flood.on("disconnect")
    async def flood_gone(socket: Socket, reason: str) -> None:
        log.add("disconnect", socket.id, reason)

    with trio.fail_after(10):
        async with serving(sio) as url:
            raw = await RawClient.open(url)
            await raw.join()
            assert (await raw.recv_sio()).startswith('2["init"')
            await raw.send_sio('21["echo",1]')
            await raw.send_sio('22["echo",2]')
            await raw.send_sio('23["echo",3]')
            await raw.send_sio('2["echo",4]')
            got = [await raw.recv_sio() for _ in range(6)]
            assert '33[{"error":"rate limited"}]' in got
            assert '2["error",{"message":"rate limited","event":"echo"}]' in got
            assert "31[1]" in got and "32[2]" in got
            await raw.close()
        async with serving(flooded) as url:
            # the limiter of /flood closes the connection
            raw = await RawClient.open(url)
            await raw.join("/flood")
            await raw.send_sio('2/flood,["x"]')
            await raw.send_sio('2/flood,["x"]')
            await raw.wait_closed()
            reasons = [r for (_, _, r) in await log.wait("disconnect")]
            assert reasons == ["forced server close"]


def test_rate_limiter_windows() -> None:
    limiter = RateLimiter((2, 1.0), flood_windows=3)
    assert [limiter.check(0.0) for _ in range(3)] == [Verdict.ALLOWED] * 2 + [Verdict.REFUSED]
    assert limiter.check(1.0) is Verdict.ALLOWED  # a new window
    limiter.check(1.1)
    assert limiter.check(1.2) is Verdict.REFUSED  # second window in a row over
    limiter.check(2.0)
    limiter.check(2.0)
    assert limiter.check(2.0) is Verdict.FLOODING  # third
    # a quiet window resets the streak
    limiter = RateLimiter((1, 1.0), flood_windows=2)
    limiter.check(0.0)
    assert limiter.check(0.0) is Verdict.REFUSED
    assert limiter.check(5.0) is Verdict.ALLOWED
    assert limiter.check(5.0) is Verdict.REFUSED


async def test_statistics() -> None:
    sio, log = chat_server()
    sio.of("/chat")
    with trio.fail_after(10):
        async with serving(sio) as url:
            a = await RawClient.open(url)
            sid = await a.join()
            await a.join("/chat")
            for socket in await sio.fetch_sockets():
                socket.join("lobby")
            async with testing.connect(url, transports=["polling"]):
                await log.wait("connection", 2)
                stats = sio.statistics()
                assert stats["clients"] == 2
                assert stats["transports"] == {"polling": 1, "websocket": 1}
                assert stats["namespaces"]["/"]["sockets"] == 2
                assert stats["namespaces"]["/chat"]["sockets"] == 1
                assert stats["rooms"] == 1
                assert stats["outbox"]["max"] >= 0
                assert sid
            await a.close()


async def test_shutdown_runs_disconnect_handlers() -> None:
    sio, log = chat_server()
    with trio.fail_after(10):
        async with serving(sio) as url:
            raw = await RawClient.open(url)
            await raw.join()
            await log.wait("connection")
        # serve() was cancelled: the socket left with "server shutting down"
        assert [i[2] for i in log.items if i[0] == "disconnect"] == ["server shutting down"]
        await raw.wait_closed()


async def test_handlers_run_in_order_with_a_bounded_queue() -> None:
    sio = Server(max_pending_events=2)
    release = trio.Event()
    order: list[int] = []

    @sio.on("work")
    async def work(socket: Socket, n: int) -> int:
        if n == 1:
            await release.wait()
        order.append(n)
        return n

    with trio.fail_after(10):
        async with serving(sio) as url:
            raw = await RawClient.open(url)
            await raw.join()
            for n in range(1, 5):
                await raw.send_sio(f'2{n}["work",{n}]')
            # the first blocks, two wait: the fourth is refused at once
            assert await raw.recv_sio() == '34[{"error":"too many pending events"}]'
            release.set()
            assert [await raw.recv_sio() for _ in range(3)] == ["31[1]", "32[2]", "33[3]"]
            assert order == [1, 2, 3]
            await raw.close()


async def test_event_after_a_refused_burst_is_answered_not_lost() -> None:
    # A burst in one polling POST (the handlers run only once the POST is read): past
    # max_pending_events every event is refused at once, the one after the burst included,
    # each with an error ack (or an "error" event without ack). Nothing is dropped silently,
    # and once the queue drains the next event runs.
    sio = Server(max_pending_events=3)
    release = trio.Event()
    order: list[int] = []

    @sio.on("work")
    async def work(socket: Socket, n: int) -> int:
        if n == 1:
            await release.wait()
        order.append(n)
        return n

    busy = '[{"error":"too many pending events"}]'
    with trio.fail_after(15):
        async with serving(sio) as url:
            client = await in_thread(PollingClient, url)
            assert await in_thread(client.post, "40") == 200
            assert (await in_thread(client.get))[0].startswith("40")
            burst = [f'42{n}["work",{n}]' for n in range(1, 7)]
            after = ['427["work",7]', '42["work",8]']  # sent after the burst, same POST
            assert await in_thread(client.post, *burst, *after) == 200
            refused = await in_thread(client.get)
            assert refused == [
                *(f"43{n}{busy}" for n in range(4, 8)),
                '42["error",{"message":"too many pending events","event":"work"}]',
            ]
            release.set()
            answered: list[str] = []
            while len(answered) < 3:
                answered += await in_thread(client.get)
            assert answered == ["431[1]", "432[2]", "433[3]"]
            assert await in_thread(client.post, '429["work",9]') == 200
            assert await in_thread(client.get) == ["439[9]"]
            assert order == [1, 2, 3, 9]


async def test_disconnect_handlers_see_the_rooms_left() -> None:
    sio = Server()
    seen: list[tuple[str, str, set[str]]] = []

    @sio.on("connection")
    async def connected(socket: Socket) -> None:
        socket.join(["lobby", "table-1"])

    @sio.on("disconnecting")
    async def disconnecting(socket: Socket, reason: str) -> None:
        seen.append(("disconnecting", reason, set(socket.rooms)))

    @sio.on("disconnect")
    async def disconnected(socket: Socket, reason: str) -> None:
        seen.append(("disconnect", reason, set(socket.rooms)))

    with trio.fail_after(10):
        async with serving(sio) as url:
            raw = await RawClient.open(url)
            sid = await raw.join()
            await eventually(lambda: "lobby" in sio.main.rooms())
            await raw.send_sio("1")
            await eventually(lambda: len(seen) == 2)
            rooms = {sid, "lobby", "table-1"}
            assert seen == [
                ("disconnecting", "client namespace disconnect", rooms),
                ("disconnect", "client namespace disconnect", rooms),
            ]
            assert "lobby" not in sio.main.rooms()
            await raw.close()


async def test_app_serves_static_files_and_raw_websockets_alongside(tmp_path: Any) -> None:
    (tmp_path / "index.html").write_text("<h1>hi</h1>")
    sio = Server(static_dir=tmp_path)

    @sio.app.websocket("/raw")
    async def raw_echo(ws: Any) -> None:
        async for message in ws:
            await ws.send(message)

    def fetch(url: str) -> bytes:
        with urllib.request.urlopen(url, timeout=5) as answer:
            body: bytes = answer.read()
            return body

    def ws_echo(url: str) -> Any:
        with connect(url.replace("http", "ws") + "/raw", open_timeout=5) as ws:
            ws.send("ping")
            return ws.recv(timeout=5)

    with trio.fail_after(10):
        async with serving(sio) as url:
            assert await in_thread(fetch, url + "/index.html") == b"<h1>hi</h1>"
            assert await in_thread(ws_echo, url) == "ping"
            raw = await RawClient.open(url)
            await raw.join()
            await raw.close()

"""``/metrics`` of a real Server, scraped over HTTP before and after a known workload done by
real clients: each counter moves by exactly what was done, and the answer parses with
``prometheus_client``'s parser (which nobody here wrote)."""

from __future__ import annotations

from typing import Any

import trio
from helpers.scrape import Samples, moved, scrape, value
from helpers.sio_client import PyClient, RawClient, in_thread, serving

from pyserver import App, Server
from pyserver.metrics import HANDLER_SAMPLE
from pyserver.testing import connect, wait_for_event
from pyserver.trio.metrics import Metrics, serve_metrics


async def wait_until(check: Any) -> None:
    while not check():  # noqa: ASYNC110 (counters and lists, not events)
        await trio.sleep(0.01)


async def test_counters_move_by_the_workload() -> None:
    """Connects, N events, M acked events, acks asked of the client (answered, one timed
    out), a rate-limited event, a known disconnect reason: exactly those deltas."""
    sio = Server(metrics=Metrics(events=["chat"]))
    limited = sio.of("/limited", rate_limit=(1, 60.0))
    left: list[str] = []
    acks: list[Any] = []

    @sio.on("chat")
    def chat(socket: Any, text: str) -> str:
        return text.upper()

    @sio.on("ask me")
    async def ask_me(socket: Any) -> None:
        acks.append(await socket.emit_with_ack("question", 1, timeout=5))
        acks.append(await socket.emit_with_ack("question", 2, timeout=5))
        try:
            await socket.emit_with_ack("unanswered", timeout=0.2)
        except TimeoutError:
            acks.append("timed out")

    @sio.on("disconnect")
    def gone(socket: Any, reason: str) -> None:
        left.append(reason)

    limited.on("ping me", lambda socket: None)
    n_events, m_acked = 5, 3
    with trio.fail_after(20):
        async with serving(sio) as url:
            before = await scrape(url + "/metrics")
            async with (
                connect(url, transports=["websocket"]) as client,
                connect(url + "/limited", transports=["websocket"]) as other,
            ):
                client.on("question", lambda n: n * 10)
                for i in range(n_events):
                    client.emit("chat", f"m{i}")
                for i in range(m_acked):
                    assert await client.emit_with_ack("chat", f"a{i}") == f"A{i}"
                client.emit("ask me")
                await wait_until(lambda: len(acks) == 3)
                other.emit("ping me")
                assert await other.emit_with_ack("ping me") == {"error": "rate limited"}
                client.disconnect()
                await wait_until(lambda: left)
            await wait_until(lambda: len(sio.eio.sessions) == 0)
            after = await scrape(url + "/metrics")
    assert acks == [10, 20, "timed out"]
    assert left == ["client namespace disconnect"]
    root, lim = {"namespace": "/"}, {"namespace": "/limited"}
    events_in = n_events + m_acked + 1  # + "ask me"
    assert moved(before, after) == {
        k: v
        for k, v in {
            (
                "pyserver_engine_connections_opened_total",
                frozenset({("transport", "websocket")}),
            ): 2,
            # (each client closes its connection once its socket left)
            (
                "pyserver_engine_connections_closed_total",
                frozenset({("reason", "transport close")}),
            ): 2,
            ("pyserver_socket_connects_total", frozenset({**root, "result": "ok"}.items())): 1,
            ("pyserver_socket_connects_total", frozenset({**lim, "result": "ok"}.items())): 1,
            (
                "pyserver_socket_disconnects_total",
                frozenset({**root, "reason": "client namespace disconnect"}.items()),
            ): 1,
            (
                "pyserver_socket_disconnects_total",
                frozenset({**lim, "reason": "client namespace disconnect"}.items()),
            ): 1,
            # by name: "chat" is allowed, the others are _other
            (
                "pyserver_events_total",
                frozenset({**root, "direction": "in", "event": "chat"}.items()),
            ): n_events + m_acked,
            (
                "pyserver_events_total",
                frozenset({**root, "direction": "in", "event": "_other"}.items()),
            ): 1,
            (
                "pyserver_events_total",
                frozenset({**root, "direction": "out", "event": "_other"}.items()),
            ): 3,
            (
                "pyserver_events_total",
                frozenset({**lim, "direction": "in", "event": "_other"}.items()),
            ): 2,
            ("pyserver_acks_requested_total", frozenset(root.items())): 3,
            ("pyserver_acks_answered_total", frozenset(root.items())): 2,
            ("pyserver_ack_timeouts_total", frozenset(root.items())): 1,
            ("pyserver_acks_sent_total", frozenset(root.items())): m_acked,
            ("pyserver_rate_limited_events_total", frozenset(lim.items())): 1,
        }.items()
    } | _engine_packets(before, after, events_in)
    # the handlers of the first event and of one in HANDLER_SAMPLE after it were timed
    timed = value(after, "pyserver_handler_duration_seconds_count", **root) - value(
        before, "pyserver_handler_duration_seconds_count", **root
    )
    assert timed == (events_in - 1) // HANDLER_SAMPLE + 1 == 2


def _engine_packets(before: Samples, after: Samples, events_in: int) -> dict[Any, float]:
    """The Engine.IO packet and byte counters moved (their exact values are checked by the
    test below); returned as they moved so the comparison above is exact for the rest."""
    keys = [
        ("pyserver_engine_packets_total", frozenset({("direction", d)})) for d in ("in", "out")
    ] + [("pyserver_engine_bytes_total", frozenset({("direction", d)})) for d in ("in", "out")]
    deltas = {key: after.get(key, 0.0) - before.get(key, 0.0) for key in keys}
    assert deltas[keys[0]] >= events_in and deltas[keys[1]] > 0
    return deltas


async def test_slow_consumer_and_volatile_drops() -> None:
    """A client that stops reading (python-websockets' client stops once its queue of 16
    messages is full): volatile packets to it are skipped once its outbox holds something,
    then a flood closes it as a slow consumer; both counted once, on a separate listener
    (``serve_metrics``)."""
    sio = Server(app=App(ws_max_outbox_bytes=1 << 20), metrics=Metrics(path=None))
    gone: list[str] = []
    sent: list[int] = []

    @sio.on("flood")
    def flood(socket: Any) -> None:
        big = "x" * 65536
        for i in range(400):
            if socket.client.outbox_depth() and not sent:
                socket.volatile.emit("tick", i)  # skipped: something is queued
                sent.append(i)
            if not socket.connected:
                break
            socket.emit("big", big)

    @sio.on("disconnect")
    def left(socket: Any, reason: str) -> None:
        gone.append(reason)

    with trio.fail_after(20):
        async with serving(sio) as url, trio.open_nursery() as nursery:
            listeners = await nursery.start(serve_metrics, sio, "127.0.0.1", 0)
            metrics_url = f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}/metrics"
            before = await scrape(metrics_url)
            raw = await RawClient.open(url)
            await raw.send_sio("0")
            assert (await raw.recv_sio()).startswith("0")
            await raw.send_sio('2["flood"]')
            await wait_until(lambda: gone)
            after = await scrape(metrics_url)
            nursery.cancel_scope.cancel()
    assert gone == ["transport error"] and sent
    changes = moved(before, after)
    slow = ("pyserver_slow_client_disconnects_total", frozenset({("transport", "websocket")}))
    skipped = ("pyserver_volatile_dropped_total", frozenset({("namespace", "/")}))
    assert changes[slow] == 1
    assert changes[skipped] == 1
    closed = (
        "pyserver_engine_connections_closed_total",
        frozenset({("reason", "transport error")}),
    )
    assert changes[closed] == 1


async def test_python_socketio_client_and_route() -> None:
    """python-socketio's client: its connect, its events and its disconnect, counted; the
    route answers on the server's port."""
    sio = Server(metrics=True)
    sio.on("hello", lambda socket, *args: None)
    with trio.fail_after(20):
        async with serving(sio) as url:
            before = await scrape(url + "/metrics")
            client = PyClient()
            await client.connect(url)
            for _ in range(4):
                await in_thread(client.client.emit, "hello", 1)
            await in_thread(client.client.call, "hello", 2)  # (an ack asked: answered empty)
            await client.disconnect()
            await wait_until(lambda: len(sio.eio.sessions) == 0)
            after = await scrape(url + "/metrics")
    root = frozenset({("namespace", "/")})
    changes = moved(before, after)
    assert changes[("pyserver_socket_connects_total", root | {("result", "ok")})] == 1
    assert changes[("pyserver_events_total", root | {("direction", "in")})] == 5
    assert changes[("pyserver_acks_sent_total", root)] == 1
    # python-socketio's disconnect queues a DISCONNECT packet and closes the connection at
    # once: the packet is on the wire or not, so the reason is one of two, counted once
    reasons = {
        dict(labels)["reason"]: change
        for (name, labels), change in changes.items()
        if name == "pyserver_socket_disconnects_total" and change
    }
    assert list(reasons.values()) == [1], reasons
    assert set(reasons) <= {"transport close", "client namespace disconnect"}, reasons
    said_goodbye = int("client namespace disconnect" in reasons)  # its "1" arrived
    assert value(after, "pyserver_sockets", namespace="/") == 0
    # Engine.IO messages: in, the CONNECT "0{}", 5 events ('2["hello",1]' four times,
    # '20["hello",2]') and the DISCONNECT "1" if it made it; out, the CONNECT answer
    # '0{"sid":"<20 characters>"}' and the ack "30[]"
    packets = "pyserver_engine_packets_total"
    assert changes[(packets, frozenset({("direction", "in")}))] == 6 + said_goodbye
    assert changes[(packets, frozenset({("direction", "out")}))] == 2
    engine_bytes = "pyserver_engine_bytes_total"
    in_bytes = 3 + 4 * 12 + 13 + said_goodbye
    assert changes[(engine_bytes, frozenset({("direction", "in")}))] == in_bytes
    assert changes[(engine_bytes, frozenset({("direction", "out")}))] == 31 + 4
    assert value(after, "pyserver_build_info", version="0.1.0", python=platform_python()) == 1


def platform_python() -> str:
    import platform

    return platform.python_version()


async def test_recovery_dynamic_namespaces_and_rooms() -> None:
    """A socket recovered by connection state recovery, two children of a dynamic namespace
    (one ``namespace`` label: the parent's pattern), a room with a task: counted and read."""
    import re

    from pyserver.testing import drop_connection

    sio = Server(metrics=True, connection_state_recovery=True)
    sio.of(re.compile(r"/game-\d+"))
    started = trio.Event()

    @sio.on("play")
    def play(socket: Any) -> None:
        socket.join("table")
        socket.emit("seated")  # (with its offset: what the client recovers from)

        async def tick() -> None:
            started.set()
            await trio.sleep_forever()

        if not sio.main.room("table").active:
            sio.main.room("table").start_soon(tick)

    with trio.fail_after(20):
        async with serving(sio) as url:
            before = await scrape(url + "/metrics")
            async with (
                connect(url, transports=["websocket"], reconnection=True) as client,
                connect(url + "/game-1", transports=["websocket"]),
                connect(url + "/game-2", transports=["websocket"]),
            ):
                await client.emit_with_ack("play")
                await wait_for_event(client, "seated")
                await started.wait()
                during = await scrape(url + "/metrics")
                await drop_connection(client)
                await wait_until(lambda: client.connected and client.recovered)
            after = await scrape(url + "/metrics")
    root = frozenset({("namespace", "/")})
    games = frozenset({("namespace", "/game-\\d+")})
    changes = moved(before, after)
    assert changes[("pyserver_socket_connects_total", root | {("result", "ok")})] == 1
    assert changes[("pyserver_socket_connects_total", root | {("result", "recovered")})] == 1
    assert changes[("pyserver_recovery_sessions_kept_total", root)] == 1
    assert changes[("pyserver_socket_connects_total", games | {("result", "ok")})] == 2
    assert value(during, "pyserver_sockets", namespace="/game-\\d+") == 2
    assert value(during, "pyserver_sockets", namespace="/") == 1
    assert value(during, "pyserver_rooms", namespace="/") == 1
    assert value(during, "pyserver_room_tasks", namespace="/") == 1
    assert value(during, "pyserver_engine_connections", transport="websocket") == 3
    # no child's own name ever becomes a label
    assert not [key for key in after if ("namespace", "/game-1") in key[1]]

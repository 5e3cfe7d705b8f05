"""Security audit (issue 20), the Socket.IO layer: dynamic namespaces that never went and had
no per-connection cap (item 3), client text in log lines and uncapped refusal logs and
replies (item 7). Through raw Engine.IO over WebSocket (``RawClient``) on loopback.
"""

from __future__ import annotations

import gc
import json
import logging
import re
import weakref
from typing import Any

import pytest
import trio
import trio.lowlevel
from helpers.redis_process import RedisProcess, redis_server
from helpers.sio_client import RawClient, eventually, in_thread, serving

from pyserver import ConnectionRefused, RedisAdapter, Server
from pyserver.socketio.recovery import RecoveryStore
from pyserver.trio.socketio import Socket
from pyserver.trio.socketio.namespace import DynamicNamespace, Namespace

DYN = re.compile(r"/dyn-\d+")


def dynamic_server(**options: Any) -> tuple[Server, DynamicNamespace]:
    """A Server with one dynamic parent (``/dyn-<n>``) whose "where" acks the name."""
    sio = Server(**options)
    parent = sio.of(DYN)
    assert isinstance(parent, DynamicNamespace)

    @parent.on("where")
    async def where(socket: Socket) -> str:
        return socket.nsp.name

    return sio, parent


def recovery_stores() -> int:
    """Recovery stores alive in this process."""
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, RecoveryStore))


def _connect_many(raw: RawClient, names: list[str]) -> list[str]:
    """CONNECT to every name at once, then read one answer per name (in a thread)."""
    for name in names:
        raw.ws.send(f"40{name},")
    answers: list[str] = []
    while len(answers) < len(names):
        message = raw._recv()
        assert isinstance(message, str) and message[0] == "4", message
        answers.append(message[1:])
    return answers


async def connect_many(raw: RawClient, names: list[str]) -> list[str]:
    """The answers, sorted (the admissions run concurrently)."""
    return sorted(await in_thread(_connect_many, raw, names))


def accepted(answers: list[str]) -> list[str]:
    """The namespaces of the CONNECT answers among ``answers``."""
    return sorted(a.split(",")[0][1:] for a in answers if a[0] == "0")


def dyn_children(sio: Server) -> list[str]:
    return sorted(name for name in sio.namespaces if DYN.fullmatch(name))


async def test_audit_dynamic_namespaces_capped_per_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # the default cap (100): "/" and 99 children are in, the next CONNECTs are refused
    sio, _ = dynamic_server()
    caplog.set_level(logging.INFO, logger="pyserver.socketio")
    with trio.fail_after(20):
        async with serving(sio) as url:
            raw = await RawClient.open(url)
            await raw.join()
            names = [f"/dyn-{n}" for n in range(99)]
            assert accepted(await connect_many(raw, names)) == sorted(names)
            refused = await connect_many(raw, ["/dyn-99", "/dyn-100", "/dyn-101"])
            assert refused == [
                f'4/dyn-{n},{{"message":"too many namespaces"}}' for n in (100, 101, 99)
            ]
            over = [r for r in caplog.records if "too many namespaces" in r.getMessage()]
            assert len(over) == 1  # one line per connection, not one per refusal
            # no child was made for the refused names; the others still answer
            assert "/dyn-99" not in sio.namespaces and len(dyn_children(sio)) == 99
            await raw.send_sio('2/dyn-7,1["where"]')
            assert await raw.recv_sio() == '3/dyn-7,1["/dyn-7"]'
            # leaving one makes room for another
            await raw.send_sio("1/dyn-0,")
            await raw.join("/dyn-99")
            # another connection has a cap of its own
            other = await RawClient.open(url)
            await other.join("/dyn-500")
            await raw.close()
            await other.close()
            await eventually(lambda: not sio.clients)
            # cleanup_empty_child_namespaces is off by default (as in Node): children stay
            assert len(dyn_children(sio)) == 101
            assert all(not sio.namespaces[name].sockets for name in dyn_children(sio))


async def test_audit_dynamic_namespaces_cap_counts_connections_being_admitted() -> None:
    # a CONNECT waiting in a slow middleware counts against the cap
    sio, parent = dynamic_server(max_namespaces_per_client=3)
    release = trio.Event()

    @parent.use
    async def slow(socket: Socket) -> None:
        await release.wait()

    with trio.fail_after(10):
        async with serving(sio) as url:
            raw = await RawClient.open(url)
            await raw.join()
            for n in range(3):
                await raw.send_sio(f"0/dyn-{n},")
            assert await raw.recv_sio() == '4/dyn-2,{"message":"too many namespaces"}'
            release.set()
            answers = [await raw.recv_sio(), await raw.recv_sio()]
            assert accepted(answers) == ["/dyn-0", "/dyn-1"]
            await raw.close()


async def test_audit_dynamic_namespaces_refused_connection_leaves_no_child() -> None:
    # a child is made for a name the matcher accepted, but stays only once a socket was
    # accepted: a middleware refusal (or a failing middleware) leaves nothing behind
    sio = Server()  # cleanup_empty_child_namespaces off: this holds even so
    seen: list[str] = []

    async def matcher(name: str, auth: Any) -> bool:
        await trio.lowlevel.checkpoint()
        return name.startswith("/dyn-")

    parent = sio.of(matcher)

    @parent.use
    async def auth(socket: Socket) -> None:
        seen.append(socket.nsp.name)
        await trio.lowlevel.checkpoint()
        if socket.nsp.name == "/dyn-boom":
            raise RuntimeError("middleware bug")
        if socket.handshake.auth.get("token") != "ok":
            raise ConnectionRefused("not authorized")

    with trio.fail_after(10):
        async with serving(sio) as url:
            raw = await RawClient.open(url)
            names = [f"/dyn-{n}" for n in range(40)]
            answers = await connect_many(raw, names)
            assert answers == sorted(f'4{name},{{"message":"not authorized"}}' for name in names)
            await raw.send_sio("0/dyn-boom,")
            assert await raw.recv_sio() == '4/dyn-boom,{"message":"Internal error"}'
            assert len(seen) == 41  # the middleware did run in each child
            assert not parent.children
            assert [n for n in sio.namespaces if n != "/"] == []
            # an accepted one stays (the option is off), next to refused ones
            await raw.join("/dyn-ok", {"token": "ok"})
            assert [n for n in sio.namespaces if n != "/"] == ["/dyn-ok"]
            await raw.close()


async def test_audit_dynamic_namespaces_cleanup_removes_empty_children() -> None:
    sio, parent = dynamic_server(
        cleanup_empty_child_namespaces=True, connection_state_recovery=True
    )
    live: weakref.WeakSet[Namespace] = weakref.WeakSet()
    stores_before = recovery_stores()

    with trio.fail_after(20):
        async with serving(sio) as url:
            a = await RawClient.open(url)
            b = await RawClient.open(url)
            await a.join()
            names = [f"/dyn-{n}" for n in range(50)]
            for raw in (a, b):
                assert accepted(await connect_many(raw, names)) == sorted(names)
            for name in names:
                live.add(sio.namespaces[name])
            assert len(live) == 50 and recovery_stores() == stores_before + 50
            # a leaves ten of them: b is still in each, so they stay
            for name in names[:10]:
                await a.send_sio(f"1{name},")
            await a.send_sio('2/dyn-0,1["where"]')  # not joined any more: closes a
            await a.wait_closed()
            await eventually(lambda: len(sio.clients) == 1)
            assert dyn_children(sio) == sorted(names)
            # b goes: every child goes with its last socket
            await b.close()
            await eventually(lambda: not sio.clients)
            assert dyn_children(sio) == []
            assert not parent.children
            assert list(sio.namespaces) == ["/"]
            gc.collect()
            assert len(live) == 0  # the children's memory is released...
            assert recovery_stores() == stores_before  # ...their recovery stores with it
            # the name can be joined again: a new child
            c = await RawClient.open(url)
            await c.join("/dyn-3")
            await c.send_sio('2/dyn-3,1["where"]')
            assert await c.recv_sio() == '3/dyn-3,1["/dyn-3"]'
            await c.close()
            await eventually(lambda: "/dyn-3" not in sio.namespaces)


async def test_audit_log_forging_namespace_and_event_names_escaped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    forged = "\r\nWARNING pyserver.auth: admin logged in"
    sio = Server()
    parent = sio.of(lambda name, auth: name.startswith("/dyn"), rate_limit=(1, 60))

    @parent.on("x")
    async def x(socket: Socket) -> None:
        pass

    caplog.set_level(logging.DEBUG, logger="pyserver.socketio")
    with trio.fail_after(10):
        async with serving(sio) as url:
            raw = await RawClient.open(url)
            ns = "/dyn" + forged
            await raw.join(ns)  # accepted: "socket ... connected to <name>"
            event = json.dumps("x" + forged)
            for _ in range(2):  # the second is rate limited: "refused event <name> ..."
                await raw.send_sio(f"2{ns},[{event}]")
            assert json.loads((await raw.recv_sio()).split(",", 1)[1])[1]["event"] == "x" + forged
            await raw.send_sio(f"0/evil{forged},")  # refused: "refused namespace <name>"
            assert (await raw.recv_sio()).startswith("4/evil")
            await raw.close()
            await eventually(lambda: not sio.clients)
    lines = [r.getMessage() for r in caplog.records]
    mentioning = [line for line in lines if "admin logged in" in line]
    assert len(mentioning) >= 4  # connected, refused event, refused namespace, left
    for line in mentioning:
        assert "\r" not in line and "\n" not in line
        assert "\\r\\nWARNING pyserver.auth" in line  # escaped, visibly


async def test_audit_rate_limit_flood_bounded_logs_and_replies(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # 3,000 events over a limit of 5 per minute: one window, so one log line and one "error"
    # event; every refused event that asked for an ack still gets its error ack (the client
    # waits on it), one small reply per event it sent
    sio = Server()
    limited = sio.of("/limited", rate_limit=(5, 60))
    ran: list[int] = []

    @limited.on("x")
    async def x(socket: Socket, n: int) -> None:
        ran.append(n)

    @sio.on("done")
    async def done(socket: Socket) -> str:
        return "ok"

    def flood(raw: RawClient) -> list[str | bytes]:
        for n in range(3000):
            ack = str(n) if n % 2 else ""
            raw.ws.send(f'42/limited,{ack}["x",{n}]')
        raw.ws.send('42999["done"]')  # answered once everything before it was read
        got: list[str | bytes] = []
        while (message := raw._recv()) != '43999["ok"]':
            got.append(message)
        return got

    caplog.set_level(logging.INFO, logger="pyserver.socketio")
    with trio.fail_after(30):
        async with serving(sio) as url:
            raw = await RawClient.open(url)
            await raw.join()
            await raw.join("/limited")
            got = await in_thread(flood, raw)
            await eventually(lambda: len(ran) == 5)
            refusals = [m for m in got if isinstance(m, str) and "rate limited" in m]
            acks = [m for m in refusals if m.startswith("43/limited,")]
            errors = [m for m in refusals if m.startswith('42/limited,["error"')]
            asked = sum(1 for n in range(3000) if n % 2 and n not in ran)
            assert len(acks) == asked and len(errors) == 1, (len(acks), len(errors))
            assert len(got) == asked + 1 + sum(1 for n in ran if n % 2)
            logged = [r for r in caplog.records if "rate limited" in r.getMessage()]
            assert len(logged) == 1
            await raw.close()


async def test_audit_queue_overflow_flood_bounded_logs_and_replies(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # a socket whose handler is stuck, flooded with events without acks: the queue refuses
    # them, with one log line and one "error" event per window (1 s), not one per event
    sio = Server(max_pending_events=2)
    release = trio.Event()

    @sio.on("x")
    async def x(socket: Socket, n: int) -> None:
        await release.wait()

    def flood(raw: RawClient) -> list[str | bytes]:
        for n in range(2000):
            raw.ws.send(f'42["x",{n}]')
        return _drain_for(raw, 1.5)

    caplog.set_level(logging.INFO, logger="pyserver.socketio")
    with trio.fail_after(30):
        async with serving(sio) as url:
            raw = await RawClient.open(url)
            await raw.join()
            got = await in_thread(flood, raw)
            errors = [m for m in got if isinstance(m, str) and "too many pending" in m]
            logged = [r for r in caplog.records if "too many pending" in r.getMessage()]
            # one per window: a few windows at most went by while 2,000 events were read
            # (the old code: 1,997 of each)
            assert 1 <= len(errors) <= 10 and 1 <= len(logged) <= 10, (len(errors), len(logged))
            release.set()
            await raw.close()


def _drain_for(raw: RawClient, quiet: float) -> list[str | bytes]:
    """Read until nothing came for ``quiet`` seconds."""
    got: list[str | bytes] = []
    while True:
        try:
            message = raw.ws.recv(timeout=quiet)
        except TimeoutError:
            return got
        if message == "2":
            raw.ws.send("3")
            continue
        got.append(message)


# -- Redis: a removed child unsubscribes its channels -------------------------------------------

# the fixture redis_server (imported above): a real redis-server, one per module (skipped where
# it is not installed)
__all__ = ["redis_server"]


async def test_audit_dynamic_namespaces_cleanup_unsubscribes_redis(
    redis_server: RedisProcess,
) -> None:
    adapter = RedisAdapter(redis_server.url, key="audit-ns")
    sio, _ = dynamic_server(adapter=adapter, cleanup_empty_child_namespaces=True)

    async def numsub(channel: str) -> int:
        counts = await adapter.client.pubsub_numsub(channel)
        return int(counts.get(channel.encode(), 0))

    async def wait_numsub(channel: str, count: int) -> None:
        while await numsub(channel) != count:  # noqa: ASYNC110 (Redis has no event)
            await trio.sleep(0.02)

    with trio.fail_after(30):
        async with serving(sio) as url:
            raw = await RawClient.open(url)
            names = [f"/dyn-{n}" for n in range(20)]
            assert accepted(await connect_many(raw, names)) == sorted(names)
            await wait_numsub("audit-ns-request#/dyn-7#", 1)
            assert len(adapter.adapters) == 21  # "/" and the children
            await raw.close()
            await eventually(lambda: dyn_children(sio) == [])
            await wait_numsub("audit-ns-request#/dyn-7#", 0)
            await wait_numsub(f"audit-ns-response#/dyn-7#{adapter.uid}#", 0)
            assert list(adapter.adapters) == ["/"]
            await wait_numsub("audit-ns-request#/#", 1)  # "/" still subscribed
            # a child made again subscribes again
            raw = await RawClient.open(url)
            await raw.join("/dyn-7")
            await wait_numsub("audit-ns-request#/dyn-7#", 1)
            await raw.close()

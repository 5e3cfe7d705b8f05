"""Redis killed (SIGKILL, every connection cut) and restarted on the same port in the middle of
a test: local clients are served meanwhile, nothing crashes, each node logs the outage once,
reconnects and resubscribes by itself, and broadcasts flow across nodes again. Also: the
bounded publish queue drops (one log line) when Redis stays away, and malformed messages on
the adapter's channels are dropped without harm."""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import coredis
import msgpack  # type: ignore[import-untyped]
import pytest
import trio
from helpers.redis_cluster import cluster, raw_clients, seen, wait_numsub
from helpers.redis_process import RedisProcess
from helpers.sio_client import RawClient, eventually

from pyserver import RedisAdapter, Server


async def until_event(raw: RawClient, packet: str) -> list[str | bytes]:
    """Messages up to and including ``packet`` (others queued during the outage may come
    first: the publisher delivers them late, in order)."""
    got: list[str | bytes] = []
    while True:
        message = await raw.recv()
        got.append(message)
        if message == packet:
            return got


async def test_redis_restart_mid_test_and_the_cluster_recovers(
    redis_server: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pyserver.redis")
    with trio.fail_after(60):
        async with cluster(redis_server, requests_timeout=2) as nodes:
            clients, sids = await raw_clients(nodes)
            for node, sid in zip(nodes, sids, strict=True):
                node.socket(sid).join("r")
            nodes[0].sio.to("r").emit("before", 1)
            assert await seen(nodes[0], clients) == [['42["before",1]']] * 3

            await trio.to_thread.run_sync(redis_server.kill)
            # local clients are still served, emits never raise nor block
            for i, node in enumerate(nodes):
                assert node.sio.to("r").emit("during", i) == 1
                assert node.sio.local.emit("local", i) == 1
            for i, raw in enumerate(clients):
                got = await until_event(raw, f'42["local",{i}]')
                assert got[0] == f'42["during",{i}]'
            # requests while Redis is away: this node's answer, no hang
            found = await nodes[1].sio.fetch_sockets()
            assert [s.id for s in found] == [sids[1]]
            assert await nodes[1].sio.server_side_emit_with_ack("x", timeout=1) == []

            await trio.to_thread.run_sync(redis_server.start)
            for node in nodes:
                await node.adapter.wait_subscribed()
            key = nodes[0].adapter.key
            probe = coredis.Redis.from_url(redis_server.url, decode_responses=False)
            async with probe:
                await wait_numsub(probe, f"{key}-request#/#", 3)
            # broadcasts flow again, from every node, to every node
            for i, node in enumerate(nodes):
                node.sio.to("r").emit("after", i)
                for raw in clients:
                    await until_event(raw, f'42["after",{i}]')
            assert await seen(nodes[2], clients) == [[], [], []]
            found = await nodes[0].sio.fetch_sockets()
            assert sorted(s.id for s in found) == sorted(sids)
            for raw in clients:
                await raw.close()
    messages = [r.getMessage() for r in caplog.records if r.name == "pyserver.redis"]
    lost = [m for m in messages if "connection lost" in m]
    back = [m for m in messages if "reconnected and resubscribed" in m]
    assert len(lost) == 3, messages  # one line per node per state change
    assert len(back) == 3, messages


async def test_publish_queue_is_bounded_while_redis_is_away(
    redis_server: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pyserver.redis")
    with trio.fail_after(60):
        async with cluster(redis_server, count=2, publish_queue_size=20) as nodes:
            clients, _ = await raw_clients(nodes)
            await trio.to_thread.run_sync(redis_server.kill)
            for i in range(500):
                nodes[0].sio.emit("flood", i)
            assert nodes[0].adapter.dropped > 400
            await trio.to_thread.run_sync(redis_server.start)
            for node in nodes:
                await node.adapter.wait_subscribed()
            key = nodes[0].adapter.key
            probe = coredis.Redis.from_url(redis_server.url, decode_responses=False)
            async with probe:
                await wait_numsub(probe, f"{key}-request#/#", 2)
            nodes[0].sio.emit("after", 1)
            await until_event(clients[1], '42["after",1]')
            for raw in clients:
                await raw.close()
    full = [r for r in caplog.records if "publish queue full" in r.getMessage()]
    assert len(full) == 1


async def test_malformed_messages_are_dropped(
    redis_server: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pyserver.redis")
    with trio.fail_after(30):
        async with cluster(redis_server, count=2) as nodes:
            clients, sids = await raw_clients(nodes)
            key = nodes[0].adapter.key
            probe = coredis.Redis.from_url(redis_server.url, decode_responses=False)
            junk = [
                b"",
                b"\xc1",
                b"{",
                b'{"type":7}',
                b'{"type":5,"uid":"zz"}',
                b'{"type":6,"uid":"zz","data":[]}',
                b"\x93\xa1u\x80\x80",
                b"\x92\xa2zz\x81\xa4data\x91\xa7connect",  # a reserved event name
                b'["not", "a", "map"]',
                b"\xdc\xff\xff" + b"\x90" * 10,  # truncated array 16
                b'{"requestId":"none","sockets":[1,2]}',
            ]
            async with probe:
                for payload in junk:
                    for channel in (
                        f"{key}#/#",
                        f"{key}#/#{sids[1]}#",
                        f"{key}-request#/#",
                        f"{key}-response#/#",
                        f"{key}-heartbeat#",
                    ):
                        await probe.publish(channel, payload)
            # still serving, still a cluster
            nodes[0].sio.emit("fine", 1)
            assert await seen(nodes[0], clients) == [['42["fine",1]']] * 2
            for raw in clients:
                await raw.close()
    assert any("malformed" in r.getMessage() for r in caplog.records)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_redis_unreachable_at_start(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A node whose Redis is not there yet starts anyway (after ``start_timeout``), serves
    its clients, and joins the cluster once Redis appears."""
    caplog.set_level(logging.INFO, logger="pyserver.redis")
    late = RedisProcess(tmp_path)  # a free port, nothing listening yet
    try:
        with trio.fail_after(40):
            adapter = RedisAdapter(late.url, key="late", start_timeout=0.3)
            sio = Server(adapter=adapter)
            async with trio.open_nursery() as nursery:
                listeners = await nursery.start(sio.serve, "127.0.0.1", 0)
                url = f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}"
                raw = await RawClient.open(url)
                await raw.join()
                assert sio.emit("alone", 1) == 1
                assert await raw.recv() == '42["alone",1]'
                assert [s.id for s in await sio.fetch_sockets()] != []
                await trio.to_thread.run_sync(late.start)
                await adapter.wait_subscribed()
                probe = coredis.Redis.from_url(late.url, decode_responses=False)
                async with probe:
                    message = [
                        "emitter",
                        {"type": 2, "data": ["from-other", 2], "nsp": "/"},
                        {"rooms": [], "except": []},
                    ]
                    await probe.publish("late#/#", msgpack.packb(message))
                    assert await raw.recv() == '42["from-other",2]'
                await raw.close()
                nursery.cancel_scope.cancel()
    finally:
        late.kill()
    assert any("not reachable yet" in r.getMessage() for r in caplog.records)


async def test_redis_that_stops_answering_is_noticed(
    redis_server: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGSTOP: connections stay open but nothing answers (a network cut without a reset).
    The subscribers' keepalive PING times out, the nodes log it and keep serving local
    clients; after SIGCONT they resubscribe and the cluster works again."""
    caplog.set_level(logging.INFO, logger="pyserver.redis")
    assert redis_server.proc is not None
    with trio.fail_after(60):
        async with cluster(
            redis_server, count=2, requests_timeout=1, keepalive_interval=1
        ) as nodes:
            clients, _ = await raw_clients(nodes)
            redis_server.proc.send_signal(signal.SIGSTOP)
            try:
                await eventually(lambda: all(n.adapter.redis_down for n in nodes))
                assert nodes[0].sio.emit("during", 1) == 1
                assert await clients[0].recv() == '42["during",1]'
            finally:
                redis_server.proc.send_signal(signal.SIGCONT)
            for node in nodes:
                await node.adapter.wait_subscribed()
            await eventually(lambda: not any(n.adapter.redis_down for n in nodes))
            probe = coredis.Redis.from_url(redis_server.url, decode_responses=False)
            async with probe:
                await wait_numsub(probe, f"{nodes[0].adapter.key}-request#/#", 2)
            nodes[1].sio.emit("after", 2)
            await until_event(clients[0], '42["after",2]')
            for raw in clients:
                await raw.close()
    lost = [r for r in caplog.records if "connection lost" in r.getMessage()]
    assert len(lost) == 2

"""RedisShardedAdapter (Redis 7's sharded pub/sub) beside Node's ``createShardedAdapter``
(``@socket.io/redis-adapter`` 8.3, dynamic mode) on one real ``redis-server`` (standalone:
sharded pub/sub needs no cluster mode, see below), driven by official socket.io-client
clients: broadcasts to everyone and to one room (Node publishes those on the room's own
channel, which our node must subscribe while it has the room), fetch_sockets, broadcasts with
acks and server-side emits with acks, both ways. Also the streams adapter with its ephemeral
messages on sharded pub/sub (``sharded_pubsub=True``) beside Node's ``useShardedPubSub``.

A standalone Redis is a cluster of one master to the adapter; on a real Redis Cluster (three
masters, slot migration, a master restarted): test_redis_sharded_cluster.py."""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from helpers.redis_process import RedisProcess

from cluster.streams_support import JsonPeer, PyNode, redis_cli

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def node_bin() -> str:
    path = shutil.which("node")
    if path is None:
        pytest.skip("node is not installed")
    return path


@pytest.fixture
def stoppers() -> Iterator[list[Any]]:
    made: list[Any] = []
    yield made
    for thing in reversed(made):
        thing.stop()


def shardnumsub(redis: RedisProcess, channel: str) -> int:
    return int(redis_cli(redis.port, "PUBSUB", "SHARDNUMSUB", channel).split()[-1])


def wait_until(check: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline
        time.sleep(0.05)


@pytest.fixture
def sharded(
    node_bin: str, redis_server: RedisProcess, stoppers: list[Any]
) -> tuple[JsonPeer, PyNode, str]:
    prefix = f"sharded-{uuid.uuid4().hex[:8]}"
    node = JsonPeer(node_bin, redis_server.url, "--key", prefix, "--sharded", "1", script="peer.js")
    stoppers.append(node)
    ours = PyNode(redis_server.url, "py", "unused", prefix, PYSERVER_ADAPTER="sharded")
    stoppers.append(ours)
    wait_until(lambda: shardnumsub(redis_server, f"{prefix}#/#") == 2)
    return node, ours, prefix


def test_broadcasts_both_ways_and_room_channels(
    sharded: tuple[JsonPeer, PyNode, str], redis_server: RedisProcess
) -> None:
    node, ours, prefix = sharded
    node.command("connect", name="n", url=node.url, room="shared")
    sid = node.command("connect", name="p", url=ours.url, room="only-ours")["sid"]
    assert len(sid) == 20  # Node tells socket ids from rooms by their length
    node.command("connect", name="p2", url=ours.url, room="shared")
    # our node subscribes the channel of each room it has, and only those
    wait_until(lambda: shardnumsub(redis_server, f"{prefix}#/#only-ours#") == 1)
    assert shardnumsub(redis_server, f"{prefix}#/#{sid}#") == 0
    node.command("emit", room="only-ours", ev="to-room", args=[1])  # on the room's channel
    node.command("emit", ev="to-all", args=[{"b": [1]}])
    node.command("emit", room=sid, ev="to-sid", args=[])  # a socket id: the main channel
    said = node.command("call", client="p2", ev="shout",
                        args=[{"room": "shared", "event": "from-ours", "data": "x"}])  # fmt: skip
    assert said["args"] == ["ok"]
    for client, event in [("p", "to-room"), ("p", "to-all"), ("p2", "to-all"), ("n", "to-all"),
                          ("p", "to-sid"), ("n", "from-ours"), ("p2", "from-ours")]:  # fmt: skip
        node.wait(lambda e, c=client, ev=event: e["event"] == "got" and e["client"] == c
                  and e["name"] == ev)  # fmt: skip
    time.sleep(0.3)
    assert node.received("n", "to-room") == [] and node.received("p2", "to-room") == []
    assert node.received("p", "from-ours") == []
    assert node.received("p", "to-room") == [[1]]  # no offset: no recovery on pub/sub


def test_requests_both_ways(sharded: tuple[JsonPeer, PyNode, str]) -> None:
    node, ours, _ = sharded
    on_node = node.command("connect", name="n", url=node.url, room="r")["sid"]
    on_ours = node.command("connect", name="p", url=ours.url, room="r")["sid"]
    fetched = node.command("fetch", room="r")["sockets"]
    assert sorted(s["id"] for s in fetched) == sorted([on_node, on_ours])
    assert node.command("call", client="p", ev="fetch", args=["r"])["args"][0] == sorted(
        [on_node, on_ours]
    )
    acked = node.command("ack-broadcast", room="r", ev="ask", args=[7], timeout=3000)
    assert acked["error"] is None
    assert sorted(r["client"] for r in acked["replies"]) == ["n", "p"]
    replies = node.command("call", client="p", ev="ask-room",
                           args=[{"room": "r", "event": "ask", "data": 8}])["args"][0]  # fmt: skip
    assert sorted(r["client"] for r in replies) == ["n", "p"]
    asked = node.command("call", client="p", ev="server-ask", args=[{"event": "whoami-node"}])
    assert asked["args"][0] == [{"node": "node", "args": []}]
    from_node = node.command("server-emit-ack", ev="whoami-node", args=[1])
    assert from_node["error"] is None
    assert from_node["replies"] == [{"node": "py", "args": [1]}]
    assert node.command("server-count")["count"] == 2


def test_streams_adapter_with_sharded_pubsub_beside_nodes(
    node_bin: str, redis_server: RedisProcess, stoppers: list[Any]
) -> None:
    tag = uuid.uuid4().hex[:8]
    stream, prefix = f"stream-{tag}", f"prefix-{tag}"
    node = JsonPeer(node_bin, redis_server.url, "--stream", stream, "--prefix", prefix,
                    "--sharded", "1")  # fmt: skip
    stoppers.append(node)
    ours = PyNode(redis_server.url, "py", stream, prefix, PYSERVER_ADAPTER="streams-sharded")
    stoppers.append(ours)
    wait_until(lambda: shardnumsub(redis_server, f"{prefix}#/#") == 2)
    assert int(redis_cli(redis_server.port, "PUBSUB", "NUMSUB", f"{prefix}#/#").split()[-1]) == 0
    on_node = node.command("connect", name="n", url=node.url, room="r")["sid"]
    on_ours = node.command("connect", name="p", url=ours.url, room="r")["sid"]
    assert sorted(s["id"] for s in node.command("fetch")["sockets"]) == sorted([on_node, on_ours])
    assert node.command("call", client="p", ev="fetch")["args"][0] == sorted([on_node, on_ours])
    node.command("emit", room="r", ev="e", args=[1])
    node.wait(lambda e: e["event"] == "got" and e["client"] == "p" and e["name"] == "e")

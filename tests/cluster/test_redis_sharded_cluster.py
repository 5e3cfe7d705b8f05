"""RedisShardedAdapter on a real Redis Cluster (three ``redis-server`` 7.0 masters on
loopback, ``helpers.redis_cluster_process``) beside Node's ``createShardedAdapter``
(``@socket.io/redis-adapter`` 8.3 over ``redis`` 4's ``createCluster``), driven by official
socket.io-client clients (``node/peer.js --cluster 1``).

Two pyserver nodes (each given a different master's URL: the others are learnt from
``CLUSTER SLOTS``) and one Node node; rooms chosen so that their channels land on each of the
three masters. Broadcasts both ways to each room, fetch_sockets both ways; then a slot
migration (the room channel's slot moved to another master: the old one drops the
subscriptions with ``sunsubscribe``, our nodes subscribe where it went, and a publisher with
a stale map follows the ``MOVED``), and a master killed and restarted (our nodes subscribe
again when it is back; the other masters' rooms work meanwhile)."""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from helpers.redis_cluster_process import RedisClusterProcess, cli, redis_cluster

from cluster.streams_support import JsonPeer, PyNode
from pyserver.redis.slots import key_slot

__all__ = ["redis_cluster"]  # a fixture, found by its name

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def node_bin() -> str:
    path = shutil.which("node")
    if path is None:
        pytest.skip("node is not installed")
    return path


def wait_until(check: Any, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def shardnumsub(cluster: RedisClusterProcess, channel: str) -> int:
    """Subscribers of ``channel`` on the master of its slot."""
    port = cluster.owner(key_slot(channel.encode()))
    return int(cli(port, "PUBSUB", "SHARDNUMSUB", channel).split()[-1])


class Setup:
    def __init__(self, cluster: RedisClusterProcess, node: JsonPeer, ours: list[PyNode],
                 prefix: str, rooms: dict[int, str]) -> None:  # fmt: skip
        self.cluster, self.node, self.ours, self.prefix = cluster, node, ours, prefix
        self.rooms = rooms  # master port -> a room whose channel is on that master

    def channel(self, room: str) -> str:
        return f"{self.prefix}#/#{room}#"


@pytest.fixture
def setup(node_bin: str, redis_cluster: RedisClusterProcess) -> Iterator[Setup]:
    prefix = f"sc-{uuid.uuid4().hex[:8]}"
    rooms: dict[int, str] = {}
    i = 0
    while len(rooms) < len(redis_cluster.ports):
        room = f"room-{i}"
        rooms.setdefault(redis_cluster.owner(key_slot(f"{prefix}#/#{room}#".encode())), room)
        i += 1
    made: list[Any] = []
    try:
        node = JsonPeer(node_bin, redis_cluster.url, "--key", prefix, "--sharded", "1",
                        "--cluster", "1", script="peer.js")  # fmt: skip
        made.append(node)
        ours = []
        for n, port in enumerate(redis_cluster.ports[1:]):
            url = f"redis://127.0.0.1:{port}/0"
            ours.append(PyNode(url, f"py{n}", "unused", prefix, PYSERVER_ADAPTER="sharded"))
            made.append(ours[-1])
        wait_until(lambda: shardnumsub(redis_cluster, f"{prefix}#/#") == 3)
        yield Setup(redis_cluster, node, ours, prefix, rooms)
    finally:
        for thing in reversed(made):
            thing.stop()


def got(node: JsonPeer, client: str, event: str, timeout: float = 15) -> None:
    node.wait(lambda e: e["event"] == "got" and e["client"] == client and e["name"] == event,
              timeout)  # fmt: skip


def test_broadcasts_and_requests_across_masters(setup: Setup) -> None:
    node, (py0, py1), cluster = setup.node, setup.ours, setup.cluster
    assert len(set(setup.rooms)) == 3  # one room per master
    sids = {}
    for port, room in setup.rooms.items():
        sids["n", port] = node.command("connect", name=f"n-{port}", url=node.url, room=room)["sid"]
        sids["p", port] = node.command("connect", name=f"p-{port}", url=py0.url, room=room)["sid"]
    for room in setup.rooms.values():  # each room's channel, subscribed on its own master
        wait_until(lambda r=room: shardnumsub(cluster, setup.channel(r)) == 2)
    node.command("connect", name="q", url=py1.url)  # in no room
    for port, room in setup.rooms.items():
        node.command("emit", room=room, ev=f"from-node-{port}", args=[port])
        said = node.command(
            "call",
            client="q",
            ev="shout",
            args=[{"room": room, "event": f"from-py-{port}", "data": port}],
        )
        assert said["args"] == ["ok"]  # fmt: skip
    for port in setup.rooms:
        for client in (f"n-{port}", f"p-{port}"):
            got(node, client, f"from-node-{port}")
            got(node, client, f"from-py-{port}")
    time.sleep(0.3)
    for port in setup.rooms:  # each room's broadcasts reached that room only
        for other in setup.rooms:
            if other != port:
                assert node.received(f"p-{other}", f"from-node-{port}") == []
                assert node.received(f"n-{other}", f"from-py-{port}") == []
    assert node.received("q", f"from-node-{next(iter(setup.rooms))}") == []

    # requests both ways (the namespace's channel and each node's answer channel)
    room = next(iter(setup.rooms.values()))
    port = next(iter(setup.rooms))
    expected = sorted([sids["n", port], sids["p", port]])
    assert sorted(s["id"] for s in node.command("fetch", room=room)["sockets"]) == expected
    assert node.command("call", client="q", ev="fetch", args=[room])["args"][0] == expected
    everyone = sorted(node.command("call", client="q", ev="fetch")["args"][0])
    assert len(everyone) == 7 and set(sids.values()) < set(everyone)
    assert node.command("server-count")["count"] == 3
    asked = node.command("call", client="q", ev="server-ask", args=[{"event": "whoami-node"}])
    assert sorted(r["node"] for r in asked["args"][0]) == ["node", "py0"]


def test_slot_migration_and_master_restart(setup: Setup) -> None:
    node, (py0, py1), cluster = setup.node, setup.ours, setup.cluster
    # python clients only in these rooms: what is tested is our nodes' subscribing
    for port, room in setup.rooms.items():
        node.command("connect", name=f"a-{port}", url=py0.url, room=room)
        node.command("connect", name=f"b-{port}", url=py1.url, room=room)
    for room in setup.rooms.values():
        wait_until(lambda r=room: shardnumsub(cluster, setup.channel(r)) == 2)
    node.command("connect", name="q", url=py1.url)

    # 1. a room channel's slot moves to another master: its only member is on py0, whose
    # subscription the old master drops (sunsubscribe) and which subscribes where it went;
    # py1 never subscribed it, so its map is stale and its SPUBLISH gets MOVED
    room = next(f"solo-{i}" for i in range(100) if f"solo-{i}" not in setup.rooms.values())
    node.command("connect", name="s", url=py0.url, room=room)
    wait_until(lambda: shardnumsub(cluster, setup.channel(room)) == 1)
    slot = key_slot(setup.channel(room).encode())
    source = cluster.owner(slot)
    target = next(p for p in cluster.ports if p != source)
    cluster.migrate(slot, target)
    assert cluster.owner(slot) == target
    wait_until(lambda: int(cli(target, "PUBSUB", "SHARDNUMSUB", setup.channel(room))
                           .split()[-1]) == 1)  # fmt: skip
    assert int(cli(source, "PUBSUB", "SHARDNUMSUB", setup.channel(room)).split()[-1]) == 0
    node.command("emit", room=room, ev="moved-from-node", args=[1])  # Node follows MOVED
    node.command("call", client="q", ev="shout",
                 args=[{"room": room, "event": "moved-from-py", "data": 2}])  # fmt: skip
    got(node, "s", "moved-from-node")
    got(node, "s", "moved-from-py")
    cluster.migrate(slot, source)  # back

    # 2. a master killed: the others' rooms go on; back on its port: subscribed again
    victim = list(setup.rooms)[-1]
    cluster.kill(victim)
    for port, other in setup.rooms.items():
        if port != victim:
            node.command("call", client="q", ev="shout",
                         args=[{"room": other, "event": "during", "data": port}])  # fmt: skip
            got(node, f"a-{port}", "during")
    cluster.restart(victim)
    victim_room = setup.rooms[victim]
    wait_until(lambda: shardnumsub(cluster, setup.channel(victim_room)) == 2, timeout=30)
    node.command("call", client="q", ev="shout",
                 args=[{"room": victim_room, "event": "after", "data": 3}])  # fmt: skip
    got(node, f"a-{victim}", "after", timeout=30)
    got(node, f"b-{victim}", "after", timeout=30)

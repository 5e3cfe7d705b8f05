"""RedisStreamsAdapter against real peers: pyserver node processes and Node socket.io servers
with ``@socket.io/redis-streams-adapter`` 0.3 on one real ``redis-server``, driven by official
``socket.io-client`` clients (``node/streams_peer.js``, which implements connection state
recovery; python-socketio's client does not).

* A client of a pyserver node that is SIGKILLed reconnects to another node and recovers: same
  sid, its rooms and data, every packet it missed once, in order, then live ones.
* Mixed cluster: broadcasts and fetch_sockets both ways between a Node server and a pyserver
  node; a client of the Node server recovers on the pyserver node, and the reverse."""

from __future__ import annotations

import re
import shutil
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from helpers.redis_process import RedisProcess

from cluster.streams_support import JsonPeer, PyNode, free_port, redis_cli

pytestmark = pytest.mark.interop

OFFSET = re.compile(r"[0-9]+-[0-9]+")


@pytest.fixture(scope="module")
def node_bin() -> str:
    path = shutil.which("node")
    if path is None:
        pytest.skip("node is not installed")
    return path


@pytest.fixture
def names() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:8]
    return f"stream-{tag}", f"prefix-{tag}"


@pytest.fixture
def stoppers() -> Iterator[list[Any]]:
    made: list[Any] = []
    yield made
    for thing in reversed(made):
        thing.stop()


def sessions(redis: RedisProcess) -> list[str]:
    out = redis_cli(redis.port, "--scan", "--pattern", "sio:session:*")
    return [line for line in out.splitlines() if line]


def wait_sessions(redis: RedisProcess, count: int) -> None:
    deadline = time.monotonic() + 10
    while len(sessions(redis)) < count:
        assert time.monotonic() < deadline, sessions(redis)
        time.sleep(0.05)


def shout(peer: JsonPeer, client: str, room: str, event: str, data: Any) -> None:
    reply = peer.command("call", client=client, ev="shout",
                         args=[{"room": room, "event": event, "data": data}])  # fmt: skip
    assert reply["args"] == ["ok"], reply


def assert_once_in_order(ticks: list[list[Any]], count: int) -> None:
    """Every tick 0..count-1 once, in order, each with a stream offset, offsets increasing."""
    assert [t[0] for t in ticks] == list(range(count)), ticks
    offsets = [t[1] for t in ticks]
    assert all(isinstance(o, str) and OFFSET.fullmatch(o) for o in offsets), offsets
    keys = [tuple(map(int, o.split("-"))) for o in offsets]
    assert keys == sorted(set(keys)), offsets


def test_a_client_recovers_on_another_node_after_its_node_is_sigkilled(
    node_bin: str, redis_server: RedisProcess, names: tuple[str, str], stoppers: list[Any]
) -> None:
    a = PyNode(redis_server.url, "a", *names)
    stoppers.append(a)
    b = PyNode(redis_server.url, "b", *names)
    stoppers.append(b)
    peer = JsonPeer(node_bin, redis_server.url, "--server", "0")
    stoppers.append(peer)
    before = len(sessions(redis_server))
    first = peer.command("connect", name="c1", url=a.url, room="r")
    peer.command("connect", name="c2", url=b.url)
    assert first["recovered"] is False
    wait_sessions(redis_server, before + 2)  # saved while connected: a kill cannot lose it
    for i in range(5):
        shout(peer, "c2", "r", "tick", i)
    peer.wait_count("c1", "tick", 5)

    a.kill()
    peer.wait(lambda e: e["event"] == "client-disconnect" and e["client"] == "c1")
    for i in range(5, 10):  # missed: c1 keeps trying the dead node meanwhile
        shout(peer, "c2", "r", "tick", i)
    peer.command("retarget", client="c1", url=b.url)
    peer.wait(lambda e: len(peer.connections("c1")) >= 2)
    again = peer.connections("c1")[1]
    assert again["recovered"] is True
    assert again["sid"] == first["sid"]
    for i in range(10, 15):
        shout(peer, "c2", "r", "tick", i)
    peer.wait_count("c1", "tick", 15)
    time.sleep(0.3)  # nothing more comes
    assert_once_in_order(peer.received("c1", "tick"), 15)
    who = peer.command("call", client="c1", ev="whoami")["args"][0]
    assert who == {"node": "b", "sid": first["sid"], "data": {"node": "a"},
                   "rooms": sorted([first["sid"], "r"]), "recovered": True}  # fmt: skip


@pytest.fixture
def mixed(
    node_bin: str, redis_server: RedisProcess, names: tuple[str, str], stoppers: list[Any]
) -> tuple[JsonPeer, PyNode]:
    """A Node server (with clients) and a pyserver node on one stream."""
    stream, prefix = names
    node = JsonPeer(node_bin, redis_server.url, "--stream", stream, "--prefix", prefix)
    stoppers.append(node)
    ours = PyNode(redis_server.url, "py", stream, prefix)
    stoppers.append(ours)
    wait_numsub(redis_server, f"{prefix}#/#", 2)
    return node, ours


def wait_numsub(redis: RedisProcess, channel: str, count: int) -> None:
    deadline = time.monotonic() + 10
    while int(redis_cli(redis.port, "PUBSUB", "NUMSUB", channel).split()[-1]) < count:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_mixed_cluster_broadcasts_and_fetch_sockets_both_ways(
    mixed: tuple[JsonPeer, PyNode],
) -> None:
    node, ours = mixed
    on_node = node.command("connect", name="n", url=node.url, room="r")["sid"]
    on_ours = node.command("connect", name="p", url=ours.url, room="r")["sid"]
    node.command("emit", room="r", ev="from-node", args=[{"x": 1}])
    shout(node, "p", "r", "from-ours", [1, "two"])
    for client in ("n", "p"):
        node.wait_count(client, "from-node", 1)
        node.wait_count(client, "from-ours", 1)
    # with recovery on, both sides append the stream entry's id as the offset
    for client in ("n", "p"):
        (got,) = node.received(client, "from-node")
        assert got[0] == {"x": 1} and OFFSET.fullmatch(got[1])
        (got,) = node.received(client, "from-ours")
        assert got[0] == [1, "two"] and OFFSET.fullmatch(got[1])
    assert node.received("n", "from-ours")[0][1] == node.received("p", "from-ours")[0][1]
    fetched = node.command("fetch")["sockets"]
    assert sorted(s["id"] for s in fetched) == sorted([on_node, on_ours])
    assert {s["id"]: s["data"] for s in fetched}[on_ours] == {"node": "py"}
    ids = node.command("call", client="p", ev="fetch")["args"][0]
    assert ids == sorted([on_node, on_ours])


@pytest.mark.parametrize("direction", ["node-to-ours", "ours-to-node"])
def test_mixed_cluster_a_client_recovers_on_the_other_kind_of_node(
    mixed: tuple[JsonPeer, PyNode], direction: str
) -> None:
    node, ours = mixed
    home, away = (node.url, ours.url) if direction == "node-to-ours" else (ours.url, node.url)
    first = node.command("connect", name="c", url=home, room="r")
    node.command("connect", name="speaker", url=away)
    shout_to = "speaker"
    shout(node, shout_to, "r", "tick", 0)
    node.wait_count("c", "tick", 1)
    time.sleep(0.3)  # the home node saved the session (ours: while connected)
    node.command("retarget", client="c", url=away)
    node.command("drop", client="c")  # transport close: a recoverable disconnect
    node.wait(lambda e: e["event"] == "client-disconnect" and e["client"] == "c")
    for i in range(1, 4):
        shout(node, shout_to, "r", "tick", i)
        node.command("emit", room="r", ev="tock", args=[i])  # from the Node server
    node.wait(lambda e: len(node.connections("c")) >= 2)
    again = node.connections("c")[1]
    assert again["recovered"] is True, node.transcript()
    assert again["sid"] == first["sid"]
    shout(node, shout_to, "r", "tick", 4)
    node.wait_count("c", "tick", 5)
    node.wait_count("c", "tock", 3)
    time.sleep(0.3)
    assert_once_in_order(node.received("c", "tick"), 5)
    assert [t[0] for t in node.received("c", "tock")] == [1, 2, 3]
    who = node.command("call", client="c", ev="whoami")["args"][0]
    assert who["sid"] == first["sid"] and who["recovered"] is True
    assert "r" in who["rooms"]
    assert who["data"] == {"node": "node" if direction == "node-to-ours" else "py"}


def test_a_session_whose_offset_was_trimmed_gets_a_fresh_socket(
    node_bin: str, redis_server: RedisProcess, names: tuple[str, str], stoppers: list[Any]
) -> None:
    """``max_len`` bounds the stream: a client away while it was trimmed past its offset is
    not recovered (a new sid, as Node answers)."""
    from pyserver import Emitter

    stream, prefix = names
    ours = PyNode(redis_server.url, "py", stream, prefix, PYSERVER_MAX_LEN="10")
    stoppers.append(ours)
    peer = JsonPeer(node_bin, redis_server.url, "--server", "0")
    stoppers.append(peer)
    before = len(sessions(redis_server))
    first = peer.command("connect", name="c", url=ours.url, room="r")
    peer.command("connect", name="speaker", url=ours.url)
    wait_sessions(redis_server, before + 2)
    shout(peer, "speaker", "r", "tick", 0)
    peer.wait_count("c", "tick", 1)
    peer.command("retarget", client="c", url=f"http://127.0.0.1:{free_port()}")  # nobody
    peer.command("drop", client="c")
    peer.wait(lambda e: e["event"] == "client-disconnect" and e["client"] == "c")
    with Emitter(redis_server.url, stream=stream, channel_prefix=prefix, max_len=10) as emitter:
        for i in range(300):  # "MAXLEN ~" trims whole nodes of 100 entries
            emitter.to("nobody").emit("filler", i)
    assert int(redis_cli(redis_server.port, "XLEN", stream)) < 300
    peer.command("retarget", client="c", url=ours.url)
    peer.wait(lambda e: len(peer.connections("c")) >= 2)
    again = peer.connections("c")[1]
    assert again["recovered"] is False
    assert again["sid"] != first["sid"]
    who = peer.command("call", client="c", ev="whoami")["args"][0]
    assert who["recovered"] is False and who["sid"] == again["sid"]


def test_a_redis_outage_loses_nothing_and_repeats_nothing_for_connected_clients(
    node_bin: str, redis_server: RedisProcess, names: tuple[str, str], stoppers: list[Any]
) -> None:
    """Redis killed (SIGKILL) and started again (empty) under two nodes: broadcasts made
    meanwhile are queued, then appended; the readers go on from their last entry; a client that
    stayed connected gets every tick once, in order."""
    a = PyNode(redis_server.url, "a", *names)
    stoppers.append(a)
    b = PyNode(redis_server.url, "b", *names)
    stoppers.append(b)
    peer = JsonPeer(node_bin, redis_server.url, "--server", "0")
    stoppers.append(peer)
    peer.command("connect", name="c", url=a.url, room="r")
    peer.command("connect", name="speaker", url=b.url)
    for i in range(3):
        shout(peer, "speaker", "r", "tick", i)
    peer.wait_count("c", "tick", 3)
    redis_server.kill()
    for i in range(3, 6):
        shout(peer, "speaker", "r", "tick", i)
    time.sleep(0.5)
    redis_server.start()
    for i in range(6, 9):
        shout(peer, "speaker", "r", "tick", i)
    peer.wait_count("c", "tick", 9, timeout=30)
    time.sleep(0.5)
    assert_once_in_order(peer.received("c", "tick"), 9)
    assert len(peer.connections("c")) == 1
    for node in (a, b):
        log = node.log.read_text()
        assert log.count("reading the stream failed") == 1, log[-3000:]
        assert log.count("reading the stream again") == 1, log[-3000:]

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

from cluster.streams_support import JsonPeer, PyNode, redis_cli

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

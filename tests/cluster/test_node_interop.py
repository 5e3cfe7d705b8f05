"""A Node socket.io server with ``@socket.io/redis-adapter`` 8 and our Server with the
RedisAdapter, one cluster on one real ``redis-server`` (the default key "socket.io").

``node/peer.js`` is the Node member: the server, and official ``socket.io-client`` clients
connected to either server. Our node runs the protocol of ``conftest.build_node_server`` in
this process (a thread with its own ``trio.run``); python-socketio clients connect to it too.
Checked: one room spanning both servers gets the broadcasts of either; ``fetchSockets`` on
Node lists our sockets and ours lists Node's; a broadcast with acks from either collects the
replies of the clients of both; server-side emits (with and without acks) both ways;
``socketsJoin`` and ``disconnectSockets`` from Node reach our sockets.
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.redis_process import RedisProcess
from helpers.server_thread import ServerThread

from .conftest import Peer, build_node_server

pytestmark = pytest.mark.interop

NODE_DIR = Path(__file__).resolve().parent / "node"
PEER_JS = NODE_DIR / "peer.js"
WAIT = 10.0
ROOM_TAGS = itertools.count(1)


class NodePeer:
    """peer.js in the background: commands on stdin, JSON lines read by a thread."""

    def __init__(self, node: str, redis_url: str) -> None:
        self.argv = [node, str(PEER_JS), "--redis", redis_url, "--timeout-ms", "120000"]
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=NODE_DIR,
        )
        self.lines: list[dict[str, Any]] = []
        self.stderr: list[str] = []
        self.cond = threading.Condition()
        self.ids = itertools.count(1)
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()
        self.port = int(self.wait(lambda e: e["event"] == "listening")["port"])
        self.url = f"http://127.0.0.1:{self.port}"

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                line = json.loads(raw)
            except json.JSONDecodeError:
                line = {"event": "unparsed", "line": raw}
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self.stderr.append(raw)

    def wait(self, match: Callable[[dict[str, Any]], bool], timeout: float = WAIT) -> Any:
        """The first line (since the start) that ``match`` accepts; fails after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines:
                    if match(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    break
                self.cond.wait(min(left, 0.1))
        raise AssertionError(f"no matching line within {timeout}s\n{self.transcript()}")

    def command(self, cmd: str, timeout: float = WAIT, **fields: Any) -> dict[str, Any]:
        """Send one command and wait for its reply."""
        ident = next(self.ids)
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"id": ident, "cmd": cmd, **fields}) + "\n")
        self.proc.stdin.flush()
        reply: dict[str, Any] = self.wait(
            lambda e: e["event"] == "reply" and e.get("id") == ident, timeout
        )
        return reply

    def got(self, client: str, name: str, timeout: float = WAIT) -> list[Any]:
        """The arguments of the first event ``name`` that ``client`` received."""
        line = self.wait(
            lambda e: e["event"] == "got" and e["client"] == client and e["name"] == name, timeout
        )
        return list(line["args"])

    def received(self, client: str, name: str) -> list[list[Any]]:
        with self.cond:
            return [
                e["args"]
                for e in self.lines
                if e["event"] == "got" and e["client"] == client and e["name"] == name
            ]

    def transcript(self) -> str:
        with self.cond:
            shown = "\n".join(json.dumps(e)[:300] for e in self.lines[-60:])
        return f"$ {' '.join(self.argv)}\n{shown}\n--- stderr\n{''.join(self.stderr)[-2000:]}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(json.dumps({"id": 0, "cmd": "quit"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture(scope="module")
def node_bin() -> str:
    path = shutil.which("node")
    if path is None:
        pytest.skip("node is not installed")
    for package in ("socket.io", "socket.io-client", "@socket.io/redis-adapter", "redis"):
        if not (NODE_DIR / "node_modules" / package).is_dir():
            pytest.fail(f"{NODE_DIR}/node_modules/{package} is missing: run `npm ci` there")
    return path


@pytest.fixture(scope="module")
def ours(redis_server: RedisProcess) -> Iterator[ServerThread]:
    server = ServerThread(lambda: build_node_server(redis_server.url, "py"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def node_peer(node_bin: str, redis_server: RedisProcess, ours: ServerThread) -> Iterator[NodePeer]:
    peer = NodePeer(node_bin, redis_server.url)
    try:
        # both servers count each other: NUMSUB of the request channel is 2 (Node asks Redis)
        deadline = time.monotonic() + WAIT
        while (count := peer.command("server-count").get("count")) != 2:
            assert time.monotonic() < deadline, f"serverCount is {count}, not 2"
            time.sleep(0.05)
        yield peer
    finally:
        peer.stop()


@pytest.fixture
def room(
    request: pytest.FixtureRequest,
    node_peer: NodePeer,
    ours: ServerThread,
    peers: Callable[..., Peer],
) -> dict[str, Any]:
    """A room of its own for each test, with members on both servers: ``n1`` (Node client
    of the Node server), ``n2`` (Node client of ours), ``p1`` (python-socketio client of
    ours); and ``out`` (Node client of the Node server, not in the room)."""
    name = f"r-{request.node.name}"
    tag = f"t{next(ROOM_TAGS)}"  # client names are unique in the Node process
    members: dict[str, Any] = {"name": name}
    for client, url in ((f"n1-{tag}", node_peer.url), (f"n2-{tag}", ours.base_url)):
        reply = node_peer.command("connect", name=client, url=url, room=name)
        assert "sid" in reply, reply
        members[client[:2]] = (client, reply["sid"])
    out = node_peer.command("connect", name=f"out-{tag}", url=node_peer.url)
    members["out"] = (f"out-{tag}", out["sid"])
    members["p1"] = peers("p1").connect(ours.base_url, room=name)
    return members


def test_broadcast_from_node_reaches_clients_of_both(
    node_peer: NodePeer, room: dict[str, Any]
) -> None:
    (n1, _), (n2, _), (out, _) = room["n1"], room["n2"], room["out"]
    node_peer.command("emit", room=room["name"], ev="from-node", args=[1, "two", {"three": 3}])
    assert node_peer.got(n1, "from-node") == [1, "two", {"three": 3}]
    assert node_peer.got(n2, "from-node") == [1, "two", {"three": 3}]
    assert room["p1"].wait_event("from-node") == (1, "two", {"three": 3})
    # a fence to everyone: the outsider gets it, and did not get the room's broadcast
    node_peer.command("emit", ev="fence", args=[room["name"]])
    node_peer.got(out, "fence")
    assert node_peer.received(out, "from-node") == []


def test_broadcast_from_ours_reaches_clients_of_both(
    node_peer: NodePeer, room: dict[str, Any]
) -> None:
    (n1, _), (n2, _), (out, _) = room["n1"], room["n2"], room["out"]
    p1: Peer = room["p1"]
    assert (
        p1.call("shout", {"room": room["name"], "event": "from-py", "data": [b"\x01\x02", 2.5]})
        == "ok"
    )
    assert room["p1"].wait_event("from-py") == ([b"\x01\x02", 2.5],)
    assert node_peer.got(n2, "from-py") == [[{"type": "Buffer", "data": [1, 2]}, 2.5]]
    assert node_peer.got(n1, "from-py") == [[{"type": "Buffer", "data": [1, 2]}, 2.5]]
    assert p1.call("shout", {"room": None, "event": "fence", "data": 0}) == "ok"
    node_peer.got(out, "fence")
    assert node_peer.received(out, "from-py") == []


def test_fetch_sockets_both_ways(node_peer: NodePeer, room: dict[str, Any]) -> None:
    (_, n1), (_, n2) = room["n1"], room["n2"]
    p1: Peer = room["p1"]
    # Node's fetchSockets sees our two sockets (with their data and rooms) and its own
    found = node_peer.command("fetch", room=room["name"])
    assert "error" not in found, found
    by_id = {s["id"]: s for s in found["sockets"]}
    assert sorted(by_id) == sorted([n1, n2, p1.sid])
    assert by_id[n1]["data"] == {"node": "node"}
    assert by_id[n2]["data"] == {"node": "py"} and by_id[p1.sid]["data"] == {"node": "py"}
    assert sorted(by_id[p1.sid]["rooms"]) == sorted([p1.sid, room["name"]])
    # ours sees Node's socket, with the data Node keeps for it
    assert sorted(p1.call("fetch-nodes", room["name"])) == sorted(
        [[n1, "node"], [n2, "py"], [p1.sid, "py"]]
    )


def test_broadcast_with_acks_from_node_collects_our_replies(
    node_peer: NodePeer, room: dict[str, Any]
) -> None:
    (n1, _), (n2, _) = room["n1"], room["n2"]
    reply = node_peer.command(
        "ack-broadcast", room=room["name"], ev="ask", args=["q?"], timeout=5000
    )
    assert reply["error"] is None, reply
    assert sorted(r["client"] for r in reply["replies"]) == sorted([n1, n2, "p1"])
    assert all(r["args"] == ["q?"] for r in reply["replies"]), reply


def test_broadcast_with_acks_from_ours_collects_node_replies(room: dict[str, Any]) -> None:
    (n1, _), (n2, _) = room["n1"], room["n2"]
    p1: Peer = room["p1"]
    answer = p1.call("ask-room", {"room": room["name"], "event": "ask", "data": "q?", "timeout": 5})
    assert "error" not in answer, answer
    assert sorted(r["client"] for r in answer["replies"]) == sorted([n1, n2, "p1"])


def test_server_side_emit_both_ways(node_peer: NodePeer, room: dict[str, Any]) -> None:
    p1: Peer = room["p1"]
    # Node -> ours, with an ack: our on_server_event handler answers
    reply = node_peer.command("server-emit-ack", ev="whoami-node", args=["hi", 1])
    assert reply["error"] is None, reply
    assert reply["replies"] == [{"node": "py", "args": ["hi", 1]}]
    # ours -> Node, with an ack: Node's io.on handler answers
    answer = p1.call("server-ask", {"event": "whoami-node", "args": ["yo"], "timeout": 5})
    assert answer == {"replies": [{"node": "node", "args": ["yo"]}]}
    # without acks, both ways
    node_peer.command("server-emit", ev="note", args=[room["name"]])
    assert p1.wait_event("noted") == ({"node": "py", "args": [room["name"]]},)
    assert p1.call("server-tell", {"event": "note", "args": ["from-py"]}) == "ok"
    node_peer.wait(
        lambda e: e["event"] == "server-event" and e["name"] == "note" and e["args"] == ["from-py"]
    )


def test_sockets_join_and_disconnect_from_node(node_peer: NodePeer, room: dict[str, Any]) -> None:
    (n1, _), (n2, _) = room["n1"], room["n2"]
    p1: Peer = room["p1"]
    extra = room["name"] + "-extra"
    node_peer.command("sockets-join", room=room["name"], join=extra)
    # once our sockets are in the new room, a broadcast to it reaches them
    deadline = time.monotonic() + WAIT
    while sorted(s["id"] for s in node_peer.command("fetch", room=extra)["sockets"]) != sorted(
        [room["n1"][1], room["n2"][1], p1.sid]
    ):
        assert time.monotonic() < deadline, node_peer.command("fetch", room=extra)
        time.sleep(0.05)
    node_peer.command("emit", room=extra, ev="extra", args=[])
    assert node_peer.got(n2, "extra") == [] and node_peer.got(n1, "extra") == []
    p1.wait_event("extra")
    # disconnectSockets(true) from Node closes our clients' connections too
    node_peer.command("disconnect-sockets", room=extra)
    node_peer.wait(lambda e: e["event"] == "client-disconnect" and e["client"] == n2)
    node_peer.wait(lambda e: e["event"] == "client-disconnect" and e["client"] == n1)
    deadline = time.monotonic() + WAIT
    while p1.client.connected:
        assert time.monotonic() < deadline, "p1 is still connected"
        time.sleep(0.05)

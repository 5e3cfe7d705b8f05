"""``pyserver.Emitter`` against real peers: its bytes are those of Node's
``@socket.io/redis-emitter`` 5 (captured from the package itself); run from a plain Python
process (no Trio loaded) its emits, room operations and server-side events reach the clients
of pyserver nodes and of Node servers, on the classic adapter and (``stream=...``) on the
streams adapter; and Node's emitter drives pyserver nodes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from helpers.redis_process import RedisProcess

from cluster.streams_support import NODE_DIR, JsonPeer, PyNode, redis_cli
from pyserver.redis.emitter import Classic, Streams, Target

pytestmark = pytest.mark.interop

CLASSIC_APP = "cluster.conftest:node_app"


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


def node_emit(node_bin: str, ops: list[dict[str, Any]], *mode: str) -> list[dict[str, str]]:
    out = subprocess.run(
        [node_bin, str(NODE_DIR / "emit.js"), json.dumps(ops), *mode],
        capture_output=True, text=True, check=True, cwd=NODE_DIR, timeout=30,
    ).stdout  # fmt: skip
    return [json.loads(line) for line in out.splitlines()]


def test_the_same_bytes_as_nodes_redis_emitter(node_bin: str) -> None:
    ops: list[dict[str, Any]] = [
        {"op": "emit", "ev": "plain", "args": [1, "two", {"three": [3]}, None, True]},
        {"op": "emit", "to": ["r"], "except": ["x"], "volatile": True, "ev": "hi",
         "args": [1.5, {"$bytes": "0102"}]},
        {"op": "emit", "nsp": "/chat", "to": ["a", "b"], "compress": False, "ev": "e"},
        {"op": "socketsJoin", "nsp": "/chat", "to": ["a"], "rooms": ["j", "k"]},
        {"op": "socketsLeave", "except": ["y"], "rooms": "j"},
        {"op": "disconnectSockets", "to": ["a"], "close": True},
        {"op": "serverSideEmit", "ev": "ping", "args": ["x", 2]},
    ]  # fmt: skip
    expected = node_emit(node_bin, ops, "--capture")
    wire = Classic()
    ours = [
        wire.emit(Target(), "plain", [1, "two", {"three": [3]}, None, True]),
        wire.emit(Target("/", ("r",), ("x",), {"volatile": True}), "hi", [1.5, b"\x01\x02"]),
        wire.emit(Target("/chat", ("a", "b"), (), {"compress": False}), "e", []),
        wire.sockets_join(Target("/chat", ("a",)), ["j", "k"]),
        wire.sockets_leave(Target("/", (), ("y",)), "j"),
        wire.disconnect_sockets(Target("/", ("a",)), True),
        wire.server_side_emit(Target(), "ping", ["x", 2]),
    ]
    assert [(c[1], bytes(c[2]).hex()) for c in ours] == [(e["channel"], e["hex"]) for e in expected]
    with pytest.raises(ValueError, match="reserved"):
        wire.emit(Target(), "connect", [])


def test_streams_entries_are_what_the_streams_adapter_reads() -> None:
    """The fields of a streams emit, in Node's order (uid, nsp, type, data)."""
    command = Streams("s", 50).emit(Target("/", ("r",)), "e", [1])
    assert command[:7] == ("XADD", "s", "MAXLEN", "~", 50, "*", b"uid")
    assert command[7:] == (
        b"emitter", b"nsp", b"/", b"type", b"3", b"data",
        b'{"packet":{"type":2,"data":["e",1],"nsp":"/"},'
        b'"opts":{"rooms":["r"],"except":[],"flags":{}}}',
    )  # fmt: skip


WORKER = """
import sys
from pyserver import Emitter
emitter = Emitter(sys.argv[1], **eval(sys.argv[2]))
emitter.to("r").emit("job", {"done": 1}, b"\\x00\\xff")
emitter.except_("r").emit("others", 2)
emitter.sockets_join("joined")
emitter.to("joined").emit("via-joined", 3)
emitter.close()
assert "trio" not in sys.modules and "asyncio" not in sys.modules, "an event loop was loaded"
print("ok")
"""


ASYNC_WORKER = """
import asyncio, sys
from pyserver import AsyncEmitter

async def main():
    async with AsyncEmitter(sys.argv[1], **eval(sys.argv[2])) as emitter:
        await emitter.to("r").emit("job", {"done": 1}, b"\\x00\\xff")
        await emitter.except_("r").emit("others", 2)
        await emitter.sockets_join("joined")
        await emitter.to("joined").emit("via-joined", 3)

asyncio.run(main())
assert "trio" not in sys.modules, "trio was loaded"
print("ok")
"""


def run_worker(redis_url: str, *, code: str = WORKER, **options: Any) -> None:
    done = subprocess.run(
        [sys.executable, "-c", code, redis_url, repr(options)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.stdout.strip() == "ok", done.stderr


def wait_numsub(redis: RedisProcess, channel: str, count: int) -> None:
    deadline = time.monotonic() + 10
    while int(redis_cli(redis.port, "PUBSUB", "NUMSUB", channel).split()[-1]) < count:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def check_worker_events(peer: JsonPeer, in_room: list[str], outside: list[str]) -> None:
    for client in in_room:
        peer.wait_count(client, "job", 1)
        assert peer.received(client, "job")[0][:2] == [
            {"done": 1},
            {"type": "Buffer", "data": [0, 255]},
        ]
    for client in [*in_room, *outside]:
        peer.wait_count(client, "via-joined", 1)
    for client in outside:
        peer.wait_count(client, "others", 1)
    time.sleep(0.3)
    for client in outside:
        assert peer.received(client, "job") == []
    for client in in_room:
        assert peer.received(client, "others") == []


def test_a_plain_python_worker_reaches_pyserver_and_node_clients_classic(
    node_bin: str, redis_server: RedisProcess, stoppers: list[Any]
) -> None:
    ours = PyNode(redis_server.url, "py", app=CLASSIC_APP)
    stoppers.append(ours)
    node = JsonPeer(node_bin, redis_server.url, script="peer.js")
    stoppers.append(node)
    wait_numsub(redis_server, "socket.io-request#/#", 2)
    for name, url, room in [("p1", ours.url, "r"), ("p2", ours.url, None),
                            ("n1", node.url, "r"), ("n2", node.url, None)]:  # fmt: skip
        node.command("connect", name=name, url=url, **({"room": room} if room else {}))
    run_worker(redis_server.url)
    check_worker_events(node, ["p1", "n1"], ["p2", "n2"])


def test_an_asyncio_worker_reaches_pyserver_and_node_clients(
    node_bin: str, redis_server: RedisProcess, stoppers: list[Any]
) -> None:
    tag = uuid.uuid4().hex[:8]
    stream, prefix = f"stream-{tag}", f"prefix-{tag}"
    ours = PyNode(redis_server.url, "py", stream, prefix)
    stoppers.append(ours)
    node = JsonPeer(node_bin, redis_server.url, "--stream", stream, "--prefix", prefix)
    stoppers.append(node)
    wait_numsub(redis_server, f"{prefix}#/#", 2)
    for name, url, room in [("p1", ours.url, "r"), ("p2", ours.url, None),
                            ("n1", node.url, "r"), ("n2", node.url, None)]:  # fmt: skip
        node.command("connect", name=name, url=url, **({"room": room} if room else {}))
    run_worker(redis_server.url, code=ASYNC_WORKER, stream=stream, channel_prefix=prefix)
    check_worker_events(node, ["p1", "n1"], ["p2", "n2"])


def test_a_plain_python_worker_reaches_a_mixed_streams_cluster(
    node_bin: str, redis_server: RedisProcess, stoppers: list[Any]
) -> None:
    tag = uuid.uuid4().hex[:8]
    stream, prefix = f"stream-{tag}", f"prefix-{tag}"
    ours = PyNode(redis_server.url, "py", stream, prefix)
    stoppers.append(ours)
    node = JsonPeer(node_bin, redis_server.url, "--stream", stream, "--prefix", prefix)
    stoppers.append(node)
    wait_numsub(redis_server, f"{prefix}#/#", 2)
    for name, url, room in [("p1", ours.url, "r"), ("p2", ours.url, None),
                            ("n1", node.url, "r"), ("n2", node.url, None)]:  # fmt: skip
        node.command("connect", name=name, url=url, **({"room": room} if room else {}))
    run_worker(redis_server.url, stream=stream, channel_prefix=prefix)
    check_worker_events(node, ["p1", "n1"], ["p2", "n2"])


def test_nodes_redis_emitter_drives_pyserver_nodes(
    node_bin: str, redis_server: RedisProcess, stoppers: list[Any]
) -> None:
    ours = PyNode(redis_server.url, "py", app=CLASSIC_APP)
    stoppers.append(ours)
    clients = JsonPeer(node_bin, redis_server.url, "--server", "0")
    stoppers.append(clients)
    wait_numsub(redis_server, "socket.io-request#/#", 1)
    clients.command("connect", name="in", url=ours.url, room="r")
    clients.command("connect", name="out", url=ours.url)
    node_emit(node_bin, [
        {"op": "emit", "to": ["r"], "ev": "from-node", "args": [{"$bytes": "0a0b"}, 1.5]},
        {"op": "socketsJoin", "except": ["r"], "rooms": ["late"]},
        {"op": "emit", "to": ["late"], "ev": "to-late", "args": []},
        {"op": "disconnectSockets", "to": ["late"], "close": True},
    ], "--redis", redis_server.url)  # fmt: skip
    clients.wait_count("in", "from-node", 1)
    assert clients.received("in", "from-node")[0] == [{"type": "Buffer", "data": [10, 11]}, 1.5]
    clients.wait_count("out", "to-late", 1)
    clients.wait(lambda e: e["event"] == "client-disconnect" and e["client"] == "out")
    assert clients.received("out", "from-node") == []
    assert clients.received("in", "to-late") == []


def test_an_unreachable_redis_is_a_clear_error() -> None:
    """No Redis on the port: RedisError (after one retry), never a hang."""
    from cluster.streams_support import free_port
    from pyserver import Emitter
    from pyserver.sync.redis import RedisError

    emitter = Emitter(f"redis://127.0.0.1:{free_port()}/0", timeout=1)
    with pytest.raises(RedisError, match=r"Redis redis://127\.0\.0\.1"):
        emitter.emit("e", 1)
    emitter.close()

"""``pyserver cluster``: real processes on consecutive ports sharing a real ``redis-server``.

The command runs ``cluster.conftest:node_app`` (the protocol described in conftest) on every
node; python-socketio clients connect to different nodes and check that a broadcast, a
``fetch_sockets`` and a broadcast with acks span every node, and that the supervisor stops
every node on a signal, or when one of them dies.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from helpers.redis_process import RedisProcess

from pyserver.supervisor import _reached_a_listener

from .conftest import NODE_APP, Peer, free_port_block, node_env

READY_WAIT = 60.0
STOP_WAIT = 30.0


@dataclass
class Supervisor:
    """``python -m pyserver cluster ...`` in the background; its stdout lines as they come."""

    argv: list[str]
    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    @classmethod
    def start(cls, *args: str) -> Supervisor:
        argv = [sys.executable, "-m", "pyserver", "--log-level", "WARNING", "cluster", *args]
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=node_env(),
        )
        sup = cls(argv, proc)
        threading.Thread(target=sup._read, daemon=True).start()
        return sup

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_line(self, start: str, timeout: float = READY_WAIT) -> str:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines:
                    if line.startswith(start):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    break
                self.cond.wait(min(left, 0.2))
        raise AssertionError(f"no line starting {start!r} within {timeout}s:\n{self.output()}")

    def node_urls(self, n: int) -> dict[int, tuple[str, int]]:
        """Index -> (URL, pid), from the "node i: URL (pid P)" lines."""
        self.wait_line("cluster ready")
        found = {}
        for line in self.lines:
            if line.startswith("node ") and "(pid " in line:
                head, _, rest = line.partition(": ")
                url, _, pid = rest.partition(" (pid ")
                found[int(head.split()[1])] = (url.rstrip("/"), int(pid.rstrip(")")))
        assert sorted(found) == list(range(n)), self.output()
        return found

    def connect(self, peer: Peer, url: str, **options: Any) -> Peer:
        """``peer.connect(url, ...)``; a failure says what the nodes logged."""
        try:
            return peer.connect(url, **options)
        except Exception as exc:
            raise AssertionError(
                f"{peer.name}: {exc!r} connecting to {url}\n{self.output()}"
            ) from exc

    def output(self) -> str:
        """The command and the last lines (for failure messages)."""
        with self.cond:
            return f"$ {' '.join(self.argv)}\n" + "\n".join(self.lines[-80:])

    def text(self) -> str:
        """Every line so far."""
        with self.cond:
            return "\n".join(self.lines)

    def wait_exit(self, timeout: float = STOP_WAIT) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the supervisor did not exit:\n{self.output()}") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def pid_gone(pid: int, timeout: float = STOP_WAIT) -> bool:
    """Whether ``pid`` has exited (and been reaped, or is a zombie) within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rpartition(")")[2].split()[0]
            if state == "Z":
                return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def supervisors() -> Iterator[Callable[..., Supervisor]]:
    started: list[Supervisor] = []

    def start(*args: str) -> Supervisor:
        sup = Supervisor.start(*args)
        started.append(sup)
        return sup

    yield start
    for sup in started:
        if sup.proc.poll() is None:
            sup.proc.send_signal(signal.SIGINT)
            try:
                sup.proc.wait(STOP_WAIT)
            except subprocess.TimeoutExpired:
                sup.kill()


def test_three_nodes_one_room(
    redis_server: RedisProcess,
    supervisors: Callable[..., Supervisor],
    peers: Callable[..., Peer],
) -> None:
    base = free_port_block(3)
    sup = supervisors(
        "--nodes", "3", "--base-port", str(base), "--redis-url", redis_server.url, NODE_APP
    )
    nodes = sup.node_urls(3)
    assert [url for url, _ in nodes.values()] == [f"http://127.0.0.1:{base + i}" for i in range(3)]

    # two clients on each node, all in the room "r", and one outsider on node 1
    clients = [sup.connect(peers(f"c{i}"), nodes[i % 3][0], room="r") for i in range(6)]
    outsider = sup.connect(peers("outsider"), nodes[1][0])
    for i, c in enumerate(clients):
        assert c.call("whoami")["node"] == str(i % 3)

    # a broadcast from a client of each node reaches every member on every node
    for sender in range(3):
        assert clients[sender].call("shout", {"room": "r", "event": "news", "data": sender}) == "ok"
        for c in clients:
            assert c.wait_event("news") == (sender,), c.name
    assert outsider.events.empty(), "the outsider is not in the room"

    # fetch_sockets from any node sees the sockets of every node
    ids = sorted(c.sid for c in clients)
    for i in range(3):
        assert clients[i].call("fetch", "r") == ids
    assert sorted(clients[2].call("fetch", None)) == sorted([*ids, outsider.sid])

    # a broadcast with acks collects a reply from every member, on every node
    answer = clients[1].call("ask-room", {"room": "r", "event": "ask", "data": "q", "timeout": 5})
    assert "error" not in answer, answer
    assert sorted(r["client"] for r in answer["replies"]) == sorted(c.name for c in clients)

    # Ctrl-C (SIGINT) to the supervisor stops every node, then the supervisor itself
    sup.proc.send_signal(signal.SIGINT)
    assert sup.wait_exit() == 0, sup.output()
    for _, pid in nodes.values():
        assert pid_gone(pid), f"node pid {pid} still running\n{sup.output()}"
    assert "SIGINT, stopping 3 node(s)" in sup.text()
    assert "killed after" not in sup.text()
    assert "stopped with status" not in sup.text() and "Traceback" not in sup.text(), sup.text()


def test_nodes_stop_cleanly_with_websocket_clients(
    redis_server: RedisProcess,
    supervisors: Callable[..., Supervisor],
    peers: Callable[..., Peer],
) -> None:
    """A graceful stop with live WebSocket clients: no traceback, status 0 for every node,
    and every client sees its connection closed."""
    base = free_port_block(2)
    sup = supervisors(
        "--nodes", "2", "--base-port", str(base), "--redis-url", redis_server.url, NODE_APP
    )
    nodes = sup.node_urls(2)
    clients = [sup.connect(peers(f"c{i}"), nodes[i % 2][0], room="r") for i in range(4)]
    for c in clients:
        c.call("whoami")
    sup.proc.send_signal(signal.SIGINT)
    assert sup.wait_exit() == 0, sup.output()
    assert "stopped with status" not in sup.text() and "Traceback" not in sup.text(), sup.text()
    # every client was told: the server closed the connection (not a transport error)
    for c in clients:
        deadline = time.monotonic() + 10
        while c.client.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not c.client.connected


def test_start_redis_and_sigterm(
    supervisors: Callable[..., Supervisor], peers: Callable[..., Peer]
) -> None:
    if not os.path.exists("/usr/bin/redis-server"):
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    base = free_port_block(2)
    sup = supervisors("--nodes", "2", "--base-port", str(base), "--start-redis", NODE_APP)
    nodes = sup.node_urls(2)
    ready = sup.wait_line("cluster ready")
    assert "(started here)" in ready
    a = sup.connect(peers("a"), nodes[0][0], room="x")
    b = sup.connect(peers("b"), nodes[1][0], room="x")
    assert a.call("shout", {"room": "x", "event": "hi", "data": "from a"}) == "ok"
    assert b.wait_event("hi") == ("from a",)
    assert a.wait_event("hi") == ("from a",)

    redis_port = int(ready.split("redis://127.0.0.1:")[1].split("/")[0])
    sup.proc.send_signal(signal.SIGTERM)
    assert sup.wait_exit() == 0, sup.output()
    for _, pid in nodes.values():
        assert pid_gone(pid)
    # the Redis it started is gone too
    import socket

    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", redis_port), timeout=2):
        pass


def test_redis_restart_under_running_nodes(
    redis_server: RedisProcess,
    supervisors: Callable[..., Supervisor],
    peers: Callable[..., Peer],
) -> None:
    """Redis killed (SIGKILL) under three running node processes: each node keeps serving
    its own clients meanwhile, and once Redis is back the broadcasts span the nodes again."""
    base = free_port_block(3)
    sup = supervisors(
        "--nodes", "3", "--base-port", str(base), "--redis-url", redis_server.url, NODE_APP
    )
    nodes = sup.node_urls(3)
    clients = [sup.connect(peers(f"c{i}"), nodes[i][0], room="r") for i in range(3)]
    assert clients[0].call("shout", {"room": "r", "event": "before", "data": 0}) == "ok"
    for c in clients:
        c.wait_event("before")

    redis_server.kill()
    try:
        # local delivery does not wait for Redis
        assert clients[1].call("shout", {"room": "r", "event": "during", "data": 1}) == "ok"
        assert clients[1].wait_event("during") == (1,)
    finally:
        redis_server.start()

    # the nodes reconnect and resubscribe by themselves (each on its own backoff): a broadcast
    # from node 2 reaches nodes 0 and 1 again, and one from node 0 reaches node 2 (sent again
    # until they do, within a bound); only then does every node answer requests
    deadline = time.monotonic() + 30
    seq = 0
    pending = {0, 1, 2}
    while pending:
        assert time.monotonic() < deadline, f"no broadcast from another node reached {pending}"
        seq += 1
        assert clients[2].call("shout", {"room": "r", "event": "after", "data": seq}) == "ok"
        assert clients[0].call("shout", {"room": "r", "event": "after0", "data": seq}) == "ok"
        for i in sorted(pending):
            try:
                clients[i].wait_event("after0" if i == 2 else "after", timeout=0.5)
                pending.discard(i)
            except AssertionError:
                pass
    assert sup.proc.poll() is None, "the cluster stopped"
    assert sorted(clients[0].call("fetch", "r")) == sorted(c.sid for c in clients)


def test_a_node_that_dies_stops_the_cluster(
    redis_server: RedisProcess, supervisors: Callable[..., Supervisor]
) -> None:
    base = free_port_block(3)
    sup = supervisors(
        "--nodes", "3", "--base-port", str(base), "--redis-url", redis_server.url, NODE_APP
    )
    nodes = sup.node_urls(3)
    os.kill(nodes[1][1], signal.SIGKILL)
    assert sup.wait_exit() == 1, sup.output()
    assert "node 1 (port" in sup.text() and "stopping the others" in sup.text()
    for _, pid in nodes.values():
        assert pid_gone(pid)


def test_nodes_die_with_a_killed_supervisor(
    redis_server: RedisProcess, supervisors: Callable[..., Supervisor]
) -> None:
    """SIGKILL leaves the supervisor no chance to forward anything: the nodes still go
    (PR_SET_PDEATHSIG), rather than holding their ports as orphans."""
    base = free_port_block(2)
    sup = supervisors(
        "--nodes", "2", "--base-port", str(base), "--redis-url", redis_server.url, NODE_APP
    )
    nodes = sup.node_urls(2)
    sup.kill()
    for _, pid in nodes.values():
        assert pid_gone(pid), f"node pid {pid} outlived its supervisor"


def test_bad_options_get_a_clear_answer(redis_server: RedisProcess) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pyserver", "cluster", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=node_env(),
        )

    out = run("--nodes", "0", "--base-port", "4000", "--redis-url", redis_server.url)
    assert out.returncode != 0 and "--nodes must be between 1 and 64" in out.stderr
    out = run("--nodes", "2", "--base-port", "65535", "--redis-url", redis_server.url)
    assert out.returncode != 0 and "leaves the port range" in out.stderr
    out = run("--nodes", "2", "--base-port", "4000", "--redis-url", "http://x")
    assert out.returncode != 0 and "--redis-url must be" in out.stderr
    out = run("--nodes", "2", "--base-port", "4000")
    assert out.returncode != 0 and "--redis-url" in out.stderr  # one of the two is required

    out = run("--nodes", "2", "--base-port", "4000", "--redis-url", redis_server.url, "nocolon")
    assert out.returncode != 0 and "expected module:attribute" in out.stderr
    # a target that cannot be loaded: the nodes exit at once, and so does the supervisor
    base = free_port_block(2)
    out = run(
        "--nodes", "2", "--base-port", str(base), "--redis-url", redis_server.url, "no_such:app"
    )
    assert out.returncode == 1, out
    assert "No module named 'no_such'" in out.stderr + out.stdout
    assert "exited with 1" in out.stderr, out.stderr

    # a port already taken: nothing is started, the message names the port
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = run("--nodes", "1", "--base-port", str(port), "--redis-url", redis_server.url)
    assert out.returncode == 1 and f"port(s) {port}" in out.stderr and "in use" in out.stderr


def test_the_demo_by_default(supervisors: Callable[..., Supervisor]) -> None:
    """Without a target every node serves the demo (pages and Socket.IO), with the Redis
    adapter on the Redis it started."""
    if not os.path.exists("/usr/bin/redis-server"):
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    import urllib.request

    base = free_port_block(2)
    sup = supervisors("--nodes", "2", "--base-port", str(base), "--start-redis")
    nodes = sup.node_urls(2)
    for url, _ in nodes.values():
        with urllib.request.urlopen(url + "/", timeout=10) as page:
            assert page.status == 200
        with urllib.request.urlopen(url + "/socket.io/?EIO=4&transport=polling", timeout=10) as hs:
            assert hs.read().startswith(b'0{"sid":')
    sup.proc.send_signal(signal.SIGINT)
    assert sup.wait_exit() == 0, sup.output()
    assert "Traceback" not in sup.text(), sup.text()


def test_a_self_connected_probe_is_not_a_listener() -> None:
    """The readiness probe must not take a TCP self-connection for a node: bind a socket to
    a port and connect it to that same port (what an unlucky ephemeral port choice does)."""
    with socket.socket() as lone:
        lone.bind(("127.0.0.1", 0))
        lone.connect(lone.getsockname())  # nobody listens: Linux connects it to itself
        assert not _reached_a_listener(lone)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname()) as probe:
            assert _reached_a_listener(probe)

"""deploy/nginx.conf with a real nginx (Debian's /usr/sbin/nginx) in front of three pyserver
nodes (``pyserver.supervisor.Cluster``, processes of their own) sharing a real ``redis-server``.

The configuration under test is deploy/nginx.conf itself; only its ports change. Each test
client connects from a loopback address in a /24 of its own (127.0.K.7: Linux routes all of
127.0.0.0/8 to the loopback interface), so ip_hash spreads them over the nodes as it would
spread real clients. Checked: a long-polling session stays on one node
(every request of the session succeeds), WebSocket upgrades pass, and a broadcast from a
client of one node reaches the clients of the other nodes through nginx. A control run of
the same file without ``ip_hash`` shows that long-polling needs it.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import socketio
from helpers.redis_process import RedisProcess, free_port

from pyserver.supervisor import Cluster

from .conftest import NODE_APP, Peer, free_port_block, node_env

NGINX = Path("/usr/sbin/nginx")
DEPLOY_CONF = Path(__file__).resolve().parents[2] / "deploy" / "nginx.conf"
START_WAIT = 20.0
NODES = 3


def render(text: str, listen: int, node_ports: list[int], *, sticky: bool = True) -> str:
    """deploy/nginx.conf for this test: its ports, and (``sticky`` False) without ip_hash.
    Each change must apply exactly once, so that a drift of the file
    fails here rather than testing something else."""

    def sub(pattern: str, repl: str, s: str) -> str:
        out, n = re.subn(pattern, repl, s, flags=re.M)
        assert n == 1, f"deploy/nginx.conf: expected one match of {pattern!r}, got {n}"
        return out

    servers = "".join(f"        server 127.0.0.1:{p};\n" for p in node_ports)
    text = sub(r"^(?:        server 127\.0\.0\.1:\d+;\n)+", servers, text)
    text = sub(r"^(\s*)listen 8080;", rf"\1listen 127.0.0.1:{listen};", text)
    if not sticky:
        text = sub(r"^\s*ip_hash;.*\n", "", text)
    if os.geteuid() == 0:  # workers would run as nobody, without access to the temporary dir
        text = "user root;\n" + text
    return text


class Nginx:
    """nginx -p <dir> -c <dir>/nginx.conf, in the foreground (``daemon off`` in the file)."""

    def __init__(self, workdir: Path, conf: str, port: int) -> None:
        self.workdir = workdir
        self.port = port
        for sub in ("logs", "tmp"):
            (workdir / sub).mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "nginx.conf"
        self.conf.write_text(conf)
        self.proc = subprocess.Popen(
            [str(NGINX), "-p", str(workdir), "-c", str(self.conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + START_WAIT
        while True:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"nginx exited: {err}\n{self.error_log()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nginx is not listening: {self.error_log()}") from None
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def error_log(self) -> str:
        try:
            return (self.workdir / "logs" / "error.log").read_text()[-3000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful shutdown
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture(scope="module")
def nodes(redis_server: RedisProcess) -> Iterator[Cluster]:
    if not NGINX.exists():
        pytest.skip(f"{NGINX} is not installed (apt-get install nginx)")
    env = node_env()
    cluster = Cluster(
        nodes=NODES,
        base_port=free_port_block(NODES),
        redis_url=redis_server.url,
        target=NODE_APP,
        log_level="WARNING",
        grace=5.0,
        env={"PYTHONPATH": env["PYTHONPATH"]},
    )
    cluster.start()
    try:
        cluster.wait_ready()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def nginx(nodes: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    port = free_port()
    server = Nginx(
        tmp_path_factory.mktemp("nginx"), render(DEPLOY_CONF.read_text(), port, nodes.ports), port
    )
    try:
        yield server
    finally:
        server.stop()


def client_ip(k: int) -> str:
    """A loopback address in a /24 of its own (ip_hash uses the first three bytes)."""
    return f"127.{k // 250}.{k % 250 + 1}.7"


def test_config_is_valid() -> None:
    """``nginx -t`` accepts deploy/nginx.conf as shipped (ports and all)."""
    if not NGINX.exists():
        pytest.skip(f"{NGINX} is not installed")
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        for sub in ("logs", "tmp"):
            os.mkdir(os.path.join(d, sub))
        out = subprocess.run(
            [str(NGINX), "-t", "-p", d, "-c", str(DEPLOY_CONF)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert out.returncode == 0, out.stderr
    assert "syntax is ok" in out.stderr


def test_polling_sessions_stay_on_one_node(nginx: Nginx, peers: Callable[..., Peer]) -> None:
    seen: dict[str, int] = {}
    for k in range(1, 13):
        client = peers(f"poll{k}", client_ip(k)).connect(nginx.url, transport="polling")
        assert client.client.transport() == "polling"
        # every request of the session (the connect, these calls and their long-polling GETs)
        # must reach the node that holds it: any other node answers "Session ID unknown"
        first = client.call("whoami")
        for _ in range(4):
            again = client.call("whoami")
            assert again == first, f"the session moved: {first} then {again}"
        seen[first["node"]] = seen.get(first["node"], 0) + 1
        client.close()
    # ip_hash spreads the twelve /24s over the nodes (deterministically)
    assert len(seen) >= 2, f"every client landed on one node: {seen}\n{nginx.error_log()}"


def test_broadcast_through_nginx_reaches_every_node(
    nginx: Nginx, peers: Callable[..., Peer]
) -> None:
    by_node: dict[str, list[Peer]] = {}
    k = 100
    transports = ["polling", "websocket"]
    # add clients (alternately long-polling and WebSocket) until every node has two
    while min((len(v) for v in by_node.values()), default=0) < 2 or len(by_node) < NODES:
        k += 1
        assert k < 200, (
            f"ip_hash never reached every node: { {n: len(v) for n, v in by_node.items()} }"
        )
        client = peers(f"c{k}", client_ip(k)).connect(
            nginx.url, room="all", transport=transports[k % 2]
        )
        by_node.setdefault(client.call("whoami")["node"], []).append(client)
    clients = [c for group in by_node.values() for c in group]
    assert sorted(by_node) == [str(i) for i in range(NODES)]

    for node, group in sorted(by_node.items()):
        sender = group[0]
        assert sender.call("shout", {"room": "all", "event": "news", "data": node}) == "ok"
        for c in clients:
            assert c.wait_event("news") == (node,), f"{c.name} missed the broadcast of node {node}"
    # and the cluster-wide view through nginx: every socket, with the node that owns it
    pairs = clients[0].call("fetch-nodes", "all")
    assert sorted(pairs) == sorted([c.sid, n] for n, g in by_node.items() for c in g)


def test_websocket_upgrade_passes_through(nginx: Nginx, peers: Callable[..., Peer]) -> None:
    """The default client: long-polling first, then the upgrade to WebSocket through nginx."""
    client = Peer("upgrader", client_ip(7))
    try:
        client.connect(nginx.url, transport="both")
        deadline = time.monotonic() + 10
        while client.client.transport() != "websocket" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.client.transport() == "websocket", nginx.error_log()
        assert client.call("whoami")["sid"] == client.sid
    finally:
        client.close()


def test_without_ip_hash_long_polling_breaks(
    nodes: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The control: the same file without ip_hash (round robin) cannot carry a long-polling
    session, which is why the configuration has it."""
    port = free_port()
    server = Nginx(
        tmp_path_factory.mktemp("nginx-rr"),
        render(DEPLOY_CONF.read_text(), port, nodes.ports, sticky=False),
        port,
    )
    failures = 0
    try:
        for k in range(3):
            client = Peer(f"rr{k}", client_ip(k))
            try:
                client.connect(server.url, transport="polling", wait_timeout=3)
                for _ in range(3):
                    client.call("whoami", timeout=3)
            except (socketio.exceptions.ConnectionError, socketio.exceptions.TimeoutError):
                failures += 1
            finally:
                client.close()
    finally:
        server.stop()
    # round robin sends a session's requests to several nodes (by chance all of one session's
    # requests can land on one node: hence "most", not "all")
    assert failures >= 2, "long-polling worked without sticky sessions?"

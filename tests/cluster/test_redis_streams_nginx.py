"""Three pyserver nodes on RedisStreamsAdapter behind deploy/nginx.conf (a real nginx, the
file itself with its ports changed), under a steady broadcast from a worker's Emitter, with
official socket.io-client clients (WebSocket, each from its own loopback address, so ip_hash
spreads them): restarted one at a time (SIGTERM, then started again on its port), or one of
them SIGKILLed, every client moved by nginx to another node recovers there (same sid) and
ends with every tick once, in order."""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.redis_process import RedisProcess

from cluster.streams_support import JsonPeer, PyNode, free_port, redis_cli

pytestmark = pytest.mark.interop

NGINX = Path("/usr/sbin/nginx")
DEPLOY_CONF = Path(__file__).resolve().parents[2] / "deploy" / "nginx.conf"
CLIENTS = 6


@pytest.fixture
def stoppers() -> Iterator[list[Any]]:
    made: list[Any] = []
    yield made
    for thing in reversed(made):
        thing.stop()


def render(listen: int, ports: list[int]) -> str:
    """deploy/nginx.conf with these ports (the same substitutions as tests/cluster/
    test_nginx.py makes, each applied exactly once)."""
    import os
    import re

    text = DEPLOY_CONF.read_text()
    servers = "".join(f"        server 127.0.0.1:{p};\n" for p in ports)
    text, n = re.subn(r"^(?:        server 127\.0\.0\.1:\d+;\n)+", servers, text, flags=re.M)
    assert n == 1
    text, n = re.subn(r"^(\s*)listen 8080;", rf"\1listen 127.0.0.1:{listen};", text, flags=re.M)
    assert n == 1
    if os.geteuid() == 0:
        text = "user root;\n" + text
    return text


class Nginx:
    def __init__(self, workdir: Path, conf: str, port: int) -> None:
        import socket
        import subprocess

        for sub in ("logs", "tmp"):
            (workdir / sub).mkdir(parents=True, exist_ok=True)
        (workdir / "nginx.conf").write_text(conf)
        self.workdir = workdir
        self.proc = subprocess.Popen(
            [str(NGINX), "-p", str(workdir), "-c", str(workdir / "nginx.conf")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                assert self.proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class Ticker:
    """Ticks 0, 1, 2... to room "r" from a worker's Emitter, every 20 ms, until stopped."""

    def __init__(self, redis_url: str, stream: str, prefix: str) -> None:
        from pyserver import Emitter

        self.emitter = Emitter(redis_url, stream=stream, channel_prefix=prefix)
        self.sent = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.emitter.to("r").emit("tick", self.sent)
            self.sent += 1
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(10)
        self.emitter.close()


def start_cluster(
    redis_server: RedisProcess, stoppers: list[Any], tmp_path: Path
) -> tuple[list[PyNode], JsonPeer, list[str], tuple[str, str]]:
    """Three nodes, nginx, and CLIENTS clients in room "r" with their sessions saved."""
    node_bin = shutil.which("node")
    if node_bin is None or not NGINX.exists():
        pytest.skip("needs node and nginx")
    tag = uuid.uuid4().hex[:8]
    stream, prefix = f"stream-{tag}", f"prefix-{tag}"
    nodes = [PyNode(redis_server.url, f"n{k}", stream, prefix) for k in range(3)]
    stoppers.extend(nodes)
    port = free_port()
    nginx = Nginx(tmp_path, render(port, [n.port for n in nodes]), port)
    stoppers.append(nginx)
    peer = JsonPeer(node_bin, redis_server.url, "--server", "0")
    stoppers.append(peer)
    names = [f"c{k}" for k in range(CLIENTS)]
    for k, name in enumerate(names):
        peer.command("connect", name=name, url=nginx.url, room="r", source=f"127.0.{k + 1}.1")
    deadline = time.monotonic() + 10
    while (
        len(redis_cli(redis_server.port, "--scan", "--pattern", "sio:session:*").split()) < CLIENTS
    ):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return nodes, peer, names, (stream, prefix)


def check_every_tick(peer: JsonPeer, names: list[str], sent: int) -> int:
    """Every client got ticks 0..sent-1 once, in order, offsets increasing, one sid, every
    reconnection recovered; returns how many clients moved."""
    for name in names:
        peer.wait_count(name, "tick", sent, timeout=30)
    time.sleep(0.5)
    moved = 0
    for name in names:
        ticks = peer.received(name, "tick")
        assert [t[0] for t in ticks] == list(range(sent)), name
        keys = [tuple(map(int, t[1].split("-"))) for t in ticks]
        assert keys == sorted(set(keys)), name
        connections = peer.connections(name)
        assert all(c["recovered"] for c in connections[1:]), (name, connections)
        assert len({c["sid"] for c in connections}) == 1, (name, connections)
        moved += len(connections) > 1
    return moved


def test_a_node_killed_behind_nginx_under_a_steady_broadcast(
    redis_server: RedisProcess, stoppers: list[Any], tmp_path: Path
) -> None:
    nodes, peer, names, (stream, prefix) = start_cluster(redis_server, stoppers, tmp_path)
    homes = {n: peer.command("call", client=n, ev="whoami")["args"][0]["node"] for n in names}
    victim = max(range(3), key=lambda k: sum(h == f"n{k}" for h in homes.values()))
    ticker = Ticker(redis_server.url, stream, prefix)
    stoppers.append(ticker)
    time.sleep(0.5)
    nodes[victim].kill()  # SIGKILL: nothing saved, nothing said
    time.sleep(1.0)
    ticker.stop()
    moved = check_every_tick(peer, names, ticker.sent)
    assert moved == sum(h == f"n{victim}" for h in homes.values()) > 0, homes


def test_rolling_restart_behind_nginx_under_a_steady_broadcast(
    redis_server: RedisProcess, stoppers: list[Any], tmp_path: Path
) -> None:
    nodes, peer, names, (stream, prefix) = start_cluster(redis_server, stoppers, tmp_path)
    homes = {peer.command("call", client=n, ev="whoami")["args"][0]["node"] for n in names}
    assert len(homes) >= 2, homes  # ip_hash spread them
    ticker = Ticker(redis_server.url, stream, prefix)
    stoppers.append(ticker)
    for node in nodes:  # one at a time: stopped (SIGTERM), started again, then the next
        time.sleep(0.5)
        node.stop()
        time.sleep(0.5)
        node.start()
    time.sleep(0.5)
    ticker.stop()
    moved = check_every_tick(peer, names, ticker.sent)
    assert moved == CLIENTS  # every node was restarted: every client moved at least once

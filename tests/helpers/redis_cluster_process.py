"""A real Redis Cluster on loopback: three ``redis-server`` masters (cluster mode, no
replicas, no persistence) in a directory of their own, joined with ``redis-cli --cluster
create``. ``RedisClusterProcess.start()`` returns once every master sees the cluster state
``ok``; ``kill(port)``/``restart(port)`` take one master down and bring it back on its port
with its nodes.conf (the same node id, the same slots; the other masters keep serving
theirs meanwhile: ``cluster-require-full-coverage no``); ``migrate(slot, to_port)`` moves one
(empty) slot to another master as ``redis-cli --cluster reshard`` would (IMPORTING,
MIGRATING, then ``CLUSTER SETSLOT NODE`` on both and on the third).

``redis_cluster`` is the fixture: one cluster per test module, skipped when
``redis-server``/``redis-cli`` are missing. (``helpers.redis_cluster`` is something else:
several pyserver Servers sharing one standalone Redis.)"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
START_TIMEOUT = 20.0


def cluster_port() -> int:
    """A free port P with P + 10000 free too (the cluster bus), both at most 65535."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 45000)
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


def cli(port: int, *args: str) -> str:
    """One ``redis-cli`` command against 127.0.0.1:``port`` (no redirection following)."""
    return subprocess.run(
        [REDIS_CLI, "-h", "127.0.0.1", "-p", str(port), *args],
        capture_output=True, text=True, check=True, timeout=20,
    ).stdout.strip()  # fmt: skip


class RedisClusterProcess:
    def __init__(self, workdir: Path, masters: int = 3) -> None:
        self.workdir = workdir
        self.ports: list[int] = []
        while len(self.ports) < masters:
            port = cluster_port()
            if not {port, port + 10000} & {q for p in self.ports for q in (p, p + 10000)}:
                self.ports.append(port)
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        """The seed URL (the first master); the adapter learns the others from it."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def _spawn(self, port: int) -> None:
        home = self.workdir / str(port)
        home.mkdir(exist_ok=True)
        self.procs[port] = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(home / "nodes.conf"),
                "--cluster-node-timeout", "2000",
                # a master down does not take the others' slots down with it
                "--cluster-require-full-coverage", "no",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(home),
                "--logfile", str(home / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.procs[port].poll() is not None:
                raise RuntimeError(f"redis-server {port} exited: {self.log_tail(port)}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server {port} did not answer within {START_TIMEOUT}s")

    def start(self) -> None:
        for port in self.ports:
            self._spawn(port)
        subprocess.run(
            [REDIS_CLI, "--cluster", "create",
             *(f"127.0.0.1:{port}" for port in self.ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True, check=True, timeout=60,
        )  # fmt: skip
        self.wait_ok()

    def wait_ok(self) -> None:
        """Until every master running says ``cluster_state:ok``."""
        deadline = time.monotonic() + START_TIMEOUT
        for port in self.ports:
            if port not in self.procs or self.procs[port].poll() is not None:
                continue
            while "cluster_state:ok" not in cli(port, "CLUSTER", "INFO"):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"cluster not ok: {cli(port, 'CLUSTER', 'INFO')}")
                time.sleep(0.1)

    def owner(self, slot: int) -> int:
        """The port of the master serving ``slot`` (by CLUSTER SHARDS... via CLUSTER SLOTS)."""
        lines = cli(self.ports[0], "CLUSTER", "SLOTS").split("\n")
        # redis-cli prints the nested reply flat: start, end, host, port, id per master
        for i in range(0, len(lines) - 3, 1):
            if lines[i].isdigit() and lines[i + 1].isdigit() and lines[i + 2] == "127.0.0.1":
                start, end = int(lines[i]), int(lines[i + 1])
                if start <= slot <= end:
                    return int(lines[i + 3])
        raise LookupError(slot)

    def node_id(self, port: int) -> str:
        return cli(port, "CLUSTER", "MYID")

    def migrate(self, slot: int, to_port: int) -> None:
        """Move the (keyless) ``slot`` to the master on ``to_port``, telling every master."""
        source = self.owner(slot)
        src_id, dst_id = self.node_id(source), self.node_id(to_port)
        cli(to_port, "CLUSTER", "SETSLOT", str(slot), "IMPORTING", src_id)
        cli(source, "CLUSTER", "SETSLOT", str(slot), "MIGRATING", dst_id)
        for port in (to_port, source, *(p for p in self.ports if p not in (to_port, source))):
            cli(port, "CLUSTER", "SETSLOT", str(slot), "NODE", dst_id)

    def kill(self, port: int) -> None:
        proc = self.procs.get(port)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)

    def restart(self, port: int) -> None:
        self.kill(port)
        self._spawn(port)
        self.wait_ok()

    def stop(self) -> None:
        for port in self.ports:
            self.kill(port)

    def log_tail(self, port: int) -> str:
        try:
            return (self.workdir / str(port) / "redis.log").read_text()[-2000:]
        except OSError:
            return ""


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterProcess]:
    if not (Path(REDIS_SERVER).exists() and Path(REDIS_CLI).exists()):
        pytest.skip("redis-server or redis-cli is not installed (apt-get install redis-server)")
    cluster = RedisClusterProcess(tmp_path_factory.mktemp("redis-cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()

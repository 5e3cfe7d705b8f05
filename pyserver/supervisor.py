"""``pyserver cluster``: N server processes on consecutive ports sharing one Redis.

::

    pyserver cluster --nodes 3 --base-port 3001 --start-redis          # the demo, own Redis
    pyserver cluster --nodes 3 --base-port 3001 --redis-url redis://10.0.0.5:6379/0 myapp:sio

Each node is a process of its own:

* the demo (no target): ``python -m pyserver demo --host H --port P --redis-url URL``;
* a target ``module:attribute``: ``python -m pyserver run TARGET --host H --port P``. The
  application builds its adapter itself, from the environment:
  ``Server(adapter=RedisAdapter(os.environ["PYSERVER_REDIS_URL"]))``.

Every node gets ``PYSERVER_REDIS_URL``, ``PYSERVER_NODE`` (its index, 0 to N-1, also shown in
its log lines) and ``PYSERVER_CLUSTER_SIZE`` in its environment, and one
``PYSERVER_JWT_SECRET`` shared by all (a random one unless it is already set), so that a login
token signed by one node is valid on the others.

Supervision:

* ``--start-redis`` starts a ``redis-server`` first (no persistence, a temporary directory,
  ``--redis-port`` or a free port), and stops it last.
* Once every node listens, one line per node goes to stdout:
  ``node 0: http://127.0.0.1:3001/ (pid 1234)``, then ``cluster ready: ...``.
* SIGINT (Ctrl-C), SIGTERM and SIGHUP are forwarded to every node as SIGINT, which stops a
  node gracefully (its clients are told "server shutting down"); a node still running
  ``grace`` seconds later is killed. The nodes run in sessions of their own, so a Ctrl-C in
  the terminal reaches them only through the supervisor, once.
* A node that exits by itself stops the whole cluster, exit status 1: restart the lot from a
  process manager (systemd, a container's restart policy).
* On Linux the nodes and the Redis it started die with the supervisor (``PR_SET_PDEATHSIG``),
  even when it is killed with SIGKILL.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

__all__ = ["Cluster", "ClusterError", "NodeProcess", "supervise"]

MAX_NODES = 64
READY_TIMEOUT = 30.0
POLL_INTERVAL = 0.1
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


class ClusterError(Exception):
    """The cluster could not start (bad options, a busy port, a node that died)."""


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the supervisor dies (Linux only; elsewhere,
    nothing). Runs in a single-threaded supervisor, where ``preexec_fn`` is safe."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _probe_host(host: str) -> str:
    """Where to connect to reach a server bound to ``host``."""
    return {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((_probe_host(host), port), timeout=0.5) as probe:
            return _reached_a_listener(probe)
    except OSError:
        return False


def _reached_a_listener(probe: socket.socket) -> bool:
    """False for a self-connection: on Linux a connect to a loopback port nobody listens on
    can pick that same port as its own ephemeral port and succeed (TCP simultaneous open),
    which would report a node as listening before it is."""
    return bool(probe.getsockname() != probe.getpeername())


def _port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host or "0.0.0.0", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop_process(proc: subprocess.Popen[bytes], sig: int, grace: float) -> None:
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        except ProcessLookupError:
            pass


@dataclass
class NodeProcess:
    """One node: its index, port, URL and process."""

    index: int
    host: str
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        host = _probe_host(self.host)
        return f"http://[{host}]:{self.port}/" if ":" in host else f"http://{host}:{self.port}/"

    @property
    def pid(self) -> int:
        return self.proc.pid


@dataclass
class Cluster:
    """N nodes on ``base_port`` .. ``base_port + nodes - 1`` sharing one Redis. Use from a
    single-threaded program (the supervisor, a test's main thread): ``start()``,
    ``wait_ready()``, ``exited()``, ``stop()``."""

    nodes: int
    base_port: int
    redis_url: str | None = None
    start_redis: bool = False
    redis_port: int | None = None
    host: str = "127.0.0.1"
    target: str | None = None
    web_dir: Path | None = None
    log_level: str = "INFO"
    python: str = sys.executable
    grace: float = 10.0
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment for the nodes."""
    running: list[NodeProcess] = field(default_factory=list, init=False)
    killed: list[int] = field(default_factory=list, init=False)
    """The nodes that :meth:`stop` had to kill (still running after ``grace``)."""
    redis_proc: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _redis_dir: str | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if not 1 <= self.nodes <= MAX_NODES:
            raise ClusterError(f"--nodes must be between 1 and {MAX_NODES}, got {self.nodes}")
        if not 1 <= self.base_port <= 65536 - self.nodes:
            raise ClusterError(
                f"--base-port {self.base_port} with {self.nodes} nodes leaves the port range"
            )
        if self.start_redis == (self.redis_url is not None):
            raise ClusterError("give either --redis-url URL or --start-redis")
        if self.redis_url is not None and not self.redis_url.startswith(REDIS_SCHEMES):
            raise ClusterError(
                f"--redis-url must be redis://, rediss:// or unix://, not {self.redis_url!r}"
            )
        if not self.grace >= 0:
            raise ClusterError(f"--grace must be at least 0, got {self.grace}")
        if self.target is not None and ":" not in self.target:
            raise ClusterError(f"expected module:attribute, got {self.target!r}")

    @property
    def ports(self) -> list[int]:
        return list(range(self.base_port, self.base_port + self.nodes))

    # -- starting --------------------------------------------------------------------------

    def start(self) -> None:
        """Start Redis (with ``start_redis``) and every node; returns at once (see
        :meth:`wait_ready`). On failure everything started is stopped again."""
        busy = [p for p in self.ports if not _port_free(self.host, p)]
        if busy:
            raise ClusterError(f"port(s) {', '.join(map(str, busy))} on {self.host!r} in use")
        try:
            if self.start_redis:
                self._start_redis()
            env = self._node_env()
            for index, port in enumerate(self.ports):
                env["PYSERVER_NODE"] = str(index)
                proc = subprocess.Popen(
                    self._node_argv(port),
                    stdin=subprocess.DEVNULL,
                    env=dict(env),
                    start_new_session=True,
                    preexec_fn=_die_with_parent,
                )
                self.running.append(NodeProcess(index, self.host, port, proc))
        except BaseException:
            self.stop()
            raise

    def _node_env(self) -> dict[str, str]:
        assert self.redis_url is not None
        env = dict(os.environ)
        env.update(self.env)
        env["PYSERVER_REDIS_URL"] = self.redis_url
        env["PYSERVER_CLUSTER_SIZE"] = str(self.nodes)
        env.setdefault("PYSERVER_JWT_SECRET", secrets.token_hex(32))
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def _node_argv(self, port: int) -> list[str]:
        argv = [self.python, "-m", "pyserver", "--log-level", self.log_level]
        if self.target is None:
            argv += ["demo", "--host", self.host, "--port", str(port)]
            assert self.redis_url is not None
            argv += ["--redis-url", self.redis_url]
            if self.web_dir is not None:
                argv += ["--web-dir", str(self.web_dir)]
        else:
            argv += ["run", self.target, "--host", self.host, "--port", str(port)]
        return argv

    def _start_redis(self) -> None:
        exe = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(exe).exists():
            raise ClusterError("--start-redis: redis-server is not installed")
        port = self.redis_port or _free_port()
        if not _port_free("127.0.0.1", port):
            raise ClusterError(f"--redis-port {port} is in use")
        self._redis_dir = tempfile.mkdtemp(prefix="pyserver-redis-")
        argv = [
            exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", self._redis_dir,
            "--logfile", os.path.join(self._redis_dir, "redis.log"),
        ]  # fmt: skip
        self.redis_proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.redis_proc.poll() is not None:
                raise ClusterError(f"redis-server exited: {self._redis_log()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise ClusterError(f"redis-server did not answer on port {port}")

    def _redis_log(self) -> str:
        if self._redis_dir is None:
            return ""
        try:
            return Path(self._redis_dir, "redis.log").read_text()[-1000:]
        except OSError:
            return ""

    def wait_ready(
        self, timeout: float = READY_TIMEOUT, cancelled: Callable[[], bool] = lambda: False
    ) -> bool:
        """Wait until every node accepts connections: True; False if ``cancelled()`` became
        true first. Raises :class:`ClusterError` when a node exits or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        waiting = list(self.running)
        while waiting:
            if cancelled():
                return False
            gone = self.exited()
            if gone is not None:
                raise ClusterError(
                    f"node {gone.index} (port {gone.port}) exited with {gone.proc.returncode}"
                )
            waiting = [n for n in waiting if not _listening(n.host, n.port)]
            if waiting and time.monotonic() > deadline:
                ports = ", ".join(str(n.port) for n in waiting)
                raise ClusterError(f"port(s) {ports} not listening after {timeout:g}s")
            if waiting:
                time.sleep(POLL_INTERVAL)
        return True

    # -- running and stopping --------------------------------------------------------------

    def exited(self) -> NodeProcess | None:
        """A node that is no longer running, if any."""
        for node in self.running:
            if node.proc.poll() is not None:
                return node
        return None

    def stop(self) -> None:
        """SIGINT to every node, SIGKILL to those still running after ``grace`` seconds;
        then the Redis this cluster started. Idempotent."""
        for node in self.running:
            if node.proc.poll() is None:
                try:
                    node.proc.send_signal(signal.SIGINT)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + self.grace
        for node in self.running:
            try:
                node.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                node.proc.kill()
                node.proc.wait(5)
                self.killed.append(node.index)
        if self.redis_proc is not None:
            _stop_process(self.redis_proc, signal.SIGTERM, 5.0)
        if self._redis_dir is not None:
            shutil.rmtree(self._redis_dir, ignore_errors=True)
            self._redis_dir = None


def supervise(cluster: Cluster, out: TextIO = sys.stdout) -> int:
    """Run ``cluster`` until a stop signal (exit status 0) or until a node exits by itself
    (1); a cluster that cannot start gives 1 with a message on stderr."""
    received: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        received.append(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    status = 0
    try:
        cluster.start()
        if cluster.wait_ready(cancelled=lambda: bool(received)):
            for node in cluster.running:
                print(f"node {node.index}: {node.url} (pid {node.pid})", file=out, flush=True)
            print(
                f"cluster ready: {cluster.nodes} node(s) sharing {cluster.redis_url}"
                f"{' (started here)' if cluster.start_redis else ''}; Ctrl-C stops them all",
                file=out,
                flush=True,
            )
        while not received:
            gone = cluster.exited()
            if gone is not None:
                print(
                    f"pyserver cluster: node {gone.index} (port {gone.port}) exited with "
                    f"{gone.proc.returncode}; stopping the others",
                    file=sys.stderr,
                    flush=True,
                )
                status = 1
                break
            time.sleep(POLL_INTERVAL)
        if received:
            print(
                f"pyserver cluster: {signal.Signals(received[0]).name}, stopping "
                f"{len(cluster.running)} node(s)",
                file=out,
                flush=True,
            )
    except ClusterError as exc:
        print(f"pyserver cluster: {exc}", file=sys.stderr, flush=True)
        status = 1
    finally:
        cluster.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    for node in cluster.running:
        if node.index in cluster.killed:
            print(f"pyserver cluster: node {node.index} killed after {cluster.grace:g}s",
                  file=sys.stderr, flush=True)  # fmt: skip
        elif node.proc.returncode != 0 and status == 0:
            print(
                f"pyserver cluster: node {node.index} stopped with status {node.proc.returncode}",
                file=sys.stderr,
                flush=True,
            )
    return status

"""Processes of the streams cluster tests: :class:`JsonPeer` drives ``node/streams_peer.js``
(a Node server with ``@socket.io/redis-streams-adapter`` and official socket.io-client
clients) through JSON lines; :class:`PyNode` is a pyserver node process
(``pyserver run cluster.streams_app:app``) that can be SIGKILLed and started again on its
port."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

NODE_DIR = Path(__file__).resolve().parent / "node"
TESTS_DIR = NODE_DIR.parent.parent
WAIT = 15.0


class JsonPeer:
    """streams_peer.js in the background: commands on stdin, JSON lines read by a thread."""

    def __init__(
        self, node: str, redis_url: str, *args: str, script: str = "streams_peer.js"
    ) -> None:
        self.argv = [node, str(NODE_DIR / script), "--redis", redis_url, *args]
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, cwd=NODE_DIR,
        )  # fmt: skip
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
        ident = next(self.ids)
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"id": ident, "cmd": cmd, **fields}) + "\n")
        self.proc.stdin.flush()
        reply: dict[str, Any] = self.wait(
            lambda e: e["event"] == "reply" and e.get("id") == ident, timeout
        )
        return reply

    def received(self, client: str, name: str) -> list[list[Any]]:
        with self.cond:
            return [
                e["args"]
                for e in self.lines
                if e["event"] == "got" and e["client"] == client and e["name"] == name
            ]

    def wait_count(self, client: str, name: str, count: int, timeout: float = WAIT) -> None:
        self.wait(lambda e: len(self.received(client, name)) >= count, timeout)

    def connections(self, client: str) -> list[dict[str, Any]]:
        with self.cond:
            return [e for e in self.lines if e["event"] == "connected" and e["client"] == client]

    def transcript(self) -> str:
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

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PyNode:
    """A pyserver node process serving ``app`` (by default ``cluster.streams_app``, on the
    streams adapter; ``cluster.conftest:node_app`` is a node on the classic adapter)."""

    def __init__(
        self,
        redis_url: str,
        name: str,
        stream: str = "socket.io",
        prefix: str = "socket.io",
        app: str = "cluster.streams_app:app",
        **env: str,
    ) -> None:
        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        path = os.pathsep.join(p for p in (str(TESTS_DIR), os.environ.get("PYTHONPATH")) if p)
        self.env = dict(
            os.environ, PYTHONUNBUFFERED="1", PYSERVER_REDIS_URL=redis_url,
            PYSERVER_NODE=name, PYSERVER_STREAM=stream, PYSERVER_PREFIX=prefix, PYTHONPATH=path,
            **env,
        )  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = TESTS_DIR.parent / ".pytest_cache" / f"streams-node-{name}-{self.port}.log"
        self.start()

    def start(self) -> None:
        self.log.parent.mkdir(exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pyserver", "run", self.app,
             "--port", str(self.port)],
            env=self.env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node exited: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("node did not listen")

    def kill(self) -> None:
        """SIGKILL: the node gets no chance to save or say anything."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def redis_cli(port: int, *args: str) -> str:
    return subprocess.run(
        ["redis-cli", "-p", str(port), *args], capture_output=True, text=True, check=True
    ).stdout.strip()

"""Graceful shutdown under load (issue 19, item 3), with real clients.

A server process (``python -m pyserver.cli run app:sio``, the CLI's own signal handling) holds
2,000 socket.io-client connections from one Node process, half over WebSocket and half over
long-polling; every client keeps an acked message in flight (its handler awaits inside a
``try``/``finally``), and one handler broadcasts to everyone. Then SIGTERM:
the process exits (a hang guard of 60 s; the time it took is printed), every socket's
disconnect handler ran and saw "server shutting down" (also those of sockets whose
handler was cancelled by the shutdown), every started handler's ``finally`` ran, every
client saw its disconnect, and every message a client saw acknowledged is in what the server
recorded as handled (written at exit).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NODE_MODULES = ROOT / "tests" / "interop" / "node_modules"
CLIENTS = 2000

APP = """
import atexit, collections, json, os
import trio
from pyserver import Server

sio = Server(max_connections=None)
record = {"acked": [], "reasons": collections.Counter(), "started": 0, "finally": 0,
          "bcast_finally": 0}

@sio.on("ack")
async def ack(socket, n):
    record["started"] += 1
    try:
        await trio.sleep(0.05)  # many are cancelled here by the shutdown
        record["acked"].append(n)
        return n
    finally:
        record["finally"] += 1

@sio.on("broadcaster")
async def broadcaster(socket):
    try:
        i = 0
        while True:
            sio.emit("bcast", i)
            i += 1
            await trio.sleep(0.05)
    finally:
        record["bcast_finally"] += 1

@sio.on("disconnect")
async def disconnect(socket, reason):
    record["reasons"][reason] += 1

@atexit.register
def _write():
    with open(os.environ["ROBUST_RECORD"], "w") as f:
        json.dump(record, f)
"""

CLIENT = """
const { io } = require('socket.io-client');
const [url, n] = [process.argv[2], Number(process.argv[3])];
let connected = 0, disconnected = 0, bcasts = 0;
const reasons = {}; const acked = [];
const out = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
function finish() {
  out({ event: 'done', connected, disconnected, reasons, acked, bcasts });
  process.exit(0);
}
for (let i = 0; i < n; i++) {
  const transports = i % 2 ? ['polling'] : ['websocket'];
  const s = io(url, { transports, reconnection: false, forceNew: true, timeout: 60000 });
  let seq = i * 1000000;
  const loop = () => {
    const k = seq++;
    s.emit('ack', k, (r) => {
      if (r === k) acked.push(k);
      if (s.connected) setTimeout(loop, 20);
    });
  };
  s.on('connect', () => {
    connected++; if (i === 0) s.emit('broadcaster'); loop();
    if (connected === n) out({ event: 'ready' });
  });
  s.on('bcast', () => { bcasts++; });
  s.on('connect_error', (e) => out({ event: 'connect_error', message: String(e.message) }));
  s.on('disconnect', (reason) => {
    disconnected++; reasons[reason] = (reasons[reason] || 0) + 1;
    if (disconnected === n) finish();
  });
}
setTimeout(finish, 240000);
"""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, server: subprocess.Popen[bytes]) -> None:
    """Until the server accepts connections (it fails the test if it exits first)."""
    import socket

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert server.poll() is None, "the server exited"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("the server did not listen within 30 s")


@pytest.mark.skipif(not NODE_MODULES.is_dir(), reason="tests/interop/node_modules missing")
def test_sigterm_with_2000_clients(tmp_path: Path) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 3 * CLIENTS:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is too low for {CLIENTS} clients")
    want = max(soft, min(hard, 65536) if hard != resource.RLIM_INFINITY else 65536)

    def raise_nofile() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    (tmp_path / "robust_app.py").write_text(APP)
    (tmp_path / "client.js").write_text(CLIENT)
    record_path = tmp_path / "record.json"
    port = _free_port()
    env = dict(
        os.environ,
        PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}",
        ROBUST_RECORD=str(record_path),
        NODE_PATH=str(NODE_MODULES),
    )
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pyserver.cli",
            "--log-level",
            "warning",
            "run",
            "robust_app:sio",
            "--port",
            str(port),
        ],
        env=env,
        stderr=subprocess.PIPE,
        preexec_fn=raise_nofile,
    )
    client = None
    try:
        _wait_listening(port, server)
        client = subprocess.Popen(
            ["node", str(tmp_path / "client.js"), f"http://127.0.0.1:{port}", str(CLIENTS)],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=raise_nofile,
        )
        assert client.stdout is not None
        first = json.loads(client.stdout.readline())
        assert first == {"event": "ready"}, first
        time.sleep(1.0)  # acks and broadcasts under way
        started = time.monotonic()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)  # a hang guard, not a timing assertion
        took = time.monotonic() - started
        done = json.loads(client.stdout.readline())
        client.wait(timeout=30)
    finally:
        for proc in (client, server):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    assert server.returncode == 0, server.stderr.read() if server.stderr else ""
    record = json.loads(record_path.read_text())
    print(
        f"\nSIGTERM with {CLIENTS} clients: exited after {took:.2f} s; client saw {done['reasons']}"
    )
    assert done["event"] == "done"
    assert done["connected"] == CLIENTS
    assert done["disconnected"] == CLIENTS  # every client saw its disconnect
    assert record["reasons"] == {"server shutting down": CLIENTS}
    assert record["started"] > 0
    assert record["finally"] == record["started"]  # every started handler's finally ran
    assert record["bcast_finally"] == 1
    assert done["bcasts"] > 0
    lost = set(done["acked"]) - set(record["acked"])
    assert not lost, f"{len(lost)} acknowledged messages the server did not record"
    assert len(done["acked"]) > 0

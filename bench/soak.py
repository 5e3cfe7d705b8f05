"""The soak (issue 19, item 4; not CI): C connections with churn, a room broadcast and ack
traffic for D seconds, against pyserver and Node socket.io, one after the other.

The load is bench/soak_loadgen.js (socket.io-client, WebSocket): every client acks an
"ack" every few seconds, one client broadcasts to the room R times a second, and each minute
a tenth of the clients reconnect, half cleanly and half by RST. Each ack's fate is counted
apart (soak_loadgen.js's header): answered, aborted by a deliberate drop, failed because the
client saw its connection end before the deadline, timed out in socket.io-client's buffer,
answered late, or lost (no answer ever, on a connection that stayed up: only that one is a
server's fault). The server's RSS and open file
descriptors are sampled every 10 s from /proc; pyserver runs as bench/soak_server.py, whose
probe adds its living Trio tasks and its ERROR log records (its exceptions). Node's errors are
the lines of its stderr that say "Error". Writes everything to ``--json``; bench/soak_plot.py
draws it (a PNG: RSS, fds, tasks against time, per server).

The issue's run (10,000 connections, 10 minutes each):

    .venv/bin/python bench/soak.py --connections 10000 --duration 600 --json soak.json
    python bench/soak_plot.py soak.json soak.png      # needs matplotlib
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import harness

BENCH = Path(__file__).resolve().parent
SERVERS = {
    "pyserver": [sys.executable, str(BENCH / "soak_server.py")],
    "node-socket.io": ["node", str(BENCH / "servers" / "sio_node.js")],
}


def wait_port(port: int, server: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"the server did not listen on {port} within {timeout} s")


def fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def run(name: str, opts: argparse.Namespace) -> dict[str, Any]:
    port = harness.free_port()
    stats = Path(tempfile.mkstemp(prefix="soak-probe-", suffix=".jsonl")[1])
    env = dict(
        os.environ,
        PYTHONPATH=str(BENCH.parent),
        NODE_PATH=str(BENCH / "node_modules"),
        SOAK_STATS=str(stats),
        SOAK_EVERY="10",
    )
    log = tempfile.NamedTemporaryFile(prefix=f"soak-{name}-", suffix=".log", delete=False)
    server = subprocess.Popen(
        [*SERVERS[name], "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=harness.raise_nofile,
    )
    samples: list[dict[str, Any]] = []
    load: list[dict[str, Any]] = []
    result: dict[str, Any] = {}
    try:
        wait_port(port, server)
        gen = subprocess.Popen(
            [
                "node",
                str(BENCH / "soak_loadgen.js"),
                "--url",
                f"http://127.0.0.1:{port}",
                "--connections",
                str(opts.connections),
                "--duration",
                str(opts.duration),
                "--ack-ms",
                str(opts.ack_ms),
                "--rate",
                str(opts.rate),
            ],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=harness.raise_nofile,
        )
        assert gen.stdout is not None
        lines: list[dict[str, Any]] = []

        def read() -> None:
            assert gen.stdout is not None
            for line in gen.stdout:
                lines.append(json.loads(line))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        t0 = time.monotonic()
        while gen.poll() is None:
            samples.append(
                {
                    "t": round(time.monotonic() - t0, 1),
                    "rss_kib": harness.rss_kib(server.pid) if server.poll() is None else 0,
                    "fds": fds(server.pid),
                }
            )
            time.sleep(10)
        reader.join(timeout=5)
        load = [e for e in lines if e.get("event") in ("ready", "sample")]
        result = next((e for e in lines if e.get("event") == "result"), {"error": "no result"})
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=30)
        log.close()
    probe = [json.loads(line) for line in stats.read_text().splitlines()]
    text = Path(log.name).read_text(errors="replace")
    node_errors = sum("Error" in line for line in text.splitlines()) if name != "pyserver" else None
    return {
        "server": name,
        "samples": samples,
        "probe": probe,
        "load": load,
        "result": result,
        "server_errors": probe[-1]["errors"] if probe else node_errors,
        "log": log.name,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--connections", type=int, default=10000)
    p.add_argument("--duration", type=float, default=600)
    p.add_argument("--ack-ms", type=int, default=5000, help="mean ms between a client's acks")
    p.add_argument("--rate", type=float, default=10, help="room broadcasts per second")
    p.add_argument("--servers", default="pyserver,node-socket.io")
    p.add_argument("--json", type=Path, required=True)
    opts = p.parse_args()
    harness.raise_nofile()
    report = {"options": vars(opts) | {"json": str(opts.json)}, "runs": []}
    for name in opts.servers.split(","):
        report["runs"].append(run(name, opts))
        opts.json.write_text(json.dumps(report, indent=1))
    for r in report["runs"]:
        rss = [s["rss_kib"] / 1024 for s in r["samples"] if s["rss_kib"]]
        f = [s["fds"] for s in r["samples"] if s["fds"]]
        res = r["result"]
        print(
            f"{r['server']:<15} rss MiB min/max/last {min(rss):.1f}/{max(rss):.1f}/{rss[-1]:.1f}"
            f"  fds min/max {min(f)}/{max(f)}  acks sent {res.get('acks_sent')} ok "
            f"{res.get('acks_ok')} wrong {res.get('acks_wrong')} lost {res.get('acks_lost')}"
            f" late {res.get('acks_late')} aborted (dropped) {res.get('acks_aborted')}"
            f" failed by disconnect {res.get('acks_failed_disconnect')}"
            f" failed buffered {res.get('acks_failed_buffered')} open {res.get('acks_open')}"
            f"  unexpected disconnects {res.get('unexpected_disconnects')}"
            f"  loadgen lag max {res.get('lag_max_ms')} ms"
            f"  bcast {res.get('bcast_sent')}->{res.get('bcast_received')}"
            f"  resets {res.get('resets')} clean {res.get('reconnects_clean')}"
            f"  server errors {r['server_errors']}  {res.get('error') or ''}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

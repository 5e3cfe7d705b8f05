"""RSS after connection storms (issue 19, item 1): pyserver against Node socket.io, one run.

For each server (in its own process, bench/servers/): the resident memory at rest, then a
storm: N connections opened by socket.io-client (bench/sio_loadgen.js, ``--mode idle``: each
does one echo round trip), all closed; RSS sampled every ``--step`` seconds for ``--settle``
seconds after the close; then a second storm and the same samples, which shows whether what
the first storm left (memory the allocator keeps) grows with another one.

    .venv/bin/python bench/soak_storm.py [--connections 5000] [--settle 60] [--step 10]
        [--servers pyserver,node-socket.io] [--json out.json]

Two more servers show what the allocator keeps: ``pyserver+probe`` (bench/soak_server.py:
the same server sampling glibc's ``mallinfo2`` and Python's allocated blocks every
``--step`` seconds, printed after the table) and ``pyserver+trim`` (the same, calling
``malloc_trim(0)`` after each sample).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import harness
from sio_bench import NODE, OURS, SERVERS, LoadGen, ServerProcess

BENCH = Path(__file__).resolve().parent
PROBES = {"pyserver+probe": "0", "pyserver+trim": "1"}
for _name in PROBES:
    SERVERS[_name] = ("python", "../soak_server.py")


def storm(server: ServerProcess, node: str, n: int) -> dict[str, Any]:
    """Open ``n`` connections, close them all; the RSS at rest, at the peak and after."""
    args = ["--url", server.url, "--mode", "idle", "--connections", str(n), "--size", "32"]
    args += ["--max-seconds", "600"]
    gen = LoadGen(node, args, timeout=620)
    out: dict[str, Any] = {}
    try:
        gen.wait_for("baseline")
        time.sleep(0.5)
        out["rss_start_kib"] = harness.rss_kib(server.pid)
        gen.send("go")
        ready = gen.wait_for("idle_ready")
        out["connections"] = int(ready.get("connections", 0))
        time.sleep(1.0)
        out["rss_peak_kib"] = harness.rss_kib(server.pid)
        gen.send("go")
        result = gen.wait_for("result")
        out["error"] = result.get("error")
    finally:
        gen.finish()
    return out


def measure(name: str, opts: argparse.Namespace) -> dict[str, Any]:
    stats = None
    if name in PROBES:
        stats = Path(tempfile.mkstemp(prefix="soak-probe-", suffix=".jsonl")[1])
        os.environ.update(SOAK_STATS=str(stats), SOAK_EVERY=str(opts.step))
        os.environ["SOAK_TRIM"] = PROBES[name]
    server = ServerProcess(name, opts.node, sys.executable)
    try:
        server.wait_ready()
        time.sleep(1.0)
        rec: dict[str, Any] = {"server": name, "rss_rest_kib": harness.rss_kib(server.pid)}
        for k in (1, 2):
            s = storm(server, opts.node, opts.connections)
            samples = []
            t0 = time.monotonic()
            for i in range(int(opts.settle / opts.step) + 1):
                time.sleep(max(0.0, t0 + i * opts.step - time.monotonic()))
                samples.append((round(time.monotonic() - t0, 1), harness.rss_kib(server.pid)))
            s["after_close_kib"] = samples
            rec[f"storm{k}"] = s
        rec["alive"] = server.alive()
        if stats is not None:
            rec["probe"] = [json.loads(line) for line in stats.read_text().splitlines()]
        return rec
    finally:
        server.stop()
        for var in ("SOAK_STATS", "SOAK_EVERY", "SOAK_TRIM"):
            os.environ.pop(var, None)


def mib(kib: float) -> str:
    return f"{kib / 1024:.1f}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--connections", type=int, default=5000)
    p.add_argument("--settle", type=float, default=60.0)
    p.add_argument("--step", type=float, default=10.0)
    p.add_argument("--servers", default=f"{OURS},{NODE}")
    p.add_argument("--node", default="node")
    p.add_argument("--json", type=Path)
    opts = p.parse_args()
    harness.raise_nofile()
    report = [measure(name, opts) for name in opts.servers.split(",")]
    print(f"{'server':<16} {'storm':>5} {'conns':>6} {'rest':>6} {'peak':>6}  after close (MiB)")
    for rec in report:
        for k in (1, 2):
            s = rec[f"storm{k}"]
            after = " ".join(f"{t:g}s:{mib(v)}" for t, v in s["after_close_kib"])
            rest = rec["rss_rest_kib"] if k == 1 else s["rss_start_kib"]
            error = f"  ERROR {s['error']}" if s["error"] else ""
            print(
                f"{rec['server']:<16} {k:>5} {s['connections']:>6} {mib(rest):>6} "
                f"{mib(s['rss_peak_kib']):>6}  {after}{error}"
            )
    for rec in report:
        for row in rec.get("probe", []):
            print(rec["server"], json.dumps(row))
    if opts.json:
        opts.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

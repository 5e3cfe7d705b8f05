"""Cluster benchmark: one room broadcast across 3 nodes sharing a Redis, to 1,500 clients
(500 per node), in one run, side by side with (a) the single-node figure (one pyserver
process, in-memory adapter, the same 1,500 clients) and (b) Node's socket.io with
``@socket.io/redis-adapter`` (3 Node processes) on the same Redis. Issue 6, "Benchmark".

Setups (``--setups``, default all, run in this order):

* ``pyserver-1``: ``bench/servers/cluster_pyserver.py``, one process, no Redis;
* ``pyserver-3``: the same with ``RedisAdapter`` on ``$BENCH_REDIS_URL``, three processes;
* ``node-3``: ``bench/servers/cluster_node.js`` with ``@socket.io/redis-adapter``, three processes;
* ``node-1``: the same, one process, no Redis (for reference);
* ``pyserver-1r``, ``node-1r`` (not run by default): one process with the Redis adapter, to
  tell the adapter's own cost from that of running three processes on the machine;
* ``pyserver-3s``, ``node-3s`` (not run by default): three nodes on sharded pub/sub
  (``RedisShardedAdapter``, Node's ``createShardedAdapter``; Redis 7);
* ``pyserver-3x``, ``node-3x`` (not run by default): three nodes on a Redis stream
  (``RedisStreamsAdapter``, ``@socket.io/redis-streams-adapter``), connection state recovery
  off on both (a broadcast is delivered locally once appended, read back by the others).

Load (``bench/sio_loadgen.js``, mode ``bcast``, the official ``socket.io-client``): three
receiver processes of 500 clients each (``--receivers-per-node``), process *i* connected to
node *i* (all to the one node of a single-node setup), every client in the room "b"; and one
sender process connected to node 0 that emits "bcast" ``--rate`` times per second. Node 0's
handler broadcasts each to the room: the Redis adapter publishes it once, every node delivers
it to its own members. The payload carries the send time (wall clock), so latency is send to
receipt across processes.

One ``redis-server`` (Debian's package) is started for the whole run on a free port, no
persistence; before a cluster setup is measured the driver waits until its nodes have
subscribed (``PUBSUB NUMSUB socket.io-request#/#`` equals the node count).

Columns: ``per s`` deliveries per second in the measured window (all receivers);
``deliv %`` every receipt (after a bounded drain) over the sender's emits x receivers;
``p50``/``p99`` send-to-receipt in ms (p99: the worst of the receiver processes);
``srv us`` user+system CPU of all the setup's server processes over the window / deliveries;
``writes`` the servers' write system calls / deliveries (below 1: a writer sent several
messages to its client in one call, which a server that falls behind should do);
``srv cpu`` their CPU as % of one core (summed), ``redis`` redis-server's, ``gen`` the load
generators', ``other`` the rest of the machine. ``--json`` adds, per server process over the
window, user and system CPU, context switches, read/write system calls and the seconds it
was runnable but waiting for a core (``wait_s``: the machine was short of cores), and per
generator process its receipts and latencies. Then the ratios: pyserver on 3 nodes against
pyserver on 1 node, and against Node on 3 nodes. Figures are printed, never asserted.

Usage (from the repository root)::

    npm ci --prefix bench && npm ci --prefix tests/cluster/node
    .venv/bin/python bench/cluster_bench.py [--quick] [--rate 40] [--setups pyserver-3,node-3]
                                            [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import harness
from harness import BENCH, HOST, fmt, ratio

LOADGEN = BENCH / "sio_loadgen.js"
CLUSTER_MODULES = BENCH.parent / "tests" / "cluster" / "node" / "node_modules"
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"

# name -> (interpreter kind, script, nodes, uses Redis)
SETUPS: dict[str, tuple[str, str, int, bool]] = {
    "pyserver-1": ("python", "cluster_pyserver.py", 1, False),
    "pyserver-3": ("python", "cluster_pyserver.py", 3, True),
    "node-3": ("node", "cluster_node.js", 3, True),
    "node-1": ("node", "cluster_node.js", 1, False),
    # one node with the Redis adapter (not run by default): what the adapter costs by itself
    "pyserver-1r": ("python", "cluster_pyserver.py", 1, True),
    "node-1r": ("node", "cluster_node.js", 1, True),
    # the two other adapters, three nodes each (issue 18), beside Node's with the same adapter
    "pyserver-3s": ("python", "cluster_pyserver.py", 3, True),
    "node-3s": ("node", "cluster_node.js", 3, True),
    "pyserver-3x": ("python", "cluster_pyserver.py", 3, True),
    "node-3x": ("node", "cluster_node.js", 3, True),
    "pyserver-3xr": ("python", "cluster_pyserver.py", 3, True),
    "node-3xr": ("node", "cluster_node.js", 3, True),
}
ADAPTERS = {"pyserver-3s": "sharded", "node-3s": "sharded",
            "pyserver-3x": "streams", "node-3x": "streams",
            "pyserver-3xr": "streams", "node-3xr": "streams"}  # fmt: skip
RECOVERY_SETUPS = ("pyserver-3xr", "node-3xr")
"""Three streams nodes with connection state recovery on (``--recovery``)."""
RECOVERY_LOAD = BENCH.parent / "tests" / "cluster" / "node" / "recovery_load.js"
"""Setups on another adapter than the classic one (``$BENCH_ADAPTER`` for the servers)."""
SUBSCRIBED = {
    "classic": ("NUMSUB", "socket.io-request#/#"),
    "sharded": ("SHARDNUMSUB", "socket.io#/#"),
    "streams": ("NUMSUB", "socket.io#/#"),
}
"""How the driver sees that a node joined: each adapter's node count."""
DEFAULT_SETUPS = "pyserver-1,pyserver-3,node-3,node-1"
OURS, OURS_SINGLE, NODE = "pyserver-3", "pyserver-1", "node-3"


@dataclass
class Result:
    setup: str
    nodes: int
    receivers: int = 0
    rate: float = 0.0
    per_s: float | None = None
    expected_per_s: float | None = None
    delivered_pct: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    server_us: float | None = None
    server_cpu_pct: float | None = None
    writes_per_delivery: float | None = None
    redis_cpu_pct: float | None = None
    gen_cpu_pct: float | None = None
    gen_max_pct: float | None = None
    other_cpu_pct: float | None = None
    errors: int = 0
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


# ---- Redis ------------------------------------------------------------------------------


class Redis:
    """A redis-server of our own for the whole run."""

    def __init__(self) -> None:
        self.port = harness.free_port()
        self.dir = tempfile.mkdtemp(prefix="cluster-bench-redis-")
        self.proc = subprocess.Popen(
            [
                REDIS_SERVER, "--port", str(self.port), "--bind", HOST, "--save", "",
                "--appendonly", "no", "--dir", self.dir,
                "--logfile", os.path.join(self.dir, "redis.log"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not self.ping():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def command(self, *words: str, reply_lines: int = 1) -> list[str] | None:
        """One command in RESP; the first ``reply_lines`` lines of the reply (None when
        Redis does not answer)."""
        payload = f"*{len(words)}\r\n" + "".join(f"${len(w)}\r\n{w}\r\n" for w in words)
        data = b""
        try:
            with socket.create_connection((HOST, self.port), timeout=2) as s:
                s.sendall(payload.encode())
                while data.count(b"\r\n") < reply_lines:
                    chunk = s.recv(4096)
                    if not chunk:
                        return None
                    data += chunk
        except OSError:
            return None
        return data.decode(errors="replace").split("\r\n")[:reply_lines]

    def ping(self) -> bool:
        return self.command("PING") == ["+PONG"]

    def numsub(self, channel: str, kind: str = "NUMSUB") -> int:
        """Subscribers of ``channel`` (``kind`` SHARDNUMSUB: sharded ones): the reply is *2,
        $len, channel, :count."""
        reply = self.command("PUBSUB", kind, channel, reply_lines=4)
        try:
            return int(reply[3][1:]) if reply else -1
        except ValueError:
            return -1

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


# ---- servers and generators -------------------------------------------------------------


def start_nodes(setup: str, redis: Redis, opts: argparse.Namespace) -> list[harness.ServerProcess]:
    kind, script, count, uses_redis = SETUPS[setup]
    env = dict(os.environ, PYTHONUNBUFFERED="1", NODE_PATH=str(BENCH / "node_modules"))
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(BENCH.parent), os.environ.get("PYTHONPATH", "")) if p
    )
    env.pop("BENCH_REDIS_URL", None)
    adapter = ADAPTERS.get(setup, "classic")
    env["BENCH_ADAPTER"] = adapter
    env.pop("BENCH_RECOVERY", None)
    if setup in RECOVERY_SETUPS:
        env["BENCH_RECOVERY"] = "1"
    if uses_redis:
        env["BENCH_REDIS_URL"] = redis.url
    nodes = []
    try:
        for i in range(count):
            nodes.append(
                harness.ServerProcess(
                    f"{setup}-{i}", kind, script, opts.node, opts.python,
                    log_prefix="cluster-", env=env, cwd=BENCH, error_prefix=f"{setup} node {i}: ",
                )
            )  # fmt: skip
        for node in nodes:
            node.wait_ready()
        if uses_redis:
            deadline = time.monotonic() + 15
            kind, channel = SUBSCRIBED[adapter]
            while (subs := redis.numsub(channel, kind)) != count:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{subs} of {count} nodes subscribed to Redis")
                time.sleep(0.05)
    except BaseException:
        for node in nodes:
            node.stop()
        raise
    return nodes


def cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += harness.cpu_seconds(pid)
        except OSError:
            pass
    return total


def proc_counters(pid: int) -> dict[str, float]:
    """User and system CPU seconds of one process (all its threads); context switches, read
    and write system calls and seconds spent runnable waiting for a core (its main thread)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        fields = stat[stat.rindex(")") + 2 :].split()
        counters = {"user_s": int(fields[11]) / harness.CLK_TCK,
                    "sys_s": int(fields[12]) / harness.CLK_TCK}  # fmt: skip
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"):
                    counters[name.split("_")[0]] = float(value)
        with open(f"/proc/{pid}/io") as f:  # write syscalls: how much the writers batch
            for line in f:
                name, _, value = line.partition(":")
                if name in ("syscr", "syscw"):
                    counters[name] = float(value)
        with open(f"/proc/{pid}/schedstat") as f:  # ns runnable but waiting for a core
            counters["wait_s"] = int(f.read().split()[1]) / 1e9
    except (OSError, ValueError):
        return {}
    return counters


def counters_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: round(after[k] - before[k], 3) for k in before if k in after}


def run_setup(setup: str, redis: Redis, opts: argparse.Namespace) -> Result:
    count = SETUPS[setup][2]
    receivers_total = 3 * opts.receivers_per_node
    res = Result(setup=setup, nodes=count, receivers=receivers_total, rate=opts.rate)
    res.expected_per_s = receivers_total * opts.rate
    try:
        nodes = start_nodes(setup, redis, opts)
    except Exception as exc:
        res.error = str(exc)[-300:]
        return res
    gens: list[harness.LoadGen] = []
    results: list[dict[str, Any]] = []
    try:
        harness.wait_quiet(nodes)
        budget = opts.warmup + opts.duration + 240
        # the sender (process 0, its own), then one receivers process per node slot
        plan = [(nodes[0], 0, 1)] + [
            (nodes[i % count], opts.receivers_per_node, 0) for i in range(3)
        ]
        first = 1
        for node, receivers, sender in plan:
            args = [
                "--url", f"http://{HOST}:{node.port}",
                "--mode", "bcast",
                "--receivers", str(receivers),
                "--sender", str(sender),
                "--rate", str(opts.rate),
                "--size", str(opts.size),
                "--first-id", str(first),
                "--max-messages", str(int(opts.rate * (opts.warmup + opts.duration + 5))),
                "--max-seconds", str(int(budget)),
                "--open-timeout", "30",
            ]  # fmt: skip
            first += receivers
            gens.append(harness.LoadGen(opts.node, LOADGEN, args, timeout=budget + 10))
        readies = [g.wait_for("ready") for g in gens]
        bad = [r for r in readies if r.get("event") != "ready"]
        if bad:
            res.error = str(bad[0].get("error", "no ready"))[:300]
            return res
        connected = sum(int(r["receivers"]) for r in readies)
        if connected < receivers_total or not readies[0].get("sender"):
            first_error = next((r["first_error"] for r in readies if r.get("first_error")), "")
            res.error = f"only {connected}/{receivers_total} receivers connected: {first_error}"
            return res
        server_pids = [n.pid for n in nodes]
        start_ms = time.time() * 1000.0 + opts.warmup * 1000.0
        end_ms = start_ms + opts.duration * 1000.0
        for g in gens:
            g.send(f"go {start_ms:.3f} {end_ms:.3f}")
        time.sleep(max(0.0, start_ms / 1000.0 - time.time()))
        cpu0, redis0 = cpu_of(server_pids), cpu_of([redis.proc.pid])
        counters0 = [proc_counters(pid) for pid in server_pids]
        busy0, t0 = harness.machine_busy_seconds(), time.monotonic()
        profilers = []
        if opts.profile is not None and SETUPS[setup][0] == "python":
            for node in nodes:
                out = opts.profile / f"{node.name}.txt"
                started = harness.start_py_spy(node.pid, out, opts.duration, opts.python)
                if started is not None:
                    profilers.append((node.name, *started))
        time.sleep(max(0.0, end_ms / 1000.0 - time.time()))
        cpu, redis_cpu = cpu_of(server_pids) - cpu0, cpu_of([redis.proc.pid]) - redis0
        node_counters = [
            counters_delta(c0, proc_counters(pid))
            for c0, pid in zip(counters0, server_pids, strict=True)
        ]
        busy, elapsed = harness.machine_busy_seconds() - busy0, time.monotonic() - t0
        for name, proc, out in profilers:
            opts.profiles[name] = harness.finish_py_spy(proc, out, top=15)
        alive = all(n.alive() for n in nodes)
        for g in gens:
            g.send("stop")
        results = [g.wait_for("result") for g in gens]
    finally:
        for g in gens:
            g.send("end")
            g.finish()
        for node in nodes:
            node.stop()
    if not alive:
        res.error = "a server died during the window"
        return res
    totals = harness.merge_bcast_results(results, receivers_total, opts.duration)
    if totals.error is not None:
        res.error = totals.error
        return res
    deliveries, gen_cpu_s = totals.deliveries, totals.gen_cpu_s
    sent_total, received = totals.sent_total, totals.received_total
    res.per_s = totals.per_s
    res.gen_cpu_pct, res.gen_max_pct = totals.gen_cpu_pct, totals.gen_max_pct
    res.p50_ms, res.p99_ms, res.max_ms = totals.p50_ms, totals.p99_ms, totals.max_ms
    res.delivered_pct, res.errors = totals.delivered_pct, totals.errors
    res.server_cpu_pct = 100.0 * cpu / elapsed
    res.redis_cpu_pct = 100.0 * redis_cpu / elapsed
    res.other_cpu_pct = max(0.0, 100.0 * (busy - cpu - redis_cpu - gen_cpu_s) / elapsed)
    if deliveries:
        res.server_us = cpu * 1e6 / deliveries
        writes = sum(c.get("syscw", 0.0) for c in node_counters)
        res.writes_per_delivery = writes / deliveries if writes else None
    res.detail = {
        "sent_total": sent_total,
        "received_total": received,
        "deliveries_in_window": deliveries,
        "first_error": next((r["first_error"] for r in results if r.get("first_error")), None),
        # per server process over the window: CPU split and context switches
        "nodes": node_counters,
        # per generator process (the sender first)
        "generators": [
            {
                k: r.get(k)
                for k in ("received_total", "deliveries", "p50_ms", "p99_ms", "gen_cpu_pct")
            }
            for r in results
        ],
    }
    return res


# ---- report -----------------------------------------------------------------------------


def run_recovery(setup: str, redis: Redis, opts: argparse.Namespace) -> dict[str, Any]:
    """A mass reconnection on three streams nodes with recovery: ``--recovery`` clients, each
    away while ``--missed`` packets are broadcast, come back on the next node; how fast the
    missed packets are replayed (``tests/cluster/node/recovery_load.js``)."""
    nodes = start_nodes(setup, redis, opts)
    try:
        urls = ",".join(f"http://{HOST}:{node.port}" for node in nodes)
        cpu_before = cpu_of([node.proc.pid for node in nodes])
        done = subprocess.run(
            [opts.node, str(RECOVERY_LOAD), "--urls", urls, "--clients", str(opts.recovery),
             "--missed", str(opts.missed)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        cpu = cpu_of([node.proc.pid for node in nodes]) - cpu_before
        lines = done.stdout.strip().splitlines()
        found: dict[str, Any] = json.loads(lines[-1]) if lines else {"error": done.stderr[-300:]}
        found["server_cpu_s"] = cpu
        return found
    finally:
        for node in nodes:
            node.stop()


def print_recovery(found: dict[str, dict[str, Any]], out: Any = sys.stdout) -> None:
    print("mass reconnection with recovery, 3 streams nodes, each client back on the next node:",
          file=out)  # fmt: skip
    for setup, r in found.items():
        if "error" in r:
            print(f"  {setup:<13} ERROR {r['error']}", file=out)
            continue
        print(
            f"  {setup:<13} {r['recovered']}/{r['clients']} recovered, {r['packets']} missed "
            f"packets replayed in {fmt(r['seconds'], '.2f')} s = {fmt(r['per_s'], ',.0f')} /s "
            f"(server CPU {fmt(r['server_cpu_s'], '.2f')} s for the whole run)",
            file=out,
        )
    a, b = found.get("pyserver-3xr"), found.get("node-3xr")
    if a and b and "error" not in a and "error" not in b:
        print(f"  ratio pyserver / Node: replayed/s {ratio(a['per_s'], b['per_s'])}", file=out)
    print(file=out)


def print_report(results: list[Result], opts: argparse.Namespace, out: Any = sys.stdout) -> None:
    header = (
        f"{'setup':<11} {'nodes':>5} {'per s':>9} {'deliv %':>7} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'srv us':>7} {'writes':>6} {'srv cpu':>7} {'redis':>6} {'gen':>6} {'other':>6} "
        f"{'errors':>6}  note"
    )
    harness.print_header(header, out)
    for r in results:
        notes = []
        if r.error:
            notes.append(f"ERROR: {r.error[:120]}")
        if r.delivered_pct is not None and (
            r.delivered_pct < 99.0 or (r.per_s or 0) < 0.95 * (r.expected_per_s or 0)
        ):
            notes.append("falling behind")
        if r.gen_max_pct is not None and r.gen_max_pct >= 90:
            notes.append("generator saturated")
        if r.other_cpu_pct is not None and r.other_cpu_pct >= 25:
            notes.append("machine busy")
        print(
            f"{r.setup:<11} {r.nodes:>5} {fmt(r.per_s, ',.0f'):>9} "
            f"{fmt(r.delivered_pct, '.1f'):>7} {fmt(r.p50_ms, '.2f'):>8} "
            f"{fmt(r.p99_ms, '.2f'):>8} {fmt(r.server_us, '.2f'):>7} "
            f"{fmt(r.writes_per_delivery, '.2f'):>6} "
            f"{fmt(r.server_cpu_pct, '.0f') + '%':>7} {fmt(r.redis_cpu_pct, '.0f') + '%':>6} "
            f"{fmt(r.gen_cpu_pct, '.0f') + '%':>6} {fmt(r.other_cpu_pct, '.0f') + '%':>6} "
            f"{r.errors:>6}  {'; '.join(notes)}",
            file=out,
        )
    print(file=out)
    by = {r.setup: r for r in results}
    pairs = [
        (OURS, OURS_SINGLE, "pyserver, 3 nodes / 1 node"),
        (OURS, NODE, "pyserver / Node socket.io, 3 nodes each"),
        (NODE, "node-1", "Node socket.io, 3 nodes / 1 node (reference)"),
        ("pyserver-3s", "node-3s", "sharded: pyserver / Node, 3 nodes each"),
        ("pyserver-3x", "node-3x", "streams: pyserver / Node, 3 nodes each"),
        ("pyserver-3s", OURS, "pyserver, sharded / classic"),
        ("pyserver-3x", OURS, "pyserver, streams / classic"),
    ]
    lines = []
    for a, b, label in pairs:
        ra, rb = by.get(a), by.get(b)
        if ra is None or rb is None:
            continue
        lines.append(
            f"  {label:<46} deliveries/s {ratio(ra.per_s, rb.per_s):>7}   "
            f"p99 {ratio(ra.p99_ms, rb.p99_ms):>7}   srv us/delivery "
            f"{ratio(ra.server_us, rb.server_us):>7}"
        )
    if lines:
        print("ratios (deliveries/s: above 1.00x is more; p99 and us: below 1.00x is better):",
              file=out)  # fmt: skip
        for line in lines:
            print(line, file=out)
        print(file=out)
    print(
        f"{3 * opts.receivers_per_node} receivers in the room (3 generator processes of "
        f"{opts.receivers_per_node}), sender at {opts.rate:g}/s on node 0, payload "
        f"{opts.size} B, warm-up {opts.warmup:g} s, measured {opts.duration:g} s. srv us = CPU "
        "of all the setup's servers / deliveries (Redis not included: see its column). On a "
        "shared 2-core machine every figure is noisy: compare ratios of one run.",
        file=out,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="0.5 s warm-up, 2 s measured")
    p.add_argument(
        "--setups",
        default=DEFAULT_SETUPS,
        help=f"comma-separated, run in this order (default {DEFAULT_SETUPS}; known: "
        f"{','.join(SETUPS)})",
    )
    p.add_argument("--rate", type=float, default=40.0, help="broadcasts per second (default 40)")
    p.add_argument("--receivers-per-node", type=int, default=500, help="default 500")
    p.add_argument("--size", type=int, default=64, help="bytes of each payload (default 64)")
    p.add_argument("--warmup", type=float, help="seconds before measuring (default 2, quick 0.5)")
    p.add_argument("--duration", type=float, help="measured seconds (default 8, quick 2)")
    p.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    p.add_argument(
        "--recovery",
        type=int,
        default=0,
        metavar="N",
        help="also measure a mass reconnection of N clients with recovery on three streams "
        "nodes (pyserver, then Node)",
    )
    p.add_argument("--missed", type=int, default=20, help="packets missed per client (20)")
    p.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="py-spy record every pyserver node during the measured window into DIR (the "
        "profiler takes CPU: a profiled run's figures are not for comparison)",
    )
    p.add_argument("--node", default=shutil.which("node") or "node")
    p.add_argument("--python", default=sys.executable, help="interpreter for pyserver nodes")
    opts = p.parse_args(argv)
    if opts.warmup is None:
        opts.warmup = 0.5 if opts.quick else 2.0
    if opts.duration is None:
        opts.duration = 2.0 if opts.quick else 8.0
    if not (0 < opts.rate <= 10000 and opts.receivers_per_node >= 1 and opts.size >= 16):
        p.error("need 0 < --rate <= 10000, --receivers-per-node >= 1, --size >= 16")
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    setups = harness.pick_servers(opts.setups, SETUPS)
    if setups is None or harness.node_modules_missing("socket.io-client"):
        return 2
    if (
        any(SETUPS[s][0] == "node" for s in setups)
        and not (CLUSTER_MODULES / "@socket.io" / "redis-adapter").is_dir()
    ):
        print(f"missing {CLUSTER_MODULES}: run `npm ci --prefix tests/cluster/node`",
              file=sys.stderr)  # fmt: skip
        return 2
    if not Path(REDIS_SERVER).exists():
        print("redis-server is not installed (apt-get install redis-server)", file=sys.stderr)
        return 2
    harness.raise_nofile()
    opts.profiles = {}
    print(
        f"cluster broadcast: {3 * opts.receivers_per_node} receivers, {opts.rate:g}/s, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    redis = Redis()
    results = []
    recovery: dict[str, dict[str, Any]] = {}
    started = time.monotonic()
    try:
        for setup in setups:
            print(f"  {setup} ...", end="", flush=True)
            try:
                results.append(run_setup(setup, redis, opts))
            except Exception as exc:  # a broken setup must not lose the others
                results.append(Result(setup=setup, nodes=SETUPS[setup][2], error=repr(exc)[:300]))
            print(" done", flush=True)
        if opts.recovery:
            for setup in RECOVERY_SETUPS:
                print(f"  {setup} (recovery) ...", end="", flush=True)
                try:
                    recovery[setup] = run_recovery(setup, redis, opts)
                except Exception as exc:
                    recovery[setup] = {"error": repr(exc)[:300]}
                print(" done", flush=True)
    finally:
        redis.stop()
    print(f"  ({time.monotonic() - started:.0f} s)\n", flush=True)
    print_report(results, opts)
    if recovery:
        print_recovery(recovery)
    for key, prof in opts.profiles.items():
        harness.print_profile(key, prof, sys.stdout, width=130, inclusive=True)
    if opts.json is not None:
        opts.json.write_text(
            json.dumps(
                {
                    "args": {k: str(v) for k, v in vars(opts).items()},
                    "results": [asdict(r) for r in results],
                    "recovery": recovery,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

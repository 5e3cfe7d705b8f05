"""Socket.IO benchmark: pyserver's ``Server`` side by side with Node's socket.io and
python-socketio, in one run (issue 4, "Benchmark").

Each server (``bench/servers/sio_*``) runs alone in its own process on 127.0.0.1 with a free
port; all of them are started at the beginning and take turns scenario by scenario, so a change
of machine load hits them alike. The load comes from ``bench/sio_loadgen.js`` (Node, the
official ``socket.io-client``, websocket transport only). Scenarios:

* ``echo``: 50 connections, 1 and 16 events in flight on each, 32 B and 4 KiB string payloads;
  the client emits "echo" and the server emits "echo" back to it;
* ``ack``: the same with an ack callback; the server's handler returns the payload;
* ``bcast``: a room of R receivers and one sender outside it that emits "bcast" at a fixed rate;
  the server broadcasts each to the room; deliveries per second and p50/p99 latency from send
  to receipt (time stamps in the payload);
* ``idle``: resident memory per idle connection (RSS delta / N) at N connections.

``--parsers`` adds three servers (issue 16, "Benchmark"): ``pyserver-msgpack``
(``Server(parser="msgpack")``), ``pyserver-orjson`` (``Server(json=orjson)``) and
``node-msgpack`` (Node socket.io with ``socket.io-msgpack-parser``); the load generator speaks
msgpack to the msgpack servers. The bar, printed with the targets: pyserver-msgpack /
node-msgpack no worse than pyserver / node-socket.io in the same run.

The figure to compare is the server's user+system CPU time over the measured window
(``/proc/<pid>/stat``) divided by the messages (echo, ack) or deliveries (bcast) in it. It
prints one table with ratios, the reference figures and our targets (printed, never asserted).
Usage (from the repository root)::

    npm install --prefix bench
    .venv/bin/python bench/sio_bench.py [--quick] [--servers a,b] [--scenarios echo,ack,bcast,idle]
                                        [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import harness
from harness import BENCH, HOST, IdleResult, Window, fmt, human_size, ratio, wait_quiet

LOADGEN = BENCH / "sio_loadgen.js"

OURS = "pyserver"
NODE = "node-socket.io"
# name -> (interpreter kind, script)
SERVERS: dict[str, tuple[str, str]] = {
    "pyserver": ("python", "sio_pyserver.py"),
    "node-socket.io": ("node", "sio_node.js"),
    "python-socketio": ("python", "sio_python_socketio.py"),
    "pyserver-msgpack": ("python", "sio_pyserver.py"),
    "pyserver-orjson": ("python", "sio_pyserver.py"),
    "node-msgpack": ("node", "sio_node.js"),
    # issue 17: Server(metrics=True) (the handler durations timed; the counters are always on)
    "pyserver+metrics": ("python", "sio_pyserver.py"),
    # issue 17: sio.instrument(auth=False, mode="production" | "development"), no admin connected
    "pyserver+admin": ("python", "sio_pyserver.py"),
    "pyserver+admin-dev": ("python", "sio_pyserver.py"),
}
DEFAULT_SERVERS = ("pyserver", "node-socket.io", "python-socketio")
# --parsers: the parser variants (issue 16), their environment, and the pairs compared.
PARSER_SERVERS = ("pyserver-msgpack", "node-msgpack", "pyserver-orjson")
SERVER_ENV: dict[str, dict[str, str]] = {
    "pyserver-msgpack": {"BENCH_SIO_PARSER": "msgpack"},
    "pyserver-orjson": {"BENCH_SIO_JSON": "orjson"},
    "node-msgpack": {"BENCH_SIO_PARSER": "msgpack"},
    "pyserver+metrics": {"BENCH_SIO_METRICS": "1"},
    "pyserver+admin": {"BENCH_SIO_ADMIN": "production"},
    "pyserver+admin-dev": {"BENCH_SIO_ADMIN": "development"},
}
MSGPACK_PAIR = ("pyserver-msgpack", "node-msgpack")

# Reference server CPU figures measured earlier on 2 cores (issue 4): us per message
# (per delivery for bcast), keyed by (server, scenario label); and idle KiB per connection.
REFERENCE_US: dict[tuple[str, str], float] = {
    (NODE, "echo 32B x16"): 8.7,
    ("python-socketio", "echo 32B x16"): 63.5,  # 61-66
    (NODE, "ack 32B x16"): 9.3,
    ("python-socketio", "ack 32B x16"): 58.0,
    (NODE, "bcast 500@200/s"): 5.6,
    ("python-socketio", "bcast 500@200/s"): 25.0,
}
REFERENCE_P99_MS: dict[tuple[str, str], float] = {(NODE, "bcast 500@200/s"): 8.8}
REFERENCE_IDLE_KIB: dict[str, str] = {NODE: "26.7", "python-socketio": "30-48"}
# Our targets, printed and never asserted.
TARGET_BCAST_US = 3.7
TARGET_IDLE_KIB = 20.0
TARGET_SCENARIOS = ("echo 32B x16", "ack 32B x16")  # at or under Node's us/msg


@dataclass
class Scenario:
    kind: str  # "echo" | "ack" | "bcast"
    size: int = 32
    inflight: int = 1
    receivers: int = 0
    rate: float = 0.0

    @property
    def label(self) -> str:
        if self.kind == "bcast":
            return f"bcast {self.receivers}@{self.rate:g}/s"
        return f"{self.kind} {human_size(self.size)} x{self.inflight}"


@dataclass
class Result:
    server: str
    scenario: str
    kind: str
    rate_per_s: float | None = None  # messages (echo, ack) or deliveries (bcast) per second
    server_us: float | None = None  # server CPU us per message / per delivery
    writes_per_msg: float | None = None  # the server's write system calls per message
    server_cpu_pct: float | None = None
    gen_cpu_pct: float | None = None
    gen_procs: int = 1
    gen_max_pct: float | None = None  # the busiest generator process, % of one core
    other_cpu_pct: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    errors: int = 0
    delivered_pct: float | None = None  # bcast: deliveries / (sent x receivers) after the drain
    expected_per_s: float | None = None  # bcast: receivers x rate
    connections: int = 0
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    args: dict[str, Any]
    results: list[Result] = field(default_factory=list)
    idle: list[IdleResult] = field(default_factory=list)
    server_errors: dict[str, str] = field(default_factory=dict)
    profiles: dict[str, Any] = field(default_factory=dict)
    # bcast scenario label -> bench/write_floor.py's figures (the kernel's share)
    floors: dict[str, dict[str, float]] = field(default_factory=dict)


class ServerProcess(harness.ServerProcess):
    """One Socket.IO server in its own process; its output goes to a temporary log."""

    log_tail_chars = 1200

    def __init__(self, name: str, node: str, python: str, baseline: Path | None = None) -> None:
        kind, script = SERVERS[name]
        env = dict(os.environ, PYTHONUNBUFFERED="1", NODE_PATH=str(BENCH / "node_modules"))
        env["PYTHONPATH"] = harness.python_path(name, BENCH.parent, baseline)
        env.update(SERVER_ENV.get(name, {}))
        super().__init__(name, kind, script, node, python, log_prefix="sio-", env=env, cwd=BENCH)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


class LoadGen(harness.LoadGen):
    """bench/sio_loadgen.js, speaking JSON lines on stdout and obeying lines on stdin."""

    def __init__(self, node: str, args: list[str], timeout: float) -> None:
        super().__init__(node, LOADGEN, args, timeout, err_tail=600)


def parser_args(server: str) -> list[str]:
    """The load generator's parser: msgpack for a server configured with it."""
    return ["--parser", "msgpack"] if SERVER_ENV.get(server, {}).get("BENCH_SIO_PARSER") else []


# ---- measurements -----------------------------------------------------------------------


def fill_window(res: Result, win: Window, gen_cpu_s: float, count: int) -> None:
    if win.cpu is None or win.elapsed is None or win.busy is None:
        res.error = f"server died: {win.server.log_tail(300)}"
        return
    res.server_cpu_pct = 100.0 * win.cpu / win.elapsed
    res.other_cpu_pct = max(0.0, 100.0 * (win.busy - win.cpu - gen_cpu_s) / win.elapsed)
    if count:
        res.server_us = win.cpu * 1e6 / count
        if win.writes:  # (none counted: the server sends with send(2), which syscw omits)
            res.writes_per_msg = win.writes / count
        if win.instructions is not None:
            res.detail["instructions_per_msg"] = round(win.instructions / count)


def run_echo(server: ServerProcess, sc: Scenario, opts: argparse.Namespace) -> Result:
    res = Result(server=server.name, scenario=sc.label, kind=sc.kind)
    args = [
        "--url", server.url,
        "--mode", sc.kind,
        "--connections", str(opts.connections),
        "--inflight", str(sc.inflight),
        "--size", str(sc.size),
        "--warmup", str(opts.warmup),
        "--duration", str(opts.duration),
        "--max-messages", str(opts.max_messages),
        *parser_args(server.name),
    ]  # fmt: skip
    gen = LoadGen(opts.node, args, timeout=opts.warmup + opts.duration + 90)
    ev = gen.wait_for("measure_start")
    if ev.get("event") != "measure_start":
        res.error = str(ev.get("error", "no measure_start"))[:300]
        gen.finish()
        return res
    win = Window(server)
    win.start()
    profiler = start_profiler(server, sc, opts)
    gen.wait_for("measure_end")
    win.stop()
    result = gen.wait_for("result")
    gen.finish()
    if profiler is not None:
        finish_profiler(*profiler, report_key=f"{server.name} {sc.label}", opts=opts)
    if result.get("error"):
        res.error = str(result["error"])[:300]
        return res
    res.connections = int(result["connections"])
    res.rate_per_s = float(result["msgs_per_s"])
    res.p50_ms = result.get("p50_ms")
    res.p99_ms = result.get("p99_ms")
    res.gen_cpu_pct = res.gen_max_pct = float(result["gen_cpu_pct"])
    res.errors = sum(
        int(result.get(k, 0) or 0)
        for k in ("mismatches", "lost", "conn_errors", "unexpected_closes")
    )
    res.detail = {
        k: result.get(k)
        for k in (
            "messages",
            "mismatches",
            "lost",
            "conn_errors",
            "unexpected_closes",
            "first_error",
            "max_ms",
        )
    }
    if res.connections < opts.connections:
        res.error = (
            f"only {res.connections}/{opts.connections} connected: {result.get('first_error')}"
        )
    fill_window(res, win, float(result["gen_cpu_s"]), int(result["messages"]))
    return res


def run_bcast(server: ServerProcess, sc: Scenario, opts: argparse.Namespace) -> Result:
    res = Result(
        server=server.name, scenario=sc.label, kind="bcast", gen_procs=opts.bcast_procs + 1
    )
    res.expected_per_s = sc.receivers * sc.rate
    procs = max(1, min(opts.bcast_procs, sc.receivers))
    # The sender has a process of its own (the first), so that its pace does not depend on how
    # busy the receivers are; the receivers share --bcast-procs processes.
    per = [0] + [
        sc.receivers // procs + (1 if i < sc.receivers % procs else 0) for i in range(procs)
    ]
    gens = []
    first = 1
    budget = opts.warmup + opts.duration + 240
    for i, n in enumerate(per):
        args = [
            "--url", server.url,
            "--mode", "bcast",
            "--receivers", str(n),
            "--sender", "1" if i == 0 else "0",
            "--rate", str(sc.rate),
            "--size", str(opts.bcast_size),
            "--first-id", str(first),
            "--max-messages", str(int(sc.rate * (opts.warmup + opts.duration + 5))),
            "--max-seconds", str(int(budget)),
            *parser_args(server.name),
        ]  # fmt: skip
        first += n
        gens.append(LoadGen(opts.node, args, timeout=budget + 10))
    try:
        readies = [g.wait_for("ready") for g in gens]
        bad = [r for r in readies if r.get("event") != "ready"]
        if bad:
            res.error = str(bad[0].get("error", "no ready"))[:300]
            return res
        connected = sum(int(r["receivers"]) for r in readies)
        res.connections = connected
        if connected < sc.receivers or not readies[0].get("sender"):
            res.error = (
                f"only {connected}/{sc.receivers} receivers connected: "
                f"{next((r.get('first_error') for r in readies if r.get('first_error')), '')}"
            )
            return res
        # The window in wall-clock ms, the clock of the payloads' time stamps: every generator
        # counts the deliveries it receives inside it, however late it reads its stdin.
        start_ms = time.time() * 1000.0 + opts.warmup * 1000.0
        end_ms = start_ms + opts.duration * 1000.0
        for g in gens:
            g.send(f"go {start_ms:.3f} {end_ms:.3f}")
        win = Window(server)
        time.sleep(max(0.0, start_ms / 1000.0 - time.time()))
        win.start()
        profiler = start_profiler(server, sc, opts)
        time.sleep(max(0.0, end_ms / 1000.0 - time.time()))
        win.stop()
        for g in gens:
            g.send("stop")
        results = [g.wait_for("result") for g in gens]
        if profiler is not None:
            finish_profiler(*profiler, report_key=f"{server.name} {sc.label}", opts=opts)
    finally:
        for g in gens:
            g.send("end")
            g.finish()
    totals = harness.merge_bcast_results(results, sc.receivers, opts.duration)
    if totals.error is not None:
        res.error = totals.error
        return res
    deliveries, gen_cpu_s = totals.deliveries, totals.gen_cpu_s
    sent_total, received_total = totals.sent_total, totals.received_total
    res.rate_per_s = totals.per_s
    res.gen_cpu_pct, res.gen_max_pct = totals.gen_cpu_pct, totals.gen_max_pct
    res.p50_ms, res.p99_ms = totals.p50_ms, totals.p99_ms
    res.delivered_pct, res.errors = totals.delivered_pct, totals.errors
    res.detail = {
        "sent_total": sent_total,
        "sent_in_window": results[0].get("sent_in_window"),
        "received_total": received_total,
        "deliveries_in_window": deliveries,
        "max_ms": max((r.get("max_ms") or 0) for r in results),
        "first_error": next((r.get("first_error") for r in results if r.get("first_error")), None),
    }
    fill_window(res, win, gen_cpu_s, deliveries)
    return res


def run_floor(sc: Scenario, opts: argparse.Namespace) -> dict[str, float] | None:
    """bench/write_floor.py for a broadcast scenario: the CPU one write(2) of a frame of
    the same size to each receiver costs, at the same rate, without any server."""
    frame_bytes = opts.bcast_size + 40  # the Socket.IO packet around the padded payload
    args = [
        "--receivers", str(sc.receivers), "--rate", f"{sc.rate:g}",
        "--seconds", f"{min(opts.duration, 4.0):g}", "--size", str(frame_bytes),
    ]  # fmt: skip
    done = subprocess.run(
        [opts.python, str(BENCH / "write_floor.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=BENCH,
        env=dict(os.environ, PYTHONPATH=str(BENCH.parent)),
    )
    try:
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))
    except (IndexError, json.JSONDecodeError):
        print(f"  write floor failed: {done.stderr[-300:]}", file=sys.stderr)
        return None


def run_idle(server: ServerProcess, opts: argparse.Namespace) -> IdleResult:
    res = IdleResult(server=server.name)
    args = [
        "--url", server.url,
        "--mode", "idle",
        "--connections", str(opts.idle_connections),
        "--size", "32",
        "--max-seconds", "240",
        *parser_args(server.name),
    ]  # fmt: skip
    gen = LoadGen(opts.node, args, timeout=250)
    try:
        ev = gen.wait_for("baseline")
        if ev.get("event") != "baseline":
            res.error = str(ev.get("error", "no baseline"))[:300]
            return res
        time.sleep(0.5)
        res.rss_before_kib = harness.rss_kib(server.pid)
        gen.send("go")
        ev = gen.wait_for("idle_ready")
        if ev.get("event") != "idle_ready":
            res.error = str(ev.get("error", "no idle_ready"))[:300]
            return res
        time.sleep(1.0)  # let lazily allocated buffers and timers settle
        res.rss_after_kib = harness.rss_kib(server.pid) if server.alive() else 0
        res.connections = int(ev["connections"])
        gen.send("go")
        result = gen.wait_for("result")
    finally:
        gen.finish()
    if result.get("error"):
        res.error = str(result["error"])[:300]
    elif not server.alive():
        res.error = f"server died: {server.log_tail(300)}"
    elif res.connections:
        res.kib_per_conn = (res.rss_after_kib - res.rss_before_kib) / res.connections
    if res.connections < opts.idle_connections and not res.error:
        res.error = (
            f"only {res.connections}/{opts.idle_connections} connected: {ev.get('first_error')}"
        )
    return res


# ---- optional py-spy profile of a Python server during the measured window ----------------


def start_profiler(
    server: ServerProcess, sc: Scenario, opts: argparse.Namespace
) -> tuple[subprocess.Popen[bytes], Path] | None:
    if opts.profile is None or server.name not in opts.profile_servers or server.kind != "python":
        return None
    slug = re.sub(r"[^A-Za-z0-9]+", "-", sc.label).strip("-")
    out = opts.profile / f"{server.name}-{slug}.txt"
    return harness.start_py_spy(server.pid, out, opts.duration, opts.python)


def finish_profiler(
    proc: subprocess.Popen[bytes], out: Path, *, report_key: str, opts: argparse.Namespace
) -> None:
    opts.profiles[report_key] = harness.finish_py_spy(proc, out, top=15)


def print_profiles(profiles: dict[str, Any], out: Any = sys.stdout) -> None:
    for key, prof in profiles.items():
        harness.print_profile(key, prof, out, width=130, inclusive=True)


# ---- table ------------------------------------------------------------------------------


def print_table(
    report: Report, scenarios: list[Scenario], servers: list[str], out: Any = sys.stdout
) -> None:
    by_key = {(r.server, r.scenario): r for r in report.results}
    header = (
        f"{'scenario':<17} {'server':<15} {'per s':>9} {'srv us':>7} {'writes':>6} {'srv cpu':>7} "
        f"{'gen cpu':>7} {'other':>6} {'p50 ms':>7} {'p99 ms':>8} {'errors':>6}  "
        f"{'ours/this':>9} {'this/node':>9} {'ref us':>6}  note"
    )
    harness.print_header(header, out)
    for sc in scenarios:
        ours = by_key.get((OURS, sc.label))
        node = by_key.get((NODE, sc.label))
        for name in servers:
            r = by_key.get((name, sc.label))
            if r is None:
                continue
            notes = []
            if r.error:
                notes.append(f"ERROR: {r.error[:100]}")
            elif r.detail.get("repeat_errors"):
                notes.append(
                    f"{len(r.detail['repeat_errors'])} of {len(r.detail['repeats_us'])} runs "
                    f"failed: {r.detail['repeat_errors'][0][:80]}"
                )
            if r.kind == "bcast" and r.delivered_pct is not None:
                notes.append(
                    f"delivered {r.delivered_pct:.1f}% of {fmt(r.expected_per_s, ',.0f')}/s"
                )
                if r.delivered_pct < 99.0 or (r.rate_per_s or 0) < 0.95 * (r.expected_per_s or 0):
                    notes.append("falling behind")
            if r.gen_max_pct is not None and r.gen_max_pct >= 90:
                notes.append("generator saturated")
            if r.server_cpu_pct is not None and r.server_cpu_pct >= 90:
                notes.append("server saturated")
            if r.other_cpu_pct is not None and r.other_cpu_pct >= 25:
                notes.append("machine busy")
            ref = REFERENCE_US.get((name, sc.label))
            ref_p99 = REFERENCE_P99_MS.get((name, sc.label))
            if ref_p99 is not None:
                notes.append(f"ref p99 {ref_p99:g} ms")
            rel = "(ours)" if name == OURS else ratio(ours.server_us if ours else None, r.server_us)
            vs_node = (
                "(node)" if name == NODE else ratio(r.server_us, node.server_us if node else None)
            )
            print(
                f"{sc.label:<17} {name:<15} {fmt(r.rate_per_s, ',.0f'):>9} "
                f"{fmt(r.server_us, '.1f'):>7} {fmt(r.writes_per_msg, '.2f'):>6} "
                f"{fmt(r.server_cpu_pct, '.0f') + '%':>7} "
                f"{fmt(r.gen_cpu_pct, '.0f') + '%':>7} {fmt(r.other_cpu_pct, '.0f') + '%':>6} "
                f"{fmt(r.p50_ms, '.2f'):>7} {fmt(r.p99_ms, '.2f'):>8} {r.errors:>6}  "
                f"{rel:>9} {vs_node:>9} {fmt(ref, 'g'):>6}  {'; '.join(notes)}",
                file=out,
            )
        print(file=out)

    if report.idle:
        ours_idle = next((r.kib_per_conn for r in report.idle if r.server == OURS), None)
        node_idle = next((r.kib_per_conn for r in report.idle if r.server == NODE), None)
        header = (
            f"{'idle':<17} {'server':<15} {'conns':>9} {'KiB/conn':>9} "
            f"{'ours/this':>9} {'this/node':>9} {'ref':>6}  note"
        )
        harness.print_header(header, out)
        for ir in sorted(report.idle, key=lambda x: servers.index(x.server)):
            notes = [f"ERROR: {ir.error[:100]}"] if ir.error else []
            rel = "(ours)" if ir.server == OURS else ratio(ours_idle, ir.kib_per_conn)
            vs_node = "(node)" if ir.server == NODE else ratio(ir.kib_per_conn, node_idle)
            print(
                f"{'RSS delta':<17} {ir.server:<15} {ir.connections:>9} "
                f"{fmt(ir.kib_per_conn, '.1f'):>9} {rel:>9} {vs_node:>9} "
                f"{REFERENCE_IDLE_KIB.get(ir.server, '-'):>6}  {'; '.join(notes)}",
                file=out,
            )
        print(file=out)

    harness.print_server_errors(report.server_errors, out)

    print_targets(report, scenarios, out)
    print(
        "per s = messages (echo, ack: round trips) or deliveries (bcast) per second in the "
        "measured window. srv us = server user+system CPU over the window / those messages or "
        "deliveries: the figure to compare. writes = the server's write/writev system calls "
        "(/proc/<pid>/io syscw; - for a server that sends with send(2)) per message or "
        "delivery. ours/this = pyserver's srv us / this "
        "server's (below 1.00x ours is cheaper); this/node = this server's / Node socket.io's. "
        "cpu columns are % of one core; gen = the Node load generator(s) (socket.io-client), "
        "other = the rest of the machine in the window. ref us: measured earlier on 2 cores "
        "(issue 4).",
        file=out,
    )


def print_targets(report: Report, scenarios: list[Scenario], out: Any) -> None:
    """Our targets, printed and never asserted (DESIGN.md section 6)."""
    by_key = {(r.server, r.scenario): r for r in report.results}
    lines = []

    def verdict(ok: bool | None) -> str:
        return "-" if ok is None else ("met" if ok else "missed")

    for label in TARGET_SCENARIOS:
        ours, node = by_key.get((OURS, label)), by_key.get((NODE, label))
        if ours is None:
            continue
        bar = node.server_us if node else None
        ok = None if ours.server_us is None or bar is None else ours.server_us <= bar
        lines.append(
            f"  {label}: {fmt(ours.server_us, '.1f')} us/msg, target <= Node's "
            f"{fmt(bar, '.1f')} (this run) -> {verdict(ok)}"
        )
    for sc in scenarios:
        if sc.kind != "bcast":
            continue
        ours, node = by_key.get((OURS, sc.label)), by_key.get((NODE, sc.label))
        if ours is None:
            continue
        ok_us = None if ours.server_us is None else ours.server_us <= TARGET_BCAST_US
        node_p99 = node.p99_ms if node else None
        ok_p99 = None if ours.p99_ms is None or node_p99 is None else ours.p99_ms <= node_p99
        lines.append(
            f"  {sc.label}: {fmt(ours.server_us, '.2f')} us/delivery, target <= "
            f"{TARGET_BCAST_US:g} -> {verdict(ok_us)}; p99 {fmt(ours.p99_ms, '.2f')} ms, target "
            f"<= Node's {fmt(node_p99, '.2f')} (this run) -> {verdict(ok_p99)}"
        )
        floor = report.floors.get(sc.label)
        if floor is not None:
            lines.append(
                f"    the kernel's share here (bench/write_floor.py): {floor['us_per_write']:.2f} "
                f"us per write(2) to one of {sc.receivers} sockets at {sc.rate:g}/s; writes "
                f"per delivery: pyserver {fmt(ours.writes_per_msg, '.2f')}, Node "
                f"{fmt(node.writes_per_msg if node else None, '.2f')}"
            )
    lines += parser_lines(by_key, scenarios)
    idle = next((r for r in report.idle if r.server == OURS), None)
    if idle is not None:
        got = idle.kib_per_conn
        lines.append(
            f"  idle: {fmt(got, '.1f')} KiB/conn, target <= {TARGET_IDLE_KIB:g} -> "
            f"{verdict(None if got is None else got <= TARGET_IDLE_KIB)}"
        )
    if lines:
        print("pyserver targets (indicative, not asserted):", file=out)
        for line in lines:
            print(line, file=out)


def parser_lines(by_key: dict[tuple[str, str], Result], scenarios: list[Scenario]) -> list[str]:
    """Issue 16's bar, per scenario: pyserver-msgpack / node-msgpack no worse than pyserver /
    node-socket.io (srv us ratios of this run); and orjson against the built-in JSON."""
    lines = []

    def us(server: str, label: str) -> float | None:
        r = by_key.get((server, label))
        return None if r is None else r.server_us

    def div(a: float | None, b: float | None) -> float | None:
        return None if a is None or not b else a / b

    for sc in scenarios:
        json_ratio = div(us(OURS, sc.label), us(NODE, sc.label))
        mp_ratio = div(us(MSGPACK_PAIR[0], sc.label), us(MSGPACK_PAIR[1], sc.label))
        orjson = div(us("pyserver-orjson", sc.label), us(OURS, sc.label))
        if mp_ratio is None and orjson is None:
            continue
        ok = None if mp_ratio is None or json_ratio is None else mp_ratio <= json_ratio
        verdict = "-" if ok is None else ("met" if ok else "missed")
        lines.append(
            f"  {sc.label} parsers: pyserver/node msgpack {fmt(mp_ratio, '.2f')}x, target <= "
            f"JSON's {fmt(json_ratio, '.2f')}x -> {verdict}; orjson/built-in JSON "
            f"{fmt(orjson, '.2f')}x"
        )
    return lines


# ---- main -------------------------------------------------------------------------------


def build_scenarios(opts: argparse.Namespace) -> tuple[list[Scenario], bool]:
    sizes = [int(s) for s in opts.sizes.split(",") if s]
    inflights = [int(k) for k in opts.inflight.split(",") if k]
    wanted = {s.strip() for s in opts.scenarios.split(",") if s.strip()}
    unknown = wanted - {"echo", "ack", "bcast", "idle"}
    if unknown:
        raise SystemExit(f"unknown scenarios {sorted(unknown)}; known: echo,ack,bcast,idle")
    out: list[Scenario] = []
    for kind in ("echo", "ack"):
        if kind in wanted:
            out += [Scenario(kind, size=s, inflight=k) for s in sizes for k in inflights]
    if "bcast" in wanted:
        for item in opts.bcast.split(","):
            receivers, _, rate = item.strip().partition("@")
            out.append(
                Scenario(
                    "bcast", size=opts.bcast_size, receivers=int(receivers), rate=float(rate or 200)
                )
            )
    return out, "idle" in wanted


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="short runs: 0.5 s warm-up, 2 s measured, 500 idle connections",
    )
    p.add_argument(
        "--servers",
        default=",".join(DEFAULT_SERVERS),
        help=f"comma-separated subset of {','.join(SERVERS)} (default: "
        f"{','.join(DEFAULT_SERVERS)})",
    )
    p.add_argument(
        "--parsers",
        action="store_true",
        help=f"also run {','.join(PARSER_SERVERS)} (issue 16): Server(parser='msgpack'), "
        "Node socket.io with socket.io-msgpack-parser, Server(json=orjson)",
    )
    p.add_argument(
        "--scenarios",
        default="echo,ack,bcast,idle",
        help="comma-separated subset of echo,ack,bcast,idle",
    )
    p.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    p.add_argument("--sizes", default="32,4096", help="echo/ack payload sizes in bytes")
    p.add_argument("--inflight", default="1,16", help="echo/ack events in flight per connection")
    p.add_argument("--connections", type=int, default=50, help="echo/ack connections")
    p.add_argument(
        "--bcast",
        default="500@200,2000@50",
        help="room broadcasts as RECEIVERS@RATE (sender emits per second), "
        "comma-separated (default: 100k deliveries/s each)",
    )
    p.add_argument("--bcast-size", type=int, default=64, help="bytes of each broadcast payload")
    p.add_argument(
        "--no-floor",
        action="store_true",
        help="skip bench/write_floor.py (the kernel's cost of a write(2) per recipient) "
        "after each broadcast scenario",
    )
    p.add_argument(
        "--bcast-procs",
        type=int,
        default=1,
        help="Node processes sharing the broadcast receivers (the sender has one more of its own)",
    )
    p.add_argument("--warmup", type=float, help="seconds before measuring (default 2, quick 0.5)")
    p.add_argument("--duration", type=float, help="measured seconds (default 8, quick 2)")
    p.add_argument(
        "--idle-connections",
        type=int,
        help="connections for the idle memory test (default 2000, quick 500)",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run each echo/ack/bcast scenario N times per server, keep the cheapest",
    )
    p.add_argument(
        "--max-messages",
        type=int,
        default=50_000_000,
        help="cap on events sent per echo/ack scenario",
    )
    p.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="py-spy record each measured window of --profile-servers into DIR; the "
        "profiler takes CPU on this machine, so a profiled run's figures are not "
        "comparable",
    )
    p.add_argument(
        "--recovery",
        action="store_true",
        help="connection state recovery on, where the server has it (pyserver, Node socket.io; "
        "python-socketio has none and runs without): every event then carries an offset and "
        "is kept (the servers read BENCH_SIO_RECOVERY=1)",
    )
    harness.add_tail_args(p, OURS)
    opts = p.parse_args(argv)
    harness.fill_defaults(opts, idle_quick=500, idle_full=2000)
    if opts.parsers:
        picked = [s.strip() for s in opts.servers.split(",") if s.strip()]
        opts.servers = ",".join(picked + [s for s in PARSER_SERVERS if s not in picked])
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    if opts.recovery:
        os.environ["BENCH_SIO_RECOVERY"] = "1"  # the server processes inherit it
    harness.add_baseline(opts, SERVERS, OURS)
    servers = harness.pick_servers(opts.servers, SERVERS)
    if servers is None or harness.node_modules_missing("socket.io", "socket.io-client"):
        return 2
    if any(SERVER_ENV.get(s, {}).get("BENCH_SIO_PARSER") for s in servers):
        if harness.node_modules_missing("socket.io-msgpack-parser"):
            return 2
    scenarios, want_idle = build_scenarios(opts)
    opts.profiles = {}
    report = Report(args=harness.args_for_json(opts, skip=("profiles",)))
    harness.raise_nofile()

    print(
        f"socket.io: echo/ack {opts.connections} connections, warm-up {opts.warmup:g} s, "
        f"measured {opts.duration:g} s, idle {opts.idle_connections} connections, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}"
        + (", connection state recovery on (not python-socketio)" if opts.recovery else ""),
        flush=True,
    )
    running: dict[str, ServerProcess] = {}

    def ensure(name: str) -> ServerProcess | None:
        srv = running.get(name)
        if srv is not None and srv.alive():
            return srv
        if srv is not None:
            report.server_errors.setdefault(name, f"died, restarted: {srv.log_tail(400)}")
            srv.stop()
        srv = ServerProcess(name, opts.node, opts.python, opts.baseline)
        try:
            srv.wait_ready()
        except Exception as exc:
            report.server_errors[name] = str(exc)[-600:]
            srv.stop()
            running.pop(name, None)
            return None
        running[name] = srv
        return srv

    started = time.monotonic()
    try:
        # Idle memory first, on fresh processes.
        if want_idle:
            print("  idle:", end="", flush=True)
            for name in servers:
                srv = ensure(name)
                if srv is not None:
                    report.idle.append(run_idle(srv, opts))
                print(f" {name}", end="", flush=True)
            print(flush=True)
        # Then scenario by scenario, the servers taking turns.
        for sc in scenarios:
            print(f"  {sc.label}:", end="", flush=True)
            for name in servers:
                srv = ensure(name)
                if srv is None:
                    continue
                runs = []
                for _ in range(max(1, opts.repeat)):
                    srv = ensure(name)
                    if srv is None:
                        break
                    settle = wait_quiet(list(running.values()))
                    try:
                        run = (
                            run_bcast(srv, sc, opts)
                            if sc.kind == "bcast"
                            else run_echo(srv, sc, opts)
                        )
                    except Exception as exc:  # a broken run must not lose the others
                        run = Result(
                            server=name, scenario=sc.label, kind=sc.kind, error=repr(exc)[:300]
                        )
                    run.detail["settle_s"] = round(settle, 1)
                    runs.append(run)
                if not runs:
                    continue
                # Keep the cheapest run: on a shared machine, noise only ever adds CPU.
                r = harness.cheapest(runs, lambda x: x.server_us, lambda x: x.error)
                r.detail["repeats_us"] = [x.server_us for x in runs]
                r.detail["repeat_errors"] = [x.error for x in runs if x.error]
                report.results.append(r)
                print(f" {name}", end="", flush=True)
            if sc.kind == "bcast" and not opts.no_floor:
                wait_quiet(list(running.values()))
                floor = run_floor(sc, opts)
                if floor is not None:
                    report.floors[sc.label] = floor
                    print(" write-floor", end="", flush=True)
            print(flush=True)
    finally:
        for srv in running.values():
            srv.stop()
    print(f"  ({time.monotonic() - started:.0f} s)\n", flush=True)

    print_table(report, scenarios, servers)
    harness.print_instructions(
        [(r.scenario, r.server, r.detail.get("instructions_per_msg")) for r in report.results]
    )
    print_profiles(opts.profiles)
    report.profiles = opts.profiles
    harness.write_json(opts.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

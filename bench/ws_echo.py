"""Raw WebSocket echo benchmark: pyserver side by side with its peers, in one run.

Each server (``bench/servers/*``) runs alone in its own process on 127.0.0.1 with a free port.
The load comes from ``bench/loadgen.js`` (Node, npm ``ws``, permessage-deflate off), which
verifies every echo. For each server the driver measures:

* idle memory: RSS delta per connection after opening N idle connections;
* for each scenario (message size S x messages in flight per connection K): messages/s,
  p50/p99 round-trip latency, and the server's user+system CPU time over the measured window
  divided by the messages echoed in it (us/msg), the figure to compare across servers.

It prints one table with ratios of pyserver against each peer, the reference figures and our
targets (printed, never asserted). Usage (from the repository root)::

    npm install --prefix bench
    .venv/bin/python bench/ws_echo.py [--quick] [--servers a,b,c] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import harness
from harness import BENCH, HOST, IdleResult, Window, fmt, human_size, ratio

LOADGEN = BENCH / "loadgen.js"

OURS = "pyserver"
# name -> (interpreter kind, script)
SERVERS: dict[str, tuple[str, str]] = {
    "pyserver": ("python", "pyserver_echo.py"),
    "trio-websocket": ("python", "trio_websocket_echo.py"),
    "websockets": ("python", "websockets_echo.py"),
    "picows": ("python", "picows_echo.py"),
    "node-ws": ("node", "node_ws_echo.js"),
}

# Server CPU us/msg measured earlier on 2 cores (Node load generator, 50 connections,
# 16 in flight), keyed by (server, size); and idle KiB per connection.
REFERENCE_US: dict[tuple[str, int], float] = {
    ("trio-websocket", 32): 34.6,
    ("websockets", 32): 10.9,
    ("picows", 32): 5.5,
    ("node-ws", 32): 5.6,
    ("trio-websocket", 65536): 355.0,
    ("websockets", 65536): 44.0,
    ("picows", 65536): 27.0,
}
REFERENCE_IDLE_KIB: dict[str, float] = {"websockets": 14.0}
REFERENCE_INFLIGHT = 16
# Our targets: printed beside the results, never asserted.
TARGET_US: dict[int, float] = {32: 7.0, 65536: 30.0}
TARGET_IDLE_KIB = 14.0


@dataclass
class Scenario:
    size: int
    inflight: int

    @property
    def label(self) -> str:
        return f"{human_size(self.size)} x{self.inflight}"


@dataclass
class EchoResult:
    server: str
    size: int
    inflight: int
    connections: int = 0
    msgs_per_s: float = 0.0
    server_us_per_msg: float | None = None
    server_cpu_pct: float | None = None
    other_cpu_pct: float | None = None
    gen_cpu_pct: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    mismatches: int = 0
    lost: int = 0
    conn_errors: int = 0
    unexpected_closes: int = 0
    error: str | None = None
    profile: dict[str, Any] | None = None
    instructions_per_msg: int | None = None  # with --callgrind
    repeats_us_per_msg: list[float | None] = field(default_factory=list)


@dataclass
class Report:
    args: dict[str, Any]
    echo: list[EchoResult] = field(default_factory=list)
    idle: list[IdleResult] = field(default_factory=list)
    server_errors: dict[str, str] = field(default_factory=dict)


class ServerProcess(harness.ServerProcess):
    """One echo server in its own process; stderr goes to a temporary log."""

    def __init__(self, name: str, node: str, python: str, baseline: Path | None = None) -> None:
        kind, script = SERVERS[name]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = harness.python_path(name, BENCH.parent, baseline)
        super().__init__(
            name,
            kind,
            script,
            node,
            python,
            log_prefix="bench-",
            env=env,
            cwd=BENCH.parent,
            error_prefix=f"{name} ",
        )


class LoadGen(harness.LoadGen):
    """bench/loadgen.js, speaking JSON lines on stdout and waiting on stdin where asked."""

    def __init__(self, node: str, args: list[str], timeout: float) -> None:
        super().__init__(node, LOADGEN, args, timeout, err_tail=800)


# ---- measurements -----------------------------------------------------------------------


def run_echo(
    server: ServerProcess, node: str, sc: Scenario, opts: argparse.Namespace
) -> EchoResult:
    res = EchoResult(server=server.name, size=sc.size, inflight=sc.inflight)
    args = [
        "--url", f"ws://{HOST}:{server.port}/",
        "--mode", "echo",
        "--connections", str(opts.connections),
        "--inflight", str(sc.inflight),
        "--size", str(sc.size),
        "--warmup", str(opts.warmup),
        "--duration", str(opts.duration),
        "--max-messages", str(opts.max_messages),
    ]  # fmt: skip
    gen = LoadGen(node, args, timeout=opts.warmup + opts.duration + 90)
    ev = gen.wait_for("measure_start")
    if ev.get("event") != "measure_start":
        res.error = ev.get("error", "no measure_start")
        gen.finish()
        return res
    win = Window(server)
    win.start()
    profiler = start_profiler(server, sc, opts)
    ev = gen.wait_for("measure_end")
    win.stop()
    result = gen.wait_for("result")
    gen.finish()
    if profiler is not None:
        res.profile = finish_profiler(*profiler)
    if result.get("error"):
        res.error = str(result["error"])[:300]
        return res
    res.connections = int(result["connections"])
    res.msgs_per_s = float(result["msgs_per_s"])
    res.p50_ms = result.get("p50_ms")
    res.p99_ms = result.get("p99_ms")
    res.gen_cpu_pct = float(result["gen_cpu_pct"])
    for name in ("mismatches", "lost", "conn_errors", "unexpected_closes"):
        setattr(res, name, int(result.get(name, 0)))
    if win.cpu is None or win.elapsed is None or win.busy is None:
        res.error = f"server died: {server.log_tail(300)}"
    else:
        res.server_cpu_pct = 100.0 * win.cpu / win.elapsed
        # Everything else on the machine: busy time minus the server and the generator.
        gen_cpu = float(result["gen_cpu_s"])
        res.other_cpu_pct = max(0.0, 100.0 * (win.busy - win.cpu - gen_cpu) / win.elapsed)
        messages = int(result["messages"])
        if messages:
            res.server_us_per_msg = win.cpu * 1e6 / messages
            if win.instructions is not None:
                res.instructions_per_msg = round(win.instructions / messages)
    return res


def run_idle(server: ServerProcess, node: str, opts: argparse.Namespace) -> IdleResult:
    res = IdleResult(server=server.name)
    args = [
        "--url", f"ws://{HOST}:{server.port}/",
        "--mode", "idle",
        "--connections", str(opts.idle_connections),
        "--size", "32",
    ]  # fmt: skip
    gen = LoadGen(node, args, timeout=180)
    ev = gen.wait_for("baseline")
    if ev.get("event") != "baseline":
        res.error = ev.get("error", "no baseline")
        gen.finish()
        return res
    time.sleep(0.5)
    res.rss_before_kib = harness.rss_kib(server.pid)
    gen.go()
    ev = gen.wait_for("idle_ready")
    if ev.get("event") != "idle_ready":
        res.error = ev.get("error", "no idle_ready")
        gen.finish()
        return res
    time.sleep(1.0)  # let lazily allocated buffers and timers settle
    res.rss_after_kib = harness.rss_kib(server.pid) if server.alive() else 0
    res.connections = int(ev["connections"])
    gen.go()
    result = gen.wait_for("result")
    gen.finish()
    if result.get("error"):
        res.error = str(result["error"])[:300]
    elif not server.alive():
        res.error = f"server died: {server.log_tail(300)}"
    elif res.connections:
        res.kib_per_conn = (res.rss_after_kib - res.rss_before_kib) / res.connections
    if res.connections < opts.idle_connections and not res.error:
        res.error = f"only {res.connections}/{opts.idle_connections} connections opened"
    return res


# ---- optional py-spy profile of a Python server during the measured window ----------------


def start_profiler(
    server: ServerProcess, sc: Scenario, opts: argparse.Namespace
) -> tuple[subprocess.Popen[bytes], Path] | None:
    if opts.profile is None or server.name not in opts.profile_servers:
        return None
    if SERVERS[server.name][0] != "python":
        return None
    out = opts.profile / f"{server.name}-{human_size(sc.size)}-x{sc.inflight}.txt"
    return harness.start_py_spy(server.pid, out, opts.duration, opts.python)


def finish_profiler(proc: subprocess.Popen[bytes], out: Path) -> dict[str, Any]:
    return harness.finish_py_spy(proc, out, top=12)


def print_profiles(report: Report, out: Any = sys.stdout) -> None:
    for r in report.echo:
        if r.profile:
            key = f"{r.server}, {human_size(r.size)} x{r.inflight}"
            harness.print_profile(key, r.profile, out, width=120, inclusive=False)


# ---- table ------------------------------------------------------------------------------


def print_table(
    report: Report, scenarios: list[Scenario], servers: list[str], out: Any = sys.stdout
) -> None:
    by_key = {(r.server, r.size, r.inflight): r for r in report.echo}
    header = (
        f"{'scenario':<11} {'server':<15} {'msgs/s':>9} {'srv us/msg':>10} {'srv cpu':>7} "
        f"{'gen cpu':>7} {'other':>6} {'p50 ms':>7} {'p99 ms':>8} {'errors':>6}  "
        f"{'ours/this':>9} {'ref us':>6}  note"
    )
    harness.print_header(header, out)
    for sc in scenarios:
        ours = by_key.get((OURS, sc.size, sc.inflight))
        ours_us = ours.server_us_per_msg if ours else None
        for name in servers:
            r = by_key.get((name, sc.size, sc.inflight))
            if r is None:
                continue
            errors = r.mismatches + r.lost + r.conn_errors + r.unexpected_closes
            ref = REFERENCE_US.get((name, sc.size)) if sc.inflight == REFERENCE_INFLIGHT else None
            notes = []
            if r.error:
                notes.append(f"ERROR: {r.error[:80]}")
            if r.gen_cpu_pct is not None and r.gen_cpu_pct >= 90:
                notes.append("generator saturated")
            if r.server_cpu_pct is not None and r.server_cpu_pct >= 90:
                notes.append("server saturated")
            if r.other_cpu_pct is not None and r.other_cpu_pct >= 25:
                notes.append("machine busy")
            if r.mismatches:
                notes.append(f"{r.mismatches} mismatched echoes")
            if name == OURS and sc.size in TARGET_US and sc.inflight == REFERENCE_INFLIGHT:
                notes.append(f"target <= {TARGET_US[sc.size]:g} us/msg")
            rel = "(ours)" if name == OURS else ratio(ours_us, r.server_us_per_msg)
            print(
                f"{sc.label:<11} {name:<15} {fmt(r.msgs_per_s, ',.0f'):>9} "
                f"{fmt(r.server_us_per_msg, '.1f'):>10} {fmt(r.server_cpu_pct, '.0f') + '%':>7} "
                f"{fmt(r.gen_cpu_pct, '.0f') + '%':>7} {fmt(r.other_cpu_pct, '.0f') + '%':>6} "
                f"{fmt(r.p50_ms, '.2f'):>7} "
                f"{fmt(r.p99_ms, '.2f'):>8} "
                f"{errors:>6}  {rel:>9} {fmt(ref, 'g'):>6}  {'; '.join(notes)}",
                file=out,
            )
        print(file=out)

    if report.idle:
        ours_idle = next((r.kib_per_conn for r in report.idle if r.server == OURS), None)
        header = (
            f"{'idle':<11} {'server':<15} {'conns':>9} {'KiB/conn':>10} "
            f"{'ours/this':>9} {'ref':>6}  note"
        )
        harness.print_header(header, out)
        for ir in sorted(report.idle, key=lambda x: servers.index(x.server)):
            notes = []
            if ir.error:
                notes.append(f"ERROR: {ir.error[:80]}")
            if ir.server == OURS:
                notes.append(f"target <= {TARGET_IDLE_KIB:g} KiB/conn")
            rel = "(ours)" if ir.server == OURS else ratio(ours_idle, ir.kib_per_conn)
            ref = REFERENCE_IDLE_KIB.get(ir.server)
            print(
                f"{'RSS delta':<11} {ir.server:<15} {ir.connections:>9} "
                f"{fmt(ir.kib_per_conn, '.1f'):>10} "
                f"{rel:>9} {fmt(ref, 'g'):>6}  {'; '.join(notes)}",
                file=out,
            )
        print(file=out)

    harness.print_server_errors(report.server_errors, out)

    # Targets, printed beside the results and never asserted.
    lines = []
    for size, target in TARGET_US.items():
        r = by_key.get((OURS, size, REFERENCE_INFLIGHT))
        if r is not None:
            got = r.server_us_per_msg
            verdict = "-" if got is None else ("met" if got <= target else "missed")
            lines.append(
                f"  {human_size(size)} x{REFERENCE_INFLIGHT}: {fmt(got, '.1f')} us/msg "
                f"(target <= {target:g}) {verdict}"
            )
    idle = next((r for r in report.idle if r.server == OURS), None)
    if idle is not None:
        got = idle.kib_per_conn
        verdict = "-" if got is None else ("met" if got <= TARGET_IDLE_KIB else "missed")
        lines.append(
            f"  idle: {fmt(got, '.1f')} KiB/conn (target <= {TARGET_IDLE_KIB:g}) {verdict}"
        )
    if lines:
        print("pyserver targets (indicative, not asserted):", file=out)
        for line in lines:
            print(line, file=out)
    print(
        "us/msg = server user+system CPU over the measured window / messages echoed in it. "
        "ours/this = pyserver us/msg / this server's (below 1.00x: ours is cheaper). "
        "cpu columns are % of one core; 'gen' is the Node load generator, "
        "'other' everything else running on the machine in the window.",
        file=out,
    )


# ---- run orders -------------------------------------------------------------------------


def best_of(runs: list[EchoResult]) -> EchoResult:
    """The cheapest run: on a shared machine, noise only ever adds CPU."""
    best = harness.cheapest(runs, lambda x: x.server_us_per_msg, lambda x: x.error)
    best.repeats_us_per_msg = [x.server_us_per_msg for x in runs]
    return best


def run_server_major(
    report: Report, servers: list[str], scenarios: list[Scenario], opts: argparse.Namespace
) -> None:
    """One server process per server: idle test, then every scenario, then the next server."""
    for name in servers:
        print(f"  {name}: ", end="", flush=True)
        started = time.monotonic()
        server = ServerProcess(name, opts.node, opts.python, opts.baseline)
        try:
            server.wait_ready()
            if not opts.no_idle:
                report.idle.append(run_idle(server, opts.node, opts))
            for sc in scenarios:
                if not server.alive():
                    report.echo.append(
                        EchoResult(name, sc.size, sc.inflight, error="server not running")
                    )
                    continue
                report.echo.append(
                    best_of([run_echo(server, opts.node, sc, opts) for _ in range(opts.repeat)])
                )
                print(".", end="", flush=True)
        except Exception as exc:
            report.server_errors[name] = str(exc)[-600:]
        finally:
            server.stop()
        print(f" {time.monotonic() - started:.0f} s", flush=True)


def run_interleaved(
    report: Report, servers: list[str], scenarios: list[Scenario], opts: argparse.Namespace
) -> None:
    """A fresh server process per (round, scenario, server), servers taking turns within each
    scenario, so a burst of load from elsewhere on the machine hits them all alike."""
    if not opts.no_idle:
        print("  idle: ", end="", flush=True)
        for name in servers:
            try:
                server = ServerProcess(name, opts.node, opts.python, opts.baseline)
                try:
                    server.wait_ready()
                    report.idle.append(run_idle(server, opts.node, opts))
                finally:
                    server.stop()
            except Exception as exc:
                report.server_errors[name] = str(exc)[-600:]
            print(".", end="", flush=True)
        print(flush=True)
    runs: dict[tuple[str, int, int], list[EchoResult]] = {}
    for round_ in range(opts.repeat):
        for sc in scenarios:
            print(f"  round {round_ + 1}, {sc.label}: ", end="", flush=True)
            for name in servers:
                if name in report.server_errors:
                    continue
                try:
                    server = ServerProcess(name, opts.node, opts.python, opts.baseline)
                    try:
                        server.wait_ready()
                        res = run_echo(server, opts.node, sc, opts)
                    finally:
                        server.stop()
                except Exception as exc:
                    report.server_errors[name] = str(exc)[-600:]
                    continue
                runs.setdefault((name, sc.size, sc.inflight), []).append(res)
                print(".", end="", flush=True)
            print(flush=True)
    for sc in scenarios:
        for name in servers:
            got = runs.get((name, sc.size, sc.inflight))
            if got:
                report.echo.append(best_of(got))


# ---- main -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="short runs (0.5 s warm-up, 2 s measured, 200 idle connections)",
    )
    p.add_argument(
        "--servers",
        default=",".join(SERVERS),
        help=f"comma-separated subset of {','.join(SERVERS)}",
    )
    p.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    p.add_argument(
        "--sizes", default="32,4096,65536", help='message sizes in bytes ("" for idle only)'
    )
    p.add_argument("--inflight", default="1,16", help="messages in flight per connection")
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--warmup", type=float, help="seconds before measuring (default 2, quick 0.5)")
    p.add_argument("--duration", type=float, help="measured seconds (default 8, quick 2)")
    p.add_argument(
        "--idle-connections",
        type=int,
        help="connections for the idle memory test (default 1000, quick 200)",
    )
    p.add_argument("--no-idle", action="store_true", help="skip the idle memory test")
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run each scenario N times and keep the run with the lowest server us/msg",
    )
    p.add_argument(
        "--order",
        choices=("interleaved", "server"),
        default="interleaved",
        help="interleaved (default): a fresh server per scenario, servers taking turns; "
        "server: one process per server running all its scenarios (faster, less fair)",
    )
    p.add_argument(
        "--max-messages", type=int, default=50_000_000, help="cap on messages sent per scenario"
    )
    p.add_argument(
        "--profile", type=Path, metavar="DIR",
        help="py-spy record (collapsed stacks) each measured window of --profile-servers into DIR; "
        "the profiler takes CPU on this machine, so figures of a profiled run are not comparable",
    )  # fmt: skip
    harness.add_tail_args(p, OURS)
    opts = p.parse_args(argv)
    harness.fill_defaults(opts, idle_quick=200, idle_full=1000)
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    harness.add_baseline(opts, SERVERS, OURS)
    servers = harness.pick_servers(opts.servers, SERVERS)
    if servers is None or harness.node_modules_missing("ws"):
        return 2
    scenarios = [
        Scenario(int(s), int(k))
        for s in opts.sizes.split(",")
        if s.strip()  # --sizes "" runs the idle test only
        for k in opts.inflight.split(",")
    ]
    report = Report(args=harness.args_for_json(opts))
    harness.raise_nofile()

    print(
        f"ws echo: {opts.connections} connections, warm-up {opts.warmup:g} s, "
        f"measured {opts.duration:g} s, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    if opts.order == "server":
        run_server_major(report, servers, scenarios, opts)
    else:
        run_interleaved(report, servers, scenarios, opts)
    print(flush=True)

    print_table(report, scenarios, servers)
    harness.print_instructions(
        [(f"{r.size}B x{r.inflight}", r.server, r.instructions_per_msg) for r in report.echo]
    )
    print_profiles(report)
    harness.write_json(opts.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

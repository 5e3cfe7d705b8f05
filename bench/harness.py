"""What the benchmark drivers (``ws_echo.py``, ``sio_bench.py``) share: servers in their own
processes on a free loopback port, the Node load generators speaking JSON lines, /proc CPU and
RSS readings, the quiet-machine wait, the cheapest of repeated runs, py-spy profiling glue,
table cells and the common command-line options."""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

BENCH = Path(__file__).resolve().parent
SERVERS_DIR = BENCH / "servers"
HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024

T = TypeVar("T")


def human_size(n: int) -> str:
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024}KiB"
    return f"{n}B"


# ---- /proc readings ---------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User+system CPU time of one process (all its threads), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def write_calls(pid: int) -> int | None:
    """The write system calls a process (all its threads) has made: ``syscw`` of
    /proc/<pid>/io (write and writev; None where it cannot be read)."""
    try:
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                if line.startswith("syscw:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def machine_busy_seconds() -> float:
    """CPU time spent by the whole machine (all cores, not idle or iowait), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is already in user)
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLK_TCK


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE_KIB


# ---- processes --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


class ServerProcess:
    """One server in its own process on a free loopback port; its output goes to a temporary
    log. ``error_prefix`` starts the messages of wait_ready's errors."""

    log_tail_chars = 1500

    def __init__(
        self,
        name: str,
        kind: str,
        script: str,
        node: str,
        python: str,
        *,
        log_prefix: str,
        env: Mapping[str, str],
        cwd: Path,
        error_prefix: str = "",
    ) -> None:
        self.name = name
        self.kind = kind
        self.error_prefix = error_prefix
        self.port = free_port()
        exe = node if kind == "node" else python
        self.cmd = [exe, str(SERVERS_DIR / script), "--port", str(self.port)]
        #: With --callgrind, Python servers run under valgrind's callgrind, counting
        #: instructions only inside measured windows (see Window).
        self.callgrind: Path | None = None
        if CALLGRIND_DIR is not None and kind == "python":
            self.callgrind = CALLGRIND_DIR / f"{name}.{self.port}"
            self.cmd = [
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                f"--callgrind-out-file={self.callgrind}",
                *self.cmd,
            ]
        self.log = tempfile.NamedTemporaryFile(
            prefix=f"{log_prefix}{name}-", suffix=".log", delete=False
        )
        self.proc = subprocess.Popen(
            self.cmd,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=dict(env),
            preexec_fn=raise_nofile,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 30.0) -> None:
        if self.callgrind is not None:
            timeout *= 10  # imports alone take a while under valgrind
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.error_prefix}exited with {self.proc.returncode}: {self.log_tail()}"
                )
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(
            f"{self.error_prefix}did not listen on {HOST}:{self.port} within {timeout}s"
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, n: int | None = None) -> str:
        try:
            text = Path(self.log.name).read_text(errors="replace")
        except OSError:
            return ""
        return text[-(self.log_tail_chars if n is None else n) :].strip()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()
        os.unlink(self.log.name)


class LoadGen:
    """A Node load generator, speaking JSON lines on stdout and obeying lines on stdin."""

    def __init__(
        self, node: str, script: Path, args: list[str], timeout: float, err_tail: int = 800
    ) -> None:
        self.err_tail = err_tail
        self.proc = subprocess.Popen(
            [node, str(script), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=BENCH,
            preexec_fn=raise_nofile,
        )
        self.deadline = time.monotonic() + timeout

    def next_event(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # the generator has its own hard deadline
        if not line:
            self.finish()
            err = self.proc.stderr.read() if self.proc.stderr else ""
            return {
                "event": "result",
                "error": f"load generator exited ({self.proc.returncode}): {err[-self.err_tail :]}",
            }
        try:
            return dict(json.loads(line))
        except json.JSONDecodeError:
            return {"event": "noise", "line": line}

    def wait_for(self, *events: str) -> dict[str, Any]:
        while True:
            ev = self.next_event()
            if ev.get("event") in events or ev.get("event") == "result":
                return ev

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def send(self, line: str) -> None:
        """Like go(), any line, and a generator that already left is no error."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass

    def finish(self) -> None:
        try:
            self.proc.wait(max(1.0, self.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ---- measurements -----------------------------------------------------------------------


@dataclass
class IdleResult:
    """Resident memory per idle connection: RSS delta / connections opened."""

    server: str
    connections: int = 0
    rss_before_kib: int = 0
    rss_after_kib: int = 0
    kib_per_conn: float | None = None
    error: str | None = None


class Window:
    """Server CPU, its write system calls and machine busy time between start() and stop();
    under --callgrind also the instructions the server executed in between
    (``instructions``)."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.cpu = self.busy = self.elapsed = None  # type: float | None
        self.writes: int | None = None
        self.instructions: int | None = None

    def start(self) -> None:
        if self.server.callgrind is not None:
            _callgrind_control("--zero", self.server.pid)
            _callgrind_control("--instr=on", self.server.pid)
        self._cpu0 = cpu_seconds(self.server.pid)
        self._writes0 = write_calls(self.server.pid)
        self._busy0 = machine_busy_seconds()
        self._t0 = time.monotonic()

    def stop(self) -> None:
        if not self.server.alive():
            return
        self.cpu = cpu_seconds(self.server.pid) - self._cpu0
        writes = write_calls(self.server.pid)
        if writes is not None and self._writes0 is not None:
            self.writes = writes - self._writes0
        self.busy = machine_busy_seconds() - self._busy0
        self.elapsed = time.monotonic() - self._t0
        if self.server.callgrind is not None:
            _callgrind_control("--instr=off", self.server.pid)
            self.instructions = _callgrind_dump(self.server.callgrind, self.server.pid)


#: Set by --callgrind DIR (see add_tail_args): where Python servers' callgrind files go.
CALLGRIND_DIR: Path | None = None


def print_instructions(rows: Sequence[tuple[str, str, int | None]], out: Any = sys.stdout) -> None:
    """The --callgrind table: (scenario, server, instructions per message) rows, with each
    row's ratio to the first server's of the same scenario."""
    rows = [r for r in rows if r[2] is not None]
    if not rows:
        return
    print(f"\n{'callgrind':<17} {'server':<15} {'instr/msg':>10} {'vs first':>9}", file=out)
    first: dict[str, int] = {}
    for scenario, server, ir in rows:
        assert ir is not None
        ref = first.setdefault(scenario, ir)
        rel = f"{ir / ref:>8.2f}x" if ref else "        -"
        print(f"{scenario:<17} {server:<15} {ir:>10,} {rel}", file=out)


def _callgrind_control(option: str, pid: int) -> None:
    done = subprocess.run(
        ["callgrind_control", option, str(pid)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "OK" not in done.stdout:
        print(f"callgrind_control {option} {pid}: {done.stdout} {done.stderr}", file=sys.stderr)


def _callgrind_dump(base: Path, pid: int) -> int | None:
    """Dump the counters (instructions since the last --zero) and read their total."""
    before = set(base.parent.glob(base.name + "*"))
    _callgrind_control("--dump", pid)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        new = sorted(set(base.parent.glob(base.name + "*")) - before)
        for path in new:
            text = path.read_text(errors="replace")
            m = re.search(r"^totals:\s*(\d+)", text, re.MULTILINE)
            if m:
                return int(m.group(1))
        time.sleep(0.2)
    return None


@dataclass
class BcastTotals:
    """The results of a broadcast's generator processes (the sender first, then the
    receivers), merged: p50 is the deliveries-weighted mean of the receivers', p99 the worst
    of theirs (an upper bound; exact with one receiver process)."""

    error: str | None
    deliveries: int = 0
    per_s: float = 0.0
    gen_cpu_s: float = 0.0
    gen_cpu_pct: float = 0.0
    gen_max_pct: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    sent_total: int = 0
    received_total: int = 0
    delivered_pct: float | None = None
    errors: int = 0


def merge_bcast_results(
    results: Sequence[Mapping[str, Any]], receivers: int, default_window: float
) -> BcastTotals:
    errs = [r["error"] for r in results if r.get("error")]
    if errs:
        return BcastTotals(error=str(errs[0])[:300])
    t = BcastTotals(error=None)
    t.deliveries = sum(int(r["deliveries"]) for r in results)
    t.gen_cpu_s = sum(float(r["gen_cpu_s"]) for r in results)
    window = max(float(r["duration_s"]) for r in results) or default_window
    t.per_s = t.deliveries / window
    t.gen_cpu_pct = 100.0 * t.gen_cpu_s / window
    t.gen_max_pct = max(float(r["gen_cpu_pct"]) for r in results)
    rec = [r for r in results[1:] if r.get("p50_ms") is not None]
    if t.deliveries and rec:
        weight = max(1, sum(int(r["deliveries"]) for r in rec))
        t.p50_ms = sum(r["p50_ms"] * int(r["deliveries"]) for r in rec) / weight
        t.p99_ms = max(r["p99_ms"] for r in rec)
        t.max_ms = max((r.get("max_ms") or 0.0) for r in rec)
    t.sent_total = int(results[0]["sent_total"])
    t.received_total = sum(int(r["received_total"]) for r in results)
    if t.sent_total:
        t.delivered_pct = 100.0 * t.received_total / (t.sent_total * receivers)
    t.errors = sum(
        int(r.get(k, 0) or 0)
        for r in results
        for k in ("mismatches", "conn_errors", "unexpected_closes")
    )
    return t


def wait_quiet(servers: list[ServerProcess], limit: float = 20.0, below_pct: float = 10.0) -> float:
    """Wait (at most ``limit`` s) until the running servers together use under ``below_pct`` %
    of one core over 0.5 s, so that a backlog left by the previous run (a broadcast still
    being flushed to clients that left) is not billed to the next. Returns the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        alive = [s for s in servers if s.alive()]
        try:
            before = sum(cpu_seconds(s.pid) for s in alive)
            time.sleep(0.5)
            after = sum(cpu_seconds(s.pid) for s in alive if s.alive())
        except OSError:
            continue
        if 100.0 * (after - before) / 0.5 < below_pct:
            break
    return time.monotonic() - started


def cheapest(runs: Sequence[T], us: Callable[[T], float | None], error: Callable[[T], Any]) -> T:
    """The cheapest run: on a shared machine, noise only ever adds CPU. Failed runs last."""
    return min(runs, key=lambda x: (error(x) is not None, us(x) or 1e18))


# ---- optional py-spy profile of a Python server during the measured window ----------------


def start_py_spy(
    pid: int, out: Path, duration: float, python: str
) -> tuple[subprocess.Popen[bytes], Path] | None:
    py_spy = shutil.which("py-spy") or str(Path(python).parent / "py-spy")
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        py_spy, "record", "--pid", str(pid), "--format", "raw", "--nonblocking",
        "--rate", "200", "--duration", str(max(1, int(duration))), "-o", str(out),
    ]  # fmt: skip
    try:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
    except OSError as exc:
        print(f"(py-spy not started: {exc})", file=sys.stderr)
        return None
    return proc, out


def finish_py_spy(proc: subprocess.Popen[bytes], out: Path, top: int) -> dict[str, Any]:
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    if not out.exists():
        return {"file": str(out), "error": (err or b"").decode(errors="replace")[-300:]}
    return {"file": str(out), **summarize_collapsed(out, top)}


def summarize_collapsed(path: Path, top: int) -> dict[str, Any]:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks."""
    self_counts: dict[str, int] = {}
    incl_counts: dict[str, int] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        # Skip the process/thread header frames py-spy may prepend.
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        # Aggregate per function: "func (file.py:123)" -> "func (file.py)".
        frames = [re.sub(r":\d+\)$", ")", f) for f in frames]
        if not frames:
            continue
        self_counts[frames[-1]] = self_counts.get(frames[-1], 0) + n
        for f in set(frames):
            incl_counts[f] = incl_counts.get(f, 0) + n

    def share(d: dict[str, int]) -> list[tuple[str, float]]:
        ranked = sorted(d.items(), key=lambda kv: -kv[1])[:top]
        return [(k, 100.0 * v / max(1, total)) for k, v in ranked]

    return {"samples": total, "self": share(self_counts), "inclusive": share(incl_counts)}


def print_profile(key: str, prof: dict[str, Any], out: Any, *, width: int, inclusive: bool) -> None:
    print(f"py-spy profile of {key} ({prof['file']}):", file=out)
    if "error" in prof:
        print(f"  error: {prof['error']}", file=out)
        return
    print(f"  {prof['samples']} samples; top self frames:", file=out)
    for frame, pct in prof["self"]:
        print(f"  {pct:5.1f}%  {frame[:width]}", file=out)
    if inclusive:
        print("  top inclusive frames:", file=out)
        for frame, pct in prof["inclusive"]:
            print(f"  {pct:5.1f}%  {frame[:width]}", file=out)
    print(file=out)


# ---- table ------------------------------------------------------------------------------


def fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b <= 0:
        return "-"
    return f"{a / b:.2f}x"


def print_header(header: str, out: Any) -> None:
    print(header, file=out)
    print("-" * len(header), file=out)


def print_server_errors(server_errors: Mapping[str, str], out: Any) -> None:
    for name, err in server_errors.items():
        print(f"{name}: not measured: {err}", file=out)


# ---- command line and main --------------------------------------------------------------


def add_tail_args(p: argparse.ArgumentParser, ours: str) -> None:
    """--profile-servers, --node and --python, the last options of both drivers."""
    p.add_argument(
        "--profile-servers",
        default=ours,
        help=f"which Python servers --profile samples (default {ours})",
    )
    p.add_argument("--node", default=shutil.which("node") or "node")
    p.add_argument("--python", default=sys.executable, help="interpreter for the Python servers")
    p.add_argument(
        "--callgrind",
        type=Path,
        metavar="DIR",
        help="run the Python servers under valgrind's callgrind (about 50x slower) and report "
        "instructions per message, counted in the measured windows only: a figure a busy "
        "machine does not move (the per-second and CPU figures of such a run mean little)",
    )
    p.add_argument(
        "--baseline",
        type=Path,
        metavar="DIR",
        help=f"also run {ours}{BASELINE_SUFFIX}: the same server script importing the "
        "pyserver package found in DIR (e.g. an earlier commit unpacked with `git archive "
        "REV pyserver | tar -x -C DIR` plus the built extension), for before/after ratios "
        "measured in one run",
    )


BASELINE_SUFFIX = "@base"


def add_baseline(
    opts: argparse.Namespace, servers: dict[str, tuple[str, str]], ours: str
) -> str | None:
    """With --baseline DIR: register ``ours@base`` in ``servers`` (the same script as ours)
    and put it right after ours in --servers; return its name (None without --baseline)."""
    if opts.baseline is None:
        return None
    if not (opts.baseline / "pyserver" / "__init__.py").is_file():
        raise SystemExit(f"--baseline {opts.baseline}: no pyserver/__init__.py there")
    name = ours + BASELINE_SUFFIX
    servers[name] = servers[ours]
    picked = [s.strip() for s in opts.servers.split(",") if s.strip()]
    if name not in picked:
        at = picked.index(ours) + 1 if ours in picked else len(picked)
        picked.insert(at, name)
    opts.servers = ",".join(picked)
    return name


def python_path(name: str, repo_root: Path, baseline: Path | None) -> str:
    """PYTHONPATH for a Python server: the baseline tree for ``*@base``, else the repo."""
    first = baseline if name.endswith(BASELINE_SUFFIX) and baseline is not None else repo_root
    rest = os.environ.get("PYTHONPATH", "")
    return os.pathsep.join(p for p in (str(first.resolve()), rest) if p)


def fill_defaults(opts: argparse.Namespace, idle_quick: int, idle_full: int) -> None:
    """The defaults that depend on --quick, and --profile-servers as a set."""
    global CALLGRIND_DIR
    if opts.callgrind is not None:
        opts.callgrind.mkdir(parents=True, exist_ok=True)
        CALLGRIND_DIR = opts.callgrind.resolve()
    if opts.warmup is None:
        opts.warmup = 0.5 if opts.quick else 2.0
    if opts.duration is None:
        opts.duration = 2.0 if opts.quick else 8.0
    if opts.idle_connections is None:
        opts.idle_connections = idle_quick if opts.quick else idle_full
    opts.profile_servers = {s.strip() for s in opts.profile_servers.split(",") if s.strip()}


def pick_servers(spec: str, known: Iterable[str]) -> list[str] | None:
    """The --servers list, or None (and a message) when it names an unknown one."""
    known = list(known)
    servers = [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [s for s in servers if s not in known]
    if unknown:
        print(f"unknown servers: {unknown}; known: {known}", file=sys.stderr)
        return None
    return servers


def node_modules_missing(*packages: str) -> bool:
    """Whether an npm package is missing from bench/node_modules (and a message if so)."""
    for pkg in packages:
        if not (BENCH / "node_modules" / pkg).is_dir():
            print(
                f"missing bench/node_modules/{pkg}: run `npm install --prefix bench`",
                file=sys.stderr,
            )
            return True
    return False


def args_for_json(opts: argparse.Namespace, skip: Iterable[str] = ()) -> dict[str, Any]:
    skipped = set(skip)
    return {
        k: (v if isinstance(v, (int, float, str, bool, type(None))) else str(v))
        for k, v in vars(opts).items()
        if k not in skipped
    }


def write_json(path: Path | None, report: Any) -> None:
    if path:
        path.write_text(json.dumps(asdict(report), indent=2) + "\n")
        print(f"wrote {path}")

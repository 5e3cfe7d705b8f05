"""Client-side CPU per message: pyserver's Trio client, python-socketio's ``AsyncClient``
and Node's ``socket.io-client``, each doing echo round trips against the same Node socket.io
4.8 server (``bench/servers/sio_node.js``) over WebSocket, one after the other, in one run.

Each client runs in its own process and measures its own CPU time (user + system, the whole
process) over the measured part, after a warm-up, in ``--chunks`` consecutive parts; the
table gives microseconds of client CPU per round trip in the best part (``us/msg``: on a
shared machine other processes only ever add to a part's CPU time, through contention for
caches and cores, so the least-disturbed part is the closest to the client's own cost) and
over the whole measured part (``all``), and the ratios the issue asks about, from the best
parts (python-socketio / pyserver: goal >= 3; pyserver / Node: goal <= 1.5). Two workloads:

* ``ack``: ``emit_with_ack`` / ``call`` / ``emitWithAck`` one at a time (one in flight);
* ``echo``: ``emit("echo")`` with a window of ``--window`` in flight, the server's ``echo``
  event coming back.

Usage: python bench/client_bench.py [--count 20000] [--window 100] [--size 32] [--chunks 20]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from harness import free_port  # noqa: E402

CLIENTS = ["pyserver", "python-socketio", "node"]


# -- the Python clients (run in a subprocess: --run CLIENT) ----------------------------------


async def _measure(run: Any, opts: argparse.Namespace) -> None:
    """Time ``run(n)`` over the measured part in ``opts.chunks`` parts; print the JSON line."""
    size = opts.count // opts.chunks
    parts = []
    cpu0, t0 = time.process_time(), time.perf_counter()
    for _ in range(opts.chunks):
        c = time.process_time()
        await run(size)
        parts.append(time.process_time() - c)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    result = {"cpu_s": cpu, "wall_s": wall, "messages": size * opts.chunks, "chunks": parts}
    print(json.dumps(result), flush=True)


def run_pyserver(opts: argparse.Namespace) -> None:
    import trio

    import pyserver

    payload = "x" * opts.size

    async def main() -> None:
        async with pyserver.connect(opts.url, transports=["websocket"]) as socket:
            if opts.mode == "ack":

                async def run(n: int) -> None:
                    for _ in range(n):
                        await socket.emit_with_ack("ack", payload)

            else:
                state = {"left": 0, "sent": 0, "target": 0}
                done = trio.Event()

                def echo(data: Any) -> None:
                    state["left"] -= 1
                    if state["left"] == 0:
                        done.set()
                    elif state["sent"] < state["target"]:
                        state["sent"] += 1
                        socket.emit("echo", payload)

                socket.on("echo", echo)

                async def run(n: int) -> None:
                    nonlocal done
                    done = trio.Event()
                    state.update(left=n, sent=0, target=n)
                    for _ in range(min(opts.window, n)):
                        state["sent"] += 1
                        socket.emit("echo", payload)
                    await done.wait()

            await run(opts.warmup)
            await _measure(run, opts)

    trio.run(main)


def run_python_socketio(opts: argparse.Namespace) -> None:
    import asyncio

    import socketio  # type: ignore[import-untyped]

    payload = "x" * opts.size

    async def main() -> None:
        sio = socketio.AsyncClient(reconnection=False)
        state = {"left": 0, "sent": 0, "target": 0}
        done = asyncio.Event()

        @sio.on("echo")
        async def echo(data: Any) -> None:
            state["left"] -= 1
            if state["left"] == 0:
                done.set()
            elif state["sent"] < state["target"]:
                state["sent"] += 1
                await sio.emit("echo", payload)

        async def run(n: int) -> None:
            if opts.mode == "ack":
                for _ in range(n):
                    await sio.call("ack", payload)
                return
            done.clear()
            state.update(left=n, sent=0, target=n)
            for _ in range(min(opts.window, n)):
                state["sent"] += 1
                await sio.emit("echo", payload)
            await done.wait()

        await sio.connect(opts.url, transports=["websocket"])
        await run(opts.warmup)
        await _measure(run, opts)
        await sio.disconnect()

    asyncio.run(main())


# -- the driver ------------------------------------------------------------------------------


def measure(client: str, url: str, mode: str, opts: argparse.Namespace) -> dict[str, Any]:
    common = [
        "--url", url, "--mode", mode, "--count", str(opts.count), "--window", str(opts.window),
        "--size", str(opts.size), "--warmup", str(opts.warmup), "--chunks", str(opts.chunks),
    ]  # fmt: skip
    if client == "node":
        argv = [opts.node, str(BENCH / "client_bench.js"), *common]
    else:
        argv = [sys.executable, str(Path(__file__).resolve()), "--run", client, *common]
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=BENCH, timeout=600, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{client} ({mode}) failed:\n{proc.stdout}\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20000, help="measured round trips")
    parser.add_argument("--warmup", type=int, default=2000)
    parser.add_argument("--window", type=int, default=100, help="in flight, echo workload")
    parser.add_argument("--size", type=int, default=32, help="payload characters")
    parser.add_argument("--modes", default="ack,echo")
    parser.add_argument("--chunks", type=int, default=20, help="measured parts per client")
    parser.add_argument("--run", choices=["pyserver", "python-socketio"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="ack", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.run == "pyserver":
        return run_pyserver(opts)
    if opts.run == "python-socketio":
        return run_python_socketio(opts)

    opts.node = shutil.which("node")
    if opts.node is None or not (BENCH / "node_modules" / "socket.io").is_dir():
        raise SystemExit("needs node and `npm ci` in bench/ (scripts/bootstrap.sh --bench)")
    port = free_port()
    server = subprocess.Popen(
        [opts.node, str(BENCH / "servers" / "sio_node.js"), "--port", str(port)],
        cwd=BENCH,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stderr is not None
        server.stderr.readline()  # "node socket.io on ..." once it listens
        url = f"http://127.0.0.1:{port}"
        print(
            f"client CPU per round trip against Node socket.io 4.8 (WebSocket), "
            f"{opts.count} round trips in {opts.chunks} parts after {opts.warmup} warm-up, "
            f"payload {opts.size} chars; "
            f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}"
        )
        print(f"{'mode':<14} {'client':<16} {'us/msg':>8} {'all':>8} {'msgs/s':>9}")
        for mode in opts.modes.split(","):
            us: dict[str, float] = {}
            for client in CLIENTS:
                r = measure(client, url, mode, opts)
                per_chunk = r["messages"] / len(r["chunks"])
                us[client] = min(r["chunks"]) * 1e6 / per_chunk
                overall = r["cpu_s"] * 1e6 / r["messages"]
                rate = r["messages"] / r["wall_s"]
                label = mode if mode == "ack" else f"echo (w={opts.window})"
                print(f"{label:<14} {client:<16} {us[client]:>8.1f} {overall:>8.1f} {rate:>9.0f}")
            print(
                f"  ratios: python-socketio / pyserver = "
                f"{us['python-socketio'] / us['pyserver']:.2f} (goal >= 3); "
                f"pyserver / node = {us['pyserver'] / us['node']:.2f} (goal <= 1.5)"
            )
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()

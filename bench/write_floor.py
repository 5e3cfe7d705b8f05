"""The kernel's share of a broadcast on this machine: what one ``write(2)`` of a small
frame to each of R connected loopback TCP sockets costs the writing process, with nothing
else in it (no protocol, no interpreter per write: one Rust call per broadcast,
``pyserver._frames.write_many``), at a given rate of broadcasts per second, while another
process reads every socket (as the load generator's clients do).

On loopback the sender's ``write(2)`` also runs the receiving side's TCP processing and
wakes the reader, so this is most of a delivery's cost for any server that writes each
broadcast to each recipient once; ``sio_bench.py`` prints it next to the broadcast figures
(a server can only go below it by carrying several broadcasts in one write).

Usage: ``.venv/bin/python bench/write_floor.py --receivers 500 --rate 200 [--seconds 3]``;
prints one JSON line: ``{"us_per_write": ..., "writes": ..., "cpu_pct": ...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import selectors
import socket
import sys
import time

from harness import raise_nofile


def _read_all(sockets: list[socket.socket], until: float) -> None:
    """The reading side (a child process): read whatever arrives until ``until``."""
    selector = selectors.EpollSelector()
    for sock in sockets:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    while time.monotonic() < until:
        for key, _ in selector.select(0.1):
            try:
                key.fileobj.recv(1 << 16)  # type: ignore[union-attr]
            except BlockingIOError:
                pass


def measure(receivers: int, rate: float, seconds: float, size: int = 100) -> dict[str, float]:
    from pyserver import _frames

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(min(receivers, 4096))
    clients = [socket.create_connection(listener.getsockname()) for _ in range(receivers)]
    servers = []
    for _ in range(receivers):
        sock, _ = listener.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        servers.append(sock)
    warmup = 0.5
    pid = os.fork()
    if pid == 0:  # the reader
        try:
            for sock in servers:
                sock.close()
            _read_all(clients, time.monotonic() + warmup + seconds + 1.0)
        finally:
            os._exit(0)
    for sock in clients:
        sock.close()
    fds = [sock.fileno() for sock in servers]
    frame = _frames.Encoder().text("x" * size)
    interval = 1.0 / rate
    writes = 0
    due = time.monotonic()
    start = due + warmup
    usage0 = None
    while True:
        now = time.monotonic()
        if usage0 is None and now >= start:
            usage0 = resource.getrusage(resource.RUSAGE_SELF)
            began = now
            writes = 0
        if usage0 is not None and now >= start + seconds:
            break
        _frames.write_many(fds, frame)
        writes += len(fds)
        due += interval
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    elapsed = time.monotonic() - began
    os.waitpid(pid, 0)
    for sock in servers:
        sock.close()
    listener.close()
    assert usage0 is not None
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    return {
        "us_per_write": cpu * 1e6 / max(1, writes),
        "writes": writes,
        "cpu_pct": 100.0 * cpu / elapsed,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--receivers", type=int, default=500)
    p.add_argument("--rate", type=float, default=200.0, help="broadcasts per second")
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--size", type=int, default=100, help="payload bytes of the frame")
    opts = p.parse_args(argv)
    raise_nofile()
    print(json.dumps(measure(opts.receivers, opts.rate, opts.seconds, opts.size)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

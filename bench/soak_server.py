"""bench/servers/sio_pyserver.py with a probe, for the soak and the storm (issue 19).

The same server and handlers (echo, ack, the room "b" broadcast), plus a task that appends a
JSON line to ``$SOAK_STATS`` every ``$SOAK_EVERY`` seconds (default 10): RSS, open file
descriptors, living Trio tasks, clients, Python's allocated blocks, glibc's ``mallinfo2``
(bytes in use, free bytes the allocator keeps, mmapped bytes) and the ERROR log records so far
(the server's exceptions). With ``SOAK_TRIM=1`` each sample also calls ``malloc_trim(0)`` and
records the RSS after it: how much of the RSS is free memory glibc keeps.

    .venv/bin/python bench/soak_server.py --port 3000
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent / "servers"))
from sio_pyserver import sio

PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


_libc = ctypes.CDLL("libc.so.6")
_libc.mallinfo2.restype = _MallInfo2


class _Errors(logging.Handler):
    """Counts the ERROR records (exceptions logged by the server)."""

    count = 0

    def emit(self, record: logging.LogRecord) -> None:
        _Errors.count += 1


def rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE_KIB


def pymalloc() -> dict[str, int]:
    """Python's small-object allocator (``sys._debugmallocstats``, read from fd 2): its
    arenas (1 MiB each, returned to the OS only when wholly empty), the bytes in live blocks,
    and the free bytes it keeps in used arenas (free blocks and unused pools)."""
    with tempfile.TemporaryFile() as tmp:
        saved = os.dup(2)
        try:
            os.dup2(tmp.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        text = tmp.read().decode()
    out: dict[str, int] = {}
    for line in text.splitlines():
        value = line.rsplit("=", 1)[-1].strip().replace(",", "")
        if line.startswith("# arenas allocated current"):
            out["pymalloc_arenas"] = int(value)
        elif line.startswith("# bytes in allocated blocks"):
            out["pymalloc_live_kib"] = int(value) // 1024
        elif line.startswith("# bytes in available blocks"):
            out["pymalloc_free_blocks_kib"] = int(value) // 1024
        elif "unused pools" in line:
            out["pymalloc_unused_pools_kib"] = int(value) // 1024
    return out


def sample(t0: float, trim: bool) -> dict[str, float]:
    info = _libc.mallinfo2()
    row = {
        "t": round(time.monotonic() - t0, 1),
        "rss_kib": rss_kib(),
        "fds": len(os.listdir("/proc/self/fd")),
        "tasks": trio.lowlevel.current_statistics().tasks_living,
        "clients": len(sio.clients),
        "py_blocks": sys.getallocatedblocks(),
        "malloc_in_use_kib": info.uordblks // 1024,
        "malloc_free_kib": info.fordblks // 1024,
        "malloc_mmapped_kib": info.hblkhd // 1024,
        "errors": _Errors.count,
        **pymalloc(),
    }
    if trim:
        _libc.malloc_trim(0)
        row["rss_after_trim_kib"] = rss_kib()
    return row


async def probe(path: str, every: float, trim: bool) -> None:
    t0 = time.monotonic()
    while True:
        line = json.dumps(sample(t0, trim)) + "\n"
        with open(path, "a") as out:  # noqa: ASYNC230 (a line, every few seconds)
            out.write(line)
        await trio.sleep(every)


async def main(port: int) -> None:
    async with trio.open_nursery() as nursery:
        stats = os.environ.get("SOAK_STATS")
        if stats:
            every = float(os.environ.get("SOAK_EVERY", "10"))
            nursery.start_soon(probe, stats, every, os.environ.get("SOAK_TRIM") == "1")
        await sio.serve("127.0.0.1", port)


if __name__ == "__main__":
    logging.getLogger().addHandler(_Errors(logging.ERROR))
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    trio.run(main, parser.parse_args().port)

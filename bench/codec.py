"""The Rust frame codec side by side with its peers, in one process.

    .venv/bin/python bench/codec.py [--quick]

* unmasking: ``pyserver._frames._testing.apply_mask`` vs ``websockets.speedups.apply_mask`` (C) vs
  a plain memory copy of the same size, at 1 KiB, 64 KiB and 1 MiB;
* decoding one chunk of 100 masked 32-byte text frames: ``Decoder.feed`` vs a wsproto server
  ``Connection`` vs a websockets sans-IO ``ServerProtocol``, time per message;
* permessage-deflate of 16 KiB of chat JSON: ``deflate_raw``/``inflate_raw`` vs CPython's
  ``zlib`` at the same level (6) and window (15).

Each figure is the BEST of several repetitions of a loop calibrated to a fixed time budget
(the calibration is the warm-up), timed with ``time.perf_counter_ns``; the contenders of one
table take turns within each repetition, so load changes hit them alike. Targets are printed,
not asserted.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import random
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import websockets
import websockets.speedups
import wsproto
from websockets.protocol import State
from websockets.server import ServerProtocol
from wsproto.connection import SERVER, Connection

from pyserver import _frames as F
from pyserver._frames import _testing as T

GiB = 1 << 30
MB = 1_000_000


@dataclass
class Timer:
    budget_ns: int  # the length of one timed loop
    repeat: int

    def _calibrate(self, fn: Callable[[], object]) -> int:
        """Calls per loop to fill the budget; doubles as the warm-up."""
        number = 1
        while True:
            t0 = time.perf_counter_ns()
            for _ in range(number):
                fn()
            spent = time.perf_counter_ns() - t0
            if spent >= self.budget_ns // 4:
                return max(1, int(number * self.budget_ns / max(spent, 1)))
            number *= 2

    def compare(self, fns: dict[str, Callable[[], object]]) -> dict[str, float]:
        """Best time per call, in ns, of each contender. The repetitions are interleaved
        (a loop of each contender in turn, ``repeat`` times) so that a change of machine
        load hits every contender alike instead of skewing the ratios."""
        numbers = {name: self._calibrate(fn) for name, fn in fns.items()}
        best = dict.fromkeys(fns, float("inf"))
        for _ in range(self.repeat):
            for name, fn in fns.items():
                number = numbers[name]
                t0 = time.perf_counter_ns()
                for _ in range(number):
                    fn()
                best[name] = min(best[name], (time.perf_counter_ns() - t0) / number)
        return best


def check_websockets_speedups() -> None:
    """The C extension, not the pure-Python fallback in websockets.utils."""
    fn = websockets.speedups.apply_mask
    assert inspect.isbuiltin(fn), f"websockets.speedups.apply_mask is {fn!r}, not the C one"
    assert websockets.speedups.__file__.endswith((".so", ".pyd")), websockets.speedups.__file__


def fmt_ratio(x: float) -> str:
    return f"{x:6.2f}x"


def row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(
        c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
    )


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")
    print(row(header, widths))
    print(row(["-" * w for w in widths], widths))
    for r in rows:
        print(row(r, widths))


# --------------------------------------------------------------------------- unmasking


def bench_unmask(timer: Timer) -> dict[int, dict[str, float]]:
    check_websockets_speedups()
    mask = bytes.fromhex("37fa213d")
    rows = []
    results: dict[int, dict[str, float]] = {}
    for size in (1 << 10, 1 << 16, 1 << 20):
        data = random.Random(size).randbytes(size)
        source = bytearray(data)
        assert T.apply_mask(data, mask) == websockets.speedups.apply_mask(data, mask)
        best = timer.compare(
            {
                "ours": lambda d=data: T.apply_mask(d, mask),
                "ws": lambda d=data: websockets.speedups.apply_mask(d, mask),
                "copy": lambda s=source: bytes(s),
            }
        )
        gbps = {k: size / ns * 1e9 / GiB for k, ns in best.items()}
        results[size] = gbps
        rows.append(
            [
                f"{size >> 10} KiB",
                f"{gbps['ours']:.2f}",
                f"{gbps['ws']:.2f}",
                f"{gbps['copy']:.2f}",
                fmt_ratio(gbps["ours"] / gbps["ws"]),
                fmt_ratio(gbps["ours"] / gbps["copy"]),
            ]
        )
    table(
        "Unmasking, GiB/s (best of repetitions; higher is better)",
        ["size", "ours", "websockets C", "memcpy", "ours/websockets", "ours/memcpy"],
        rows,
    )
    return results


# --------------------------------------------------------------------------- decoding


def chunk_of_frames(n: int = 100, size: int = 32) -> tuple[bytes, list[str]]:
    rng = random.Random(1)
    texts = []
    wire = bytearray()
    for i in range(n):
        text = json.dumps({"t": "msg", "n": i, "d": "hello"})
        text = (text + " " * size)[:size]
        texts.append(text)
        wire += T.encode_frame(F.OP_TEXT, text.encode(), mask=rng.randbytes(4))
    return bytes(wire), texts


def bench_decode(timer: Timer) -> dict[str, float]:
    n = 100
    chunk, texts = chunk_of_frames(n)

    ours_dec = F.Decoder()
    assert ours_dec.feed(chunk) == texts

    wp = Connection(SERVER)

    def wsproto_feed() -> list[object]:
        wp.receive_data(chunk)
        return list(wp.events())

    assert [e.data for e in wsproto_feed()] == texts  # type: ignore[attr-defined]

    ws = ServerProtocol(state=State.OPEN, max_size=None)

    def websockets_feed() -> list[object]:
        ws.receive_data(chunk)
        return ws.events_received()

    assert [bytes(f.data).decode() for f in websockets_feed()] == texts  # type: ignore[attr-defined]

    best = timer.compare(
        {
            "ours": lambda: ours_dec.feed(chunk),
            "wsproto": wsproto_feed,
            "websockets": websockets_feed,
        }
    )
    per_msg = {name: ns / n for name, ns in best.items()}
    rows = [
        [name, f"{ns:.0f}", f"{1e9 / ns / 1e6:.2f}", fmt_ratio(ns / per_msg["ours"])]
        for name, ns in per_msg.items()
    ]
    table(
        f"Decoding one chunk of {n} masked 32-byte text frames (best of repetitions)",
        ["decoder", "ns/message", "M messages/s", "time vs ours"],
        rows,
    )
    return per_msg


# --------------------------------------------------------------------------- deflate


def chat_json(n_bytes: int) -> bytes:
    rng = random.Random(0)
    names = ["ana", "bo", "chen", "dmitri", "eve", "fatima"]
    words = "hello there how is the drawing going see you in the lobby gg nice move".split()
    out = bytearray()
    while len(out) < n_bytes:
        msg = {
            "type": "chat",
            "room": f"room-{rng.randint(1, 9)}",
            "from": rng.choice(names),
            "ts": 1_700_000_000 + rng.randint(0, 10**6),
            "text": " ".join(rng.choice(words) for _ in range(rng.randint(2, 12))),
        }
        out += json.dumps(msg).encode() + b"\n"
    return bytes(out[:n_bytes])


def bench_deflate(timer: Timer, level: int = 6, window: int = 15) -> dict[str, float]:
    data = chat_json(16 << 10)
    tail = b"\x00\x00\xff\xff"

    def zlib_deflate() -> bytes:
        comp = zlib.compressobj(level, zlib.DEFLATED, -window)
        return (comp.compress(data) + comp.flush(zlib.Z_SYNC_FLUSH))[:-4]

    def ours_deflate() -> bytes:
        return T.deflate_raw(data, level=level, window_bits=window)

    ours_c, zlib_c = ours_deflate(), zlib_deflate()
    assert zlib.decompressobj(-window).decompress(ours_c + tail) == data
    assert T.inflate_raw(zlib_c, max_size=len(data), window_bits=window) == data

    def zlib_inflate() -> bytes:
        return zlib.decompressobj(-window).decompress(zlib_c + tail)

    def ours_inflate() -> bytes:
        return T.inflate_raw(zlib_c, max_size=1 << 20, window_bits=window)

    best = timer.compare(
        {
            "ours deflate": ours_deflate,
            "zlib deflate": zlib_deflate,
            "ours inflate": ours_inflate,
            "zlib inflate": zlib_inflate,
        }
    )
    mbps = {name: len(data) / ns * 1e9 / MB for name, ns in best.items()}
    rows = [
        [
            "deflate",
            f"{mbps['ours deflate']:.1f}",
            f"{mbps['zlib deflate']:.1f}",
            fmt_ratio(mbps["ours deflate"] / mbps["zlib deflate"]),
            f"{len(ours_c)} / {len(zlib_c)}",
        ],
        [
            "inflate",
            f"{mbps['ours inflate']:.1f}",
            f"{mbps['zlib inflate']:.1f}",
            fmt_ratio(mbps["ours inflate"] / mbps["zlib inflate"]),
            "(both inflate zlib's)",
        ],
    ]
    table(
        f"permessage-deflate of {len(data) >> 10} KiB chat JSON, level {level}, window {window}, "
        "MB/s of uncompressed data (best of repetitions)",
        ["op", "ours", "CPython zlib", "ours/zlib", "bytes out ours / zlib"],
        rows,
    )
    return mbps


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short loops, fewer repetitions")
    args = parser.parse_args()
    timer = Timer(budget_ns=5_000_000, repeat=7) if args.quick else Timer(10_000_000, 31)

    print(
        f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
        f"websockets {websockets.__version__}, wsproto {wsproto.__version__}, "
        f"zlib {zlib.ZLIB_RUNTIME_VERSION}; "
        f"{'quick' if args.quick else 'full'} run: best of {timer.repeat} x "
        f"{timer.budget_ns // 1_000_000} ms"
    )
    unmask = bench_unmask(timer)
    decode = bench_decode(timer)
    deflate = bench_deflate(timer)

    k64 = unmask[1 << 16]
    targets = [
        (
            "unmask 64 KiB >= 1.0x websockets C",
            k64["ours"] / k64["ws"],
            k64["ours"] / k64["ws"] >= 1.0,
        ),
        (
            "unmask 64 KiB within 2x of memcpy (ours/memcpy >= 0.5)",
            k64["ours"] / k64["copy"],
            k64["ours"] / k64["copy"] >= 0.5,
        ),
        (
            "decode >= 25x faster per message than wsproto",
            decode["wsproto"] / decode["ours"],
            decode["wsproto"] / decode["ours"] >= 25,
        ),
        (
            "deflate within 1.2x of CPython zlib (zlib time / ours time >= 1/1.2)",
            deflate["ours deflate"] / deflate["zlib deflate"],
            deflate["ours deflate"] / deflate["zlib deflate"] >= 1 / 1.2,
        ),
        (
            "inflate within 1.2x of CPython zlib (same bar, informative)",
            deflate["ours inflate"] / deflate["zlib inflate"],
            deflate["ours inflate"] / deflate["zlib inflate"] >= 1 / 1.2,
        ),
    ]
    table(
        "Targets (not asserted)",
        ["target", "measured", "met"],
        [[name, fmt_ratio(value), "yes" if ok else "NO"] for name, value, ok in targets],
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()

"""ASGI benchmark (issue 14): Socket.IO echo and a room broadcast, in one run, for

* ``pyserver`` - the native server (``bench/servers/sio_pyserver.py``);
* ``pyserver-hypercorn`` - the same Server as an ASGI app, ``pyserver.ASGIApp(sio)`` under
  Hypercorn's Trio worker (``bench/servers/sio_pyserver_hypercorn.py``);
* ``python-socketio-uvicorn`` - python-socketio's ``ASGIApp`` under uvicorn
  (``bench/servers/sio_python_socketio_uvicorn.py``).

It is ``bench/sio_bench.py`` (its load generator, measurement, table and options) with these
servers and, by default, the scenarios ``echo`` and ``bcast`` (echo 32 B with 1 and 16 in
flight on 50 connections; a 500-receiver room at 200 broadcasts/s); then it prints the two
ratios of the issue: server CPU per message of python-socketio under uvicorn over pyserver
under Hypercorn (goal: at least 3x), and pyserver under Hypercorn over native pyserver (what
the ASGI path costs). Pass ``--profile DIR --profile-servers pyserver-hypercorn`` for a
py-spy profile of where that cost goes. Usage (repository root, after ``npm ci --prefix
bench`` and the bench extra)::

    .venv/bin/python bench/asgi_bench.py [--quick] [sio_bench options]

One run (2026-12-06, 2 shared cores, load average ~10 from other work: "machine busy"), server
CPU us per message (echo) or per delivery (bcast)::

    scenario          native  hypercorn  uvicorn   uvicorn/hypercorn  hypercorn/native
    echo 32B x1         17.7      159.2    136.5               0.86x             8.99x
    echo 32B x16         8.5      133.2    133.1               1.00x            15.76x
    bcast 500@200/s      2.9       90.1     67.8               0.75x            31.07x

The issue's goal (pyserver under Hypercorn at least 3x cheaper than python-socketio under
uvicorn) is not met: they cost the same. Where it goes (cProfile of the Hypercorn process,
``BENCH_CPROFILE``, share of its busy CPU; echo x16 / bcast): Trio's scheduler, tasks and
socket wrappers 36% / 44% (per message Hypercorn's reading task hands an event to the app's
task, and each ``await send`` takes Hypercorn's send lock and a shielded cancel scope around
one ``send_all``: no batching of writes), builtins, contextlib and attrs under those 15% / 19%,
wsproto's framing 14% / 7%, Hypercorn's protocol code 10% / 9%, send(2) 12% / 8%, zlib 1% / 4%
(Hypercorn always offers permessage-deflate); pyserver's own code 12% / 8% (the ASGI adapter
6% / 5%, Engine.IO and Socket.IO 6% / 3%). So even a free pyserver would leave Hypercorn's
trio worker at about 120 us per echoed message: the native server's edge (the reactor, the
Rust framing, one write per connection per wake-up, the Rust fan-out) is precisely what an
ASGI server in Python does not have.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sio_bench

NATIVE = "pyserver"
HYPERCORN = "pyserver-hypercorn"
UVICORN = "python-socketio-uvicorn"
sio_bench.SERVERS[HYPERCORN] = ("python", "sio_pyserver_hypercorn.py")
sio_bench.SERVERS[UVICORN] = ("python", "sio_python_socketio_uvicorn.py")


def main(argv: list[str]) -> int:
    args = list(argv)
    if "--servers" not in args:
        args += ["--servers", f"{NATIVE},{HYPERCORN},{UVICORN}"]
    if "--scenarios" not in args:
        args += ["--scenarios", "echo,bcast"]
    if "--sizes" not in args:
        args += ["--sizes", "32"]
    if "--bcast" not in args:
        args += ["--bcast", "500@200"]
    out = Path(tempfile.mkdtemp()) / "asgi_bench.json"
    if "--json" not in args:
        args += ["--json", str(out)]
    else:
        out = Path(args[args.index("--json") + 1])
    code = sio_bench.main(args)
    if code != 0 or not out.exists():
        return code
    results = json.loads(out.read_text())["results"]
    us = {(r["server"], r["scenario"]): r.get("server_us") for r in results}
    print("\nASGI ratios (server CPU us per message / per delivery):")
    for scenario in sorted({r["scenario"] for r in results}):
        native, hyper, uvi = (us.get((name, scenario)) for name in (NATIVE, HYPERCORN, UVICORN))

        def ratio(a: float | None, b: float | None) -> str:
            return f"{a / b:.2f}x" if a and b else "-"

        def cell(v: float | None) -> str:
            return f"{v:.1f}" if v else "-"

        print(
            f"  {scenario:<18} native {cell(native):>6}  hypercorn {cell(hyper):>6}  "
            f"uvicorn {cell(uvi):>6}   python-socketio/uvicorn over pyserver/hypercorn: "
            f"{ratio(uvi, hyper)} (goal >= 3x);  hypercorn over native: {ratio(hyper, native)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

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

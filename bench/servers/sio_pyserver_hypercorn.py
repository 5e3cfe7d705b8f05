"""Socket.IO server for bench/asgi_bench.py: ours as an ASGI app, ``pyserver.ASGIApp(sio)``
served by Hypercorn's Trio worker (in-process: ``hypercorn.trio.serve``, one worker, no
access log), with the same Server and handlers as ``sio_pyserver.py`` (imported from it).

``BENCH_CPROFILE=FILE`` in the environment: profile the process with cProfile and write the
stats to FILE when it is stopped (SIGTERM), for the profile note of bench/asgi_bench.py."""

from __future__ import annotations

import argparse
import cProfile
import logging
import os
import signal
import sys
from functools import partial
from pathlib import Path

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sio_pyserver import sio

from pyserver import ASGIApp

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    logging.getLogger("hypercorn").setLevel(logging.WARNING)
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.errorlog = None
    profile_path = os.environ.get("BENCH_CPROFILE")
    if profile_path:
        profiler = cProfile.Profile()

        def dump(*_: object) -> None:
            profiler.disable()
            profiler.dump_stats(profile_path)
            os._exit(0)

        signal.signal(signal.SIGTERM, dump)
        profiler.enable()
    trio.run(partial(serve, ASGIApp(sio), config))  # type: ignore[arg-type]

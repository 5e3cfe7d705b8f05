"""The compliance servers (``engineio_server.py``, ``socketio_server.py``) served as ASGI apps
(``pyserver.ASGIApp``) by Hypercorn's Trio worker, in-process, for running the official
protocol suites against the ASGI mount by hand:

    .venv/bin/python tests/compliance/asgi_server.py engineio --port 3000
    .venv/bin/python tests/compliance/asgi_server.py socketio --port 3000

then ``npx mocha test-suite.js`` in the suite's ``test-suite/`` (as /work/ext/run-suites.sh
does for the native servers).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engineio_server import make_server
from socketio_server import build_server

from pyserver import App, ASGIApp


def build_app(suite: str) -> ASGIApp:
    if suite == "engineio":
        app = App(serve_client=False, health_path=None)
        app.mount("/engine.io/", make_server())
        return ASGIApp(app)
    return ASGIApp(build_server())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("suite", choices=["engineio", "socketio"])
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=3000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    config = Config()
    config.bind = [f"{args.host}:{args.port}"]
    trio.run(serve, build_app(args.suite), config)  # type: ignore[arg-type]

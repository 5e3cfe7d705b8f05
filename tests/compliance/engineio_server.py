"""The server the official Engine.IO protocol test suite expects (socketio/engine.io-protocol,
``test-suite/``): pingInterval 300 ms, pingTimeout 200 ms, maxPayload 1000000, CORS open, every
message echoed back, at ``/engine.io/``.

    .venv/bin/python tests/compliance/engineio_server.py --port 3000
"""

from __future__ import annotations

import argparse
import logging

import trio

from pyserver.trio.engineio import EngineIOServer, EngineSession
from pyserver.trio.http.app import App


def make_server() -> EngineIOServer:
    def echo(session: EngineSession, data: str | bytes) -> None:
        session.send(data)

    return EngineIOServer(
        ping_interval=0.3,
        ping_timeout=0.2,
        max_payload=1_000_000,
        cors_allowed_origins="*",
        on_message=echo,
    )


async def main(host: str, port: int) -> None:
    eio = make_server()
    app = App(serve_client=False, health_path=None)
    app.mount("/engine.io/", eio)
    async with trio.open_nursery() as nursery:
        await nursery.start(eio.serve)
        listeners = await nursery.start(app.serve, host, port)
        print(f"engine.io compliance server on {listeners[0].socket.getsockname()}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=3000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    trio.run(main, args.host, args.port)

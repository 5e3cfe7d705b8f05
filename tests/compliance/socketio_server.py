"""The server the official Socket.IO protocol test suite expects (socketio/socket.io-protocol,
``test-suite/``): Engine.IO at ``/socket.io/`` with pingInterval 300 ms, pingTimeout 200 ms,
maxHttpBufferSize 1000000, connectTimeout 1000 ms and CORS open; on the main namespace and on
``/custom`` (any other namespace is refused with "Invalid namespace"):

* on connection, emit ``auth`` with the handshake's auth payload (``{}`` when none was sent);
* ``message`` is echoed back as ``message-back`` with all its arguments (binary included);
* ``message-with-ack`` is acknowledged with its arguments.

    .venv/bin/python tests/compliance/socketio_server.py --port 3000

Tests import :func:`build_server` and serve it in-process (``tests/test_socketio_compliance.py``).
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

import trio

from pyserver import Server

NAMESPACES = ("/", "/custom")


def build_server(**overrides: Any) -> Server:
    """The suite's server; ``overrides`` replace constructor options (e.g. a longer
    ``ping_interval`` so a test can observe the connect timeout on its own)."""
    options: dict[str, Any] = {
        "cors_allowed_origins": "*",
        "ping_interval": 0.3,
        "ping_timeout": 0.2,
        "max_http_buffer_size": 1_000_000,
        "connect_timeout": 1.0,
    }
    options.update(overrides)
    sio = Server(**options)
    for name in NAMESPACES:
        install_handlers(sio if name == "/" else sio.of(name))
    return sio


def install_handlers(namespace: Any) -> None:
    """The suite's handlers on ``namespace`` (the server itself for "/", or ``sio.of(name)``)."""

    async def connection(socket: Any) -> None:
        socket.emit("auth", socket.handshake.auth)

    async def message(socket: Any, *args: Any) -> None:
        socket.emit("message-back", *args)

    async def message_with_ack(socket: Any, *args: Any) -> tuple[Any, ...]:
        return args  # the return value is the ack; a tuple acks with several arguments

    namespace.on("connection", connection)
    namespace.on("message", message)
    namespace.on("message-with-ack", message_with_ack)


async def main(host: str, port: int) -> None:
    sio = build_server()
    async with trio.open_nursery() as nursery:
        await nursery.start(sio.serve, host, port)
        print(f"socket.io compliance server on {host}:{port}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=3000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    trio.run(main, args.host, args.port)

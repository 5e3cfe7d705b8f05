"""Echo peer: trio-websocket (pip ``trio-websocket``), one task per connection."""

from __future__ import annotations

import argparse

import trio
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket


async def handler(request: WebSocketRequest) -> None:
    ws = await request.accept()
    try:
        while True:
            await ws.send_message(await ws.get_message())
    except ConnectionClosed:
        pass


async def main(port: int) -> None:
    await serve_websocket(
        handler, "127.0.0.1", port, ssl_context=None, max_message_size=16 * 1024 * 1024
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    trio.run(main, parser.parse_args().port)

"""Echo server: ours, ``pyserver.App`` with one raw WebSocket route."""

from __future__ import annotations

import argparse
from functools import partial

import trio

from pyserver import App, WebSocket  # the public API: runs against any --baseline commit

app = App()


@app.websocket("/")
async def echo(ws: WebSocket) -> None:
    async for msg in ws:
        await ws.send(msg)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    trio.run(partial(app.serve, "127.0.0.1", parser.parse_args().port))

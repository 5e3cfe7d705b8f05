"""Socket.IO peer for bench/sio_bench.py: python-socketio (pip) on aiohttp.

``socketio.AsyncServer(async_mode="aiohttp")``, logging off. Same handlers as the other
Socket.IO servers of the benchmark: "echo" is emitted back to the sender, "ack" is acknowledged
with its payload, "bcast" is broadcast to the room "b", which a client joins by connecting with
auth ``{"room": "b"}``.
"""

from __future__ import annotations

import argparse

import socketio
from aiohttp import web

sio = socketio.AsyncServer(
    async_mode="aiohttp", cors_allowed_origins="*", logger=False, engineio_logger=False
)
app = web.Application()
sio.attach(app)


@sio.event
async def connect(sid: str, environ: dict, auth: dict | None = None) -> None:
    if isinstance(auth, dict) and auth.get("room"):
        await sio.enter_room(sid, auth["room"])


@sio.on("echo")
async def echo(sid: str, data: object) -> None:
    await sio.emit("echo", data, to=sid)


@sio.on("ack")
async def ack(sid: str, data: object) -> object:
    return data


@sio.on("bcast")
async def bcast(sid: str, data: object) -> None:
    await sio.emit("bcast", data, room="b")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    web.run_app(app, host="127.0.0.1", port=parser.parse_args().port, print=None, access_log=None)

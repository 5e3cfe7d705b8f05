"""Socket.IO peer for bench/asgi_bench.py: python-socketio's ``ASGIApp`` under uvicorn
(``socketio.AsyncServer(async_mode="asgi")``, one worker, logging and access log off), the
same handlers as ``sio_python_socketio.py``: "echo" back to the sender, "ack" acknowledged,
"bcast" broadcast to the room "b" (joined with auth ``{"room": "b"}``)."""

from __future__ import annotations

import argparse

import socketio
import uvicorn

sio = socketio.AsyncServer(
    async_mode="asgi", cors_allowed_origins="*", logger=False, engineio_logger=False
)
app = socketio.ASGIApp(sio)


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
    port = parser.parse_args().port
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)

"""Socket.IO server for bench/sio_bench.py: ours, ``pyserver.Server`` (issue 4's API).

Same handlers as the peers: "echo" is emitted back to the sender, "ack" is acknowledged with
its payload (the handler's return value), "bcast" is broadcast to the room "b", which a client
joins by connecting with auth ``{"room": "b"}``.
"""

from __future__ import annotations

import argparse
import inspect
import os
from functools import partial
from typing import Any

import trio

from pyserver import Server

# BENCH_SIO_RECOVERY=1 (sio_bench.py --recovery): connection state recovery on (the option
# is passed only then, so that --baseline runs this script on commits that predate it)
RECOVERY = {"connection_state_recovery": True} if os.environ.get("BENCH_SIO_RECOVERY") else {}
# BENCH_SIO_PARSER=msgpack (sio_bench.py's pyserver-msgpack): Server(parser="msgpack");
# BENCH_SIO_JSON=orjson (pyserver-orjson): Server(json=orjson). Passed only when set, as above.
PARSER: dict[str, Any] = {}
if os.environ.get("BENCH_SIO_PARSER") == "msgpack":
    PARSER["parser"] = "msgpack"
if os.environ.get("BENCH_SIO_JSON") == "orjson":
    import orjson

    PARSER["json"] = orjson
# BENCH_SIO_METRICS=1 (sio_bench.py's pyserver+metrics): Server(metrics=True), issue 17.
METRICS = {"metrics": True} if os.environ.get("BENCH_SIO_METRICS") else {}
sio = Server(**RECOVERY, **PARSER, **METRICS)
# BENCH_SIO_ADMIN=production|development (pyserver+admin, pyserver+admin-dev): the Admin UI's
# instrumentation (issue 17), without an admin socket connected.
if os.environ.get("BENCH_SIO_ADMIN"):
    sio.instrument(auth=False, mode=os.environ["BENCH_SIO_ADMIN"])


async def _maybe_await(value: Any) -> None:
    if inspect.isawaitable(value):
        await value


@sio.on("connection")
async def connected(socket: Any) -> None:
    auth = socket.handshake.auth
    room = auth.get("room") if isinstance(auth, dict) else None
    if room:
        await _maybe_await(socket.join(room))


@sio.on("echo")
async def echo(socket: Any, data: Any) -> None:
    socket.emit("echo", data)


@sio.on("ack")
async def ack(socket: Any, data: Any) -> Any:
    return data


@sio.on("bcast")
async def bcast(socket: Any, data: Any) -> None:
    sio.to("b").emit("bcast", data)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    trio.run(partial(sio.serve, "127.0.0.1", parser.parse_args().port))

"""A pyserver node for bench/cluster_bench.py: the handlers of ``sio_pyserver.py`` ("bcast"
broadcasts to the room "b", which a client joins with auth ``{"room": "b"}``), with the
RedisAdapter on ``$BENCH_REDIS_URL`` when it is set (a cluster node; ``$BENCH_ADAPTER`` sharded
or streams: RedisShardedAdapter or RedisStreamsAdapter), in memory otherwise (the single-node
figure).

Usage: python cluster_pyserver.py --port N   (BENCH_REDIS_URL=redis://127.0.0.1:P/0)
"""

from __future__ import annotations

import argparse
import os
from functools import partial
from typing import Any

import trio

from pyserver import Server

redis_url = os.environ.get("BENCH_REDIS_URL")
adapter_kind = os.environ.get("BENCH_ADAPTER", "classic")
if redis_url and adapter_kind == "sharded":
    from pyserver import RedisShardedAdapter

    sio = Server(adapter=RedisShardedAdapter(redis_url))
elif redis_url and adapter_kind == "streams":
    from pyserver import RedisStreamsAdapter

    # BENCH_RECOVERY: connection state recovery on (cluster_bench.py --recovery)
    recovery = bool(os.environ.get("BENCH_RECOVERY"))
    sio = Server(adapter=RedisStreamsAdapter(redis_url), connection_state_recovery=recovery)
elif redis_url:
    from pyserver import RedisAdapter

    sio = Server(adapter=RedisAdapter(redis_url))
else:
    sio = Server()


@sio.on("connection")
async def connected(socket: Any) -> None:
    auth = socket.handshake.auth
    room = auth.get("room") if isinstance(auth, dict) else None
    if room:
        socket.join(room)


@sio.on("echo")
async def echo(socket: Any, data: Any) -> None:
    socket.emit("echo", data)


@sio.on("bcast")
async def bcast(socket: Any, data: Any) -> None:
    sio.to("b").emit("bcast", data)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    trio.run(partial(sio.serve, "127.0.0.1", parser.parse_args().port))

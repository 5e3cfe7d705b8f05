"""The application of the pyserver nodes of the streams cluster tests
(``pyserver run cluster.streams_app:app``), the same protocol as ``node/streams_peer.js``'s
server: a socket that connects (not recovered) gets ``data["node"]`` and joins
``auth["room"]``; ``whoami`` acks ``{node, sid, data, rooms, recovered}``; ``shout {room,
event, data}`` broadcasts to the room (acks "ok"); ``fetch`` acks the sorted ids of every
socket of the cluster. Configured by ``$PYSERVER_REDIS_URL``, ``$PYSERVER_NODE``,
``$PYSERVER_STREAM``, ``$PYSERVER_PREFIX`` and ``$PYSERVER_MAX_LEN``."""

from __future__ import annotations

import os
from typing import Any


def build(redis_url: str, node: str, stream: str, prefix: str, max_len: int = 10_000) -> Any:
    from pyserver import RedisStreamsAdapter, Server, StateRecovery

    sio = Server(
        adapter=RedisStreamsAdapter(
            redis_url, stream_name=stream, channel_prefix=prefix, max_len=max_len
        ),
        connection_state_recovery=StateRecovery(max_disconnection_duration=60),
        cors_allowed_origins="*",
        ping_interval=5.0,
        ping_timeout=5.0,
    )

    @sio.on("connection")
    async def connection(socket: Any) -> None:
        if not socket.recovered:
            socket.data["node"] = node
            auth = socket.handshake.auth
            if isinstance(auth, dict) and isinstance(auth.get("room"), str):
                socket.join(auth["room"])

    @sio.on("whoami")
    async def whoami(socket: Any, *_: Any) -> Any:
        return {
            "node": node,
            "sid": socket.id,
            "data": socket.data,
            "rooms": sorted(socket.rooms),
            "recovered": socket.recovered,
        }

    @sio.on("shout")
    async def shout(socket: Any, msg: dict[str, Any]) -> Any:
        sio.to(msg["room"]).emit(msg["event"], msg.get("data"))
        return "ok"

    @sio.on("fetch")
    async def fetch(socket: Any, *_: Any) -> Any:
        return sorted(s.id for s in await sio.fetch_sockets())

    return sio


class App:
    async def serve(self, host: str, port: int, **kw: Any) -> None:
        env = os.environ
        sio = build(
            env["PYSERVER_REDIS_URL"],
            env.get("PYSERVER_NODE", "0"),
            env.get("PYSERVER_STREAM", "socket.io"),
            env.get("PYSERVER_PREFIX", "socket.io"),
            int(env.get("PYSERVER_MAX_LEN", "10000")),
        )
        await sio.serve(host, port, **kw)


app = App()

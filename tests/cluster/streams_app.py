"""The application of the pyserver nodes of the streams cluster tests
(``pyserver run cluster.streams_app:app``), the same protocol as ``node/streams_peer.js``'s
server: a socket that connects (not recovered) gets ``data["node"]`` and joins
``auth["room"]``; ``whoami`` acks ``{node, sid, data, rooms, recovered}``; ``shout {room,
event, data}`` broadcasts to the room (acks "ok"); ``fetch`` acks the sorted ids of every
socket of the cluster. Configured by ``$PYSERVER_REDIS_URL``, ``$PYSERVER_NODE``,
``$PYSERVER_STREAM``, ``$PYSERVER_PREFIX``, ``$PYSERVER_MAX_LEN`` and ``$PYSERVER_ADAPTER``
(``sharded``: RedisShardedAdapter; ``streams-sharded``: the streams adapter with sharded
pub/sub)."""

from __future__ import annotations

import os
from typing import Any


def build(
    redis_url: str, node: str, stream: str, prefix: str, max_len: int = 10_000, kind: str = ""
) -> Any:
    from pyserver import Server, StateRecovery
    from pyserver.trio.redis.sharded import RedisShardedAdapter
    from pyserver.trio.redis.streams import RedisStreamsAdapter

    if kind == "sharded":  # no recovery over pub/sub
        adapter: Any = RedisShardedAdapter(redis_url, channel_prefix=prefix)
        recovery: Any = False
    else:
        adapter = RedisStreamsAdapter(
            redis_url, stream_name=stream, channel_prefix=prefix, max_len=max_len,
            sharded_pubsub=kind == "streams-sharded",
        )  # fmt: skip
        recovery = StateRecovery(max_disconnection_duration=60)
    sio = Server(
        adapter=adapter,
        connection_state_recovery=recovery,
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
    async def fetch(socket: Any, room: Any = None) -> Any:
        found = await (sio.in_(room) if isinstance(room, str) else sio).fetch_sockets()
        return sorted(s.id for s in found)

    @sio.on("server-ask")
    async def server_ask(socket: Any, msg: dict[str, Any]) -> Any:
        return await sio.main.server_side_emit_with_ack(msg["event"], *msg.get("args", []))

    @sio.on("ask-room")
    async def ask_room(socket: Any, msg: dict[str, Any]) -> Any:
        return await sio.to(msg["room"]).timeout(5).emit_with_ack(msg["event"], msg.get("data"))

    @sio.main.on_server_event("whoami-node")
    def whoami_node(*args: Any) -> Any:
        return {"node": node, "args": list(args)}

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
            env.get("PYSERVER_ADAPTER", ""),
        )
        await sio.serve(host, port, **kw)


app = App()

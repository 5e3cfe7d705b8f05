"""The Admin UI across two pyserver nodes on a real redis-server (``RedisAdapter``), as Node's
instrumented servers behave: an admin socket on one node gets ``all_sockets`` with the sockets
of both (a cluster-wide ``fetch_sockets``), both nodes' ``server_stats`` (two server ids),
the other node's ``socket_connected``, and its ``_disconnect`` command reaches a socket of
the other node. With ``store=RedisStore(url)`` (Node's keys) a login's session id on one node
logs the UI in on the other; with the in-memory store it does not."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import coredis
import pytest
import trio
from helpers.redis_process import RedisProcess

from pyserver import (
    ConnectionRefused,
    RedisAdapter,
    RedisStore,
    Server,
    SocketDisconnected,
    testing,
)

CREDENTIALS = {"username": "admin", "password": "s3cret"}


@asynccontextmanager
async def two_instrumented_nodes(redis: RedisProcess, **options: Any) -> AsyncIterator[list[str]]:
    """Two nodes on ``redis``; ``options`` for ``instrument`` (``store`` a callable making
    each node's store)."""
    key = f"admin-{uuid.uuid4().hex[:8]}"
    urls: list[str] = []
    async with trio.open_nursery() as nursery:
        for node in ("a", "b"):
            adapter = RedisAdapter(redis.url, key=key, heartbeat_interval=0.2)
            sio = Server(adapter=adapter)
            instrument: dict[str, Any] = {"auth": False, **options}
            if "store" in instrument:
                instrument["store"] = instrument["store"]()
            sio.instrument(server_id=f"node-{node}", server_stats_interval=0.2, **instrument)
            listeners = await nursery.start(sio.serve, "127.0.0.1", 0)
            await adapter.subscribed.wait()
            urls.append(f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}")
        try:
            yield urls
        finally:
            nursery.cancel_scope.cancel()


async def next_event(socket: Any, event: str, where: Any) -> list[Any]:
    while True:
        args = await testing.wait_for_event(socket, event)
        if where(args):
            return args


async def test_the_admin_ui_sees_every_node(redis_server: RedisProcess) -> None:
    with trio.fail_after(30):
        async with (
            two_instrumented_nodes(redis_server) as [a, b],
            testing.connect(a, transports=["websocket"]) as on_a,
            testing.connect(b, transports=["websocket"]) as on_b,
            testing.connect(a + "/admin", transports=["websocket"]) as admin,
        ):
            [everyone] = await testing.wait_for_event(admin, "all_sockets")
            main = {s["id"]: s for s in everyone if s["nsp"] == "/"}
            assert set(main) == {on_a.id, on_b.id}
            remote = main[on_b.id]  # serialized on node a from node b's answer
            assert remote["transport"] == "websocket" and len(remote["clientId"]) == 12
            assert remote["rooms"] == [on_b.id] and remote["data"] == {}
            seen: set[str] = set()
            while seen != {"node-a", "node-b"}:
                [stats] = await testing.wait_for_event(admin, "server_stats")
                seen.add(stats["serverId"])
            async with testing.connect(b, transports=["websocket"]) as late:
                [serialized, _] = await next_event(
                    admin, "socket_connected", lambda args: args[0]["id"] == late.id
                )
                assert serialized["nsp"] == "/"
            admin.emit("_disconnect", "/", False, on_b.id)  # a socket of the other node
            with pytest.raises(SocketDisconnected, match="io server disconnect"):
                await testing.wait_for_event(on_b, "never sent")
            gone = await next_event(admin, "socket_disconnected", lambda args: args[1] == on_b.id)
            assert gone[2] == "server namespace disconnect"


@pytest.mark.parametrize("shared", [True, False], ids=["redis-store", "in-memory"])
async def test_a_session_id_from_one_node_logs_in_on_the_other(
    redis_server: RedisProcess, shared: bool
) -> None:
    store = (lambda: RedisStore(redis_server.url)) if shared else (lambda: None)
    with trio.fail_after(30):
        async with two_instrumented_nodes(redis_server, auth=CREDENTIALS, store=store) as [a, b]:
            async with testing.connect(a + "/admin", auth=CREDENTIALS) as admin:
                [session] = await testing.wait_for_event(admin, "session")
            if not shared:  # each node's memory: node b asks for the password again
                with pytest.raises(ConnectionRefused, match="invalid credentials"):
                    async with testing.connect(b + "/admin", auth={"sessionId": session}):
                        pass
                return
            client = coredis.Redis.from_url(redis_server.url, decode_responses=True)
            async with client:
                key = f"socket.io-admin#{session}"
                assert await client.get(key) == "1"  # Node's RedisStore key and value
                assert 0 < await client.ttl(key) <= 86400
            async with testing.connect(b + "/admin", auth={"sessionId": session}) as admin:
                await testing.wait_for_event(admin, "config")
            with pytest.raises(ConnectionRefused, match="invalid credentials"):
                async with testing.connect(b + "/admin", auth={"sessionId": "0" * 16}):
                    pass

"""Several Servers joined by a RedisAdapter, in one ``trio.run``: ``cluster`` starts them on
free loopback ports (all subscribed before the block runs), ``raw_clients`` joins one raw
Engine.IO client per node, and ``seen`` collects what each client got until a marker broadcast
from a node (the marker follows that node's earlier messages through Redis, in order).

Used by the cluster tests of the adapter, its recovery and its subscriber."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

from helpers.redis_process import RedisProcess
from helpers.sio_client import RawClient
from pyserver import RedisAdapter, Server
from pyserver.trio.socketio.socket import Socket


class Node:
    """One pyserver node: its Server, its RedisAdapter, its base URL."""

    def __init__(self, sio: Server, adapter: RedisAdapter, url: str) -> None:
        self.sio = sio
        self.adapter = adapter
        self.url = url

    def socket(self, sid: str) -> Socket:
        return self.sio.main.sockets[sid]  # type: ignore[index]


async def numsub(client: Any, channel: str) -> int:
    counts = await client.pubsub_numsub(channel)
    return int(counts.get(channel.encode(), 0))


async def wait_numsub(client: Any, channel: str, count: int) -> None:
    """Wait until ``count`` connections subscribe ``channel`` (bounded by the test)."""
    while await numsub(client, channel) != count:  # noqa: ASYNC110 (Redis has no event)
        await trio.sleep(0.02)


@asynccontextmanager
async def cluster(
    redis: RedisProcess,
    count: int = 3,
    setup: Callable[[Server], None] | None = None,
    **options: Any,
) -> AsyncIterator[list[Node]]:
    """``count`` Servers with a RedisAdapter each (a key of their own per cluster), serving
    on free loopback ports, all subscribed before the block runs."""
    options.setdefault("key", f"test-{uuid.uuid4().hex[:8]}")
    options.setdefault("heartbeat_interval", 0.2)
    nodes: list[Node] = []
    async with trio.open_nursery() as nursery:
        for _ in range(count):
            adapter = RedisAdapter(redis.url, **options)
            sio = Server(adapter=adapter)
            if setup is not None:
                setup(sio)
            listeners = await nursery.start(sio.serve, "127.0.0.1", 0)
            port = listeners[0].socket.getsockname()[1]
            nodes.append(Node(sio, adapter, f"http://127.0.0.1:{port}"))
        await wait_numsub(nodes[0].adapter.client, f"{options['key']}-request#/#", count)
        try:
            yield nodes
        finally:
            nursery.cancel_scope.cancel()


async def until_marker(raw: RawClient, marker: str) -> list[str | bytes]:
    """Every Engine.IO message before the ``["sync", marker]`` event."""
    got: list[str | bytes] = []
    while (message := await raw.recv()) != f'42["sync","{marker}"]':
        got.append(message)
    return got


async def seen(node: Node, clients: list[RawClient]) -> list[list[str | bytes]]:
    """What each client got until now: a marker is broadcast from ``node`` to every node
    (it follows the earlier messages of that node through Redis, in order)."""
    marker = uuid.uuid4().hex[:8]
    node.sio.emit("sync", marker)
    return [await until_marker(raw, marker) for raw in clients]


async def raw_clients(nodes: list[Node]) -> tuple[list[RawClient], list[str]]:
    """One raw client per node, joined to "/"."""
    clients = [await RawClient.open(node.url) for node in nodes]
    sids = [await raw.join() for raw in clients]
    return clients, sids

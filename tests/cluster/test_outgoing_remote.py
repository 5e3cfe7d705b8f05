"""Outgoing listeners (``socket.on_any_outgoing``) see the broadcasts made on other nodes, as
Node's adapter calls ``notifyOutgoingListeners`` for every local recipient of every broadcast,
those arriving from Redis included. Two pyserver nodes in one ``trio.run`` on a real
redis-server, with each cluster adapter: the Redis adapter, the streams adapter (with and
without connection state recovery; its broadcasts then carry their stream offset) and the
sharded adapter. Raw Engine.IO clients (``helpers.sio_client.RawClient``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from helpers.redis_process import RedisProcess
from helpers.sio_client import RawClient

from pyserver import RedisAdapter, RedisShardedAdapter, RedisStreamsAdapter, Server

MakeAdapter = Callable[[str, str], Any]

ADAPTERS: dict[str, tuple[MakeAdapter, dict[str, Any]]] = {
    "redis": (lambda url, key: RedisAdapter(url, key=key, heartbeat_interval=0.2), {}),
    "streams": (lambda url, key: RedisStreamsAdapter(url, stream_name=key, channel_prefix=key), {}),
    "streams-recovery": (
        lambda url, key: RedisStreamsAdapter(url, stream_name=key, channel_prefix=key),
        {"connection_state_recovery": True},
    ),
    "sharded": (lambda url, key: RedisShardedAdapter(url, channel_prefix=key), {}),
}


@asynccontextmanager
async def two_nodes(
    redis: RedisProcess, make: MakeAdapter, options: dict[str, Any]
) -> AsyncIterator[list[tuple[Server, str]]]:
    """Two Servers sharing ``make``'s adapter kind (a key of their own), serving on free
    loopback ports, each subscribed (and reading its stream) before the block runs."""
    key = f"out-{uuid.uuid4().hex[:8]}"
    nodes: list[tuple[Server, str]] = []
    async with trio.open_nursery() as nursery:
        for _ in range(2):
            adapter = make(redis.url, key)
            sio = Server(adapter=adapter, **options)
            listeners = await nursery.start(sio.serve, "127.0.0.1", 0)
            await adapter.subscribed.wait()
            nodes.append((sio, f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}"))
        try:
            yield nodes
        finally:
            nursery.cancel_scope.cancel()


async def next_event(raw: RawClient) -> list[Any]:
    """The next Socket.IO event a raw client gets, as ``[event, *args]``."""
    packet = await raw.recv_sio()
    assert packet.startswith("2"), packet
    event: list[Any] = json.loads(packet[1:])
    return event


def listen(sio: Server, sid: str) -> list[list[Any]]:
    """What the outgoing listener of the socket ``sid`` is called with, as a list."""
    seen: list[list[Any]] = []
    sio.main.sockets[sid].on_any_outgoing(lambda event, *args: seen.append([event, *args]))  # type: ignore[index]
    return seen


@pytest.mark.parametrize("kind", list(ADAPTERS))
async def test_outgoing_listeners_see_other_nodes_broadcasts(
    redis_server: RedisProcess, kind: str
) -> None:
    make, options = ADAPTERS[kind]
    with trio.fail_after(30):
        async with two_nodes(redis_server, make, options) as [(a, a_url), (b, b_url)]:
            here = await RawClient.open(a_url)
            selected = await RawClient.open(b_url)
            left_out = await RawClient.open(b_url)
            here_sid, selected_sid, left_out_sid = [
                await raw.join() for raw in (here, selected, left_out)
            ]
            b.main.sockets[left_out_sid].join("quiet")  # type: ignore[index]
            seen_here = listen(a, here_sid)
            seen_selected = listen(b, selected_sid)
            seen_left_out = listen(b, left_out_sid)

            a.except_("quiet").emit("hello", 1, {"x": [2, "3"]})
            a.emit("sync", "end")
            got_selected = [await next_event(selected), await next_event(selected)]
            got_left_out = [await next_event(left_out)]
            got_here = [await next_event(here), await next_event(here)]

            # node B's recipients: exactly the packets their clients got (the stream offset
            # last with recovery on), the one left out by except_ told only of "sync"
            assert got_selected[0][:3] == ["hello", 1, {"x": [2, "3"]}]
            assert got_selected[1][:2] == ["sync", "end"]
            assert seen_selected == got_selected
            assert seen_left_out == got_left_out
            assert [e[0] for e in got_left_out] == ["sync"]
            # node A's own recipient: told once of each, as before
            assert [e[0] for e in seen_here] == ["hello", "sync"]
            assert [e[0] for e in got_here] == ["hello", "sync"]
            for raw in (here, selected, left_out):
                await raw.close()

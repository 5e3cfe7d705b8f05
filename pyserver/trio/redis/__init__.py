"""Cluster adapters: :class:`RedisAdapter` (several server processes as one, over Redis
pub/sub) and :class:`RedisStreamsAdapter` (over a Redis stream, with connection state recovery
across nodes: :mod:`.streams`, :mod:`.streams_namespace`) and :class:`RedisShardedAdapter`
(Redis 7's sharded pub/sub: :mod:`.sharded`).

* :mod:`.adapter`: the :class:`RedisAdapter` (one per server: the node) and its namespace
  adapters; byte-compatible with Node's ``@socket.io/redis-adapter``.
* :mod:`.subscriber`: the subscribing connection (its own RESP reader, resubscribing on
  reconnect); :mod:`.remote`: requests to other nodes and their answers;
  :mod:`.answers`: this node answering theirs.
* :mod:`.requesting`: the requests every cluster adapter's namespace makes (its base class);
  :class:`.answers.HandlerBudget`: the server-side handler tasks every node bounds.

The wire codecs are sans-IO, in :mod:`pyserver.redis`. The in-memory adapter, the interface
and :class:`~pyserver.trio.socketio.adapter.RemoteSocket` are in
:mod:`pyserver.trio.socketio.adapter`. ``RedisAdapter`` is loaded on first use (it imports
coredis).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["RedisAdapter", "RedisShardedAdapter", "RedisStreamsAdapter"]

if TYPE_CHECKING:
    from pyserver.trio.redis.adapter import RedisAdapter
    from pyserver.trio.redis.sharded import RedisShardedAdapter
    from pyserver.trio.redis.streams import RedisStreamsAdapter


def __getattr__(name: str) -> Any:
    if name == "RedisAdapter":
        from pyserver.trio.redis.adapter import RedisAdapter

        return RedisAdapter
    if name == "RedisShardedAdapter":
        from pyserver.trio.redis.sharded import RedisShardedAdapter

        return RedisShardedAdapter
    if name == "RedisStreamsAdapter":
        from pyserver.trio.redis.streams import RedisStreamsAdapter

        return RedisStreamsAdapter
    raise AttributeError(f"module 'pyserver.trio.redis' has no attribute {name!r}")

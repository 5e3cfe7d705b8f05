"""``RedisShardedAdapter``: several server processes as one over Redis 7's sharded pub/sub
(``SSUBSCRIBE``/``SPUBLISH``, the only pub/sub that scales out on a Redis Cluster).

::

    from pyserver import RedisShardedAdapter, Server

    sio = Server(adapter=RedisShardedAdapter("redis://127.0.0.1:6379/0"))

It speaks what Node's ``createShardedAdapter`` (``@socket.io/redis-adapter`` 8.x, the default
``subscriptionMode: "dynamic"``) speaks, so Python and Node servers share one cluster: the
cluster protocol of ``socket.io-adapter`` (:mod:`pyserver.redis.streams`), every message a
JSON map (msgpack when it holds binary) on ``<prefix>#<nsp>#``, answers on
``<prefix>#<nsp>#<uid>#``, and a broadcast to exactly one room that is not a socket id on
``<prefix>#<nsp>#<room>#``, which a node subscribes while the room has a member there. The
node count is ``PUBSUB SHARDNUMSUB <prefix>#<nsp>#``.

The node is the streams adapter's (:mod:`pyserver.trio.redis.streams`: its bounded publish
queue, reconnection, one log line per outage) without the stream: what the streams adapter
appends goes out on pub/sub here, and is delivered to this node's sockets at once. No
connection state recovery: pub/sub keeps nothing to replay (as in Node).

On a **Redis Cluster** (the URL of any of its masters) every channel is subscribed and
published on the master serving its hash slot, with one subscribing and one publishing
connection per master; the slot map comes from ``CLUSTER SLOTS`` and is learnt again on a
``MOVED`` reply or when a master drops a channel whose slot migrated (the channel is then
subscribed where the slot went): :mod:`pyserver.trio.redis.cluster`. A standalone Redis 7
is a cluster of one master.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import trio

from pyserver.redis import streams
from pyserver.redis.codec import CodecError
from pyserver.redis.streams import ClusterMessage
from pyserver.socketio.packets import Sid
from pyserver.trio.redis.adapter import _cancelled, _why
from pyserver.trio.redis.cluster import ShardedPubSub
from pyserver.trio.redis.streams import RedisStreamsAdapter, _Item, logger
from pyserver.trio.redis.streams_namespace import StreamsNamespaceAdapter
from pyserver.trio.redis.streams_parts import NamespaceRef

if TYPE_CHECKING:
    from pyserver.trio.socketio.adapter import AdapterNamespace

__all__ = ["RedisShardedAdapter", "ShardedNamespaceAdapter"]


class ShardedNamespaceAdapter(StreamsNamespaceAdapter):
    """One namespace on a sharded node: the streams adapter's namespace, its room channels
    subscribed while their rooms have a member here (Node's dynamic mode)."""

    supports_recovery = False
    recovers_across_nodes = False
    node: RedisShardedAdapter

    def add_all(self, sid: Sid, rooms: Iterable[str]) -> None:
        rooms = list(rooms)
        new = [r for r in rooms if r != sid and not self.has_room(r)]
        super().add_all(sid, rooms)
        for room in new:
            self.node.watch_room(self, room)

    def del_(self, sid: Sid, room: str) -> None:
        super().del_(sid, room)
        if room != sid and not self.has_room(room):
            self.node.unwatch_room(self, room)

    def del_all(self, sid: Sid) -> None:
        rooms = [r for r in self.rooms_of(sid) if r != sid]
        super().del_all(sid)
        for room in rooms:
            if not self.has_room(room):
                self.node.unwatch_room(self, room)


class RedisShardedAdapter(RedisStreamsAdapter):
    """The adapter factory for ``Server(adapter=...)`` on sharded pub/sub. ``channel_prefix``
    is Node's ``channelPrefix``; the other options as :class:`RedisStreamsAdapter`'s."""

    def __init__(self, url: str, *, channel_prefix: str = "socket.io", **options: Any) -> None:
        super().__init__(url, channel_prefix=channel_prefix, sharded_pubsub=True, **options)
        self.shards = ShardedPubSub(
            url, timeout=self.requests_timeout, max_bulk=self.max_message_bytes,
            dispatch=self._dispatch,
        )  # fmt: skip
        self.shards.on_lost = self._lost
        self.shards.on_failed = lambda exc: self._state("subscribing", up=False, why=exc)

    def __call__(self, nsp: AdapterNamespace) -> StreamsNamespaceAdapter:
        adapter = ShardedNamespaceAdapter(self, nsp)
        self.adapters[nsp.name] = adapter
        self._channels[adapter.public.encode()] = adapter
        self._channels[adapter.private.encode()] = adapter
        self._changed.set()
        return adapter

    def watch_room(self, adapter: StreamsNamespaceAdapter, room: str) -> None:
        name = streams.channel(self.channel_prefix, adapter.name, room).encode()
        if name not in self._channels:
            self._channels[name] = adapter
            self._changed.set()

    def unwatch_room(self, adapter: StreamsNamespaceAdapter, room: str) -> None:
        name = streams.channel(self.channel_prefix, adapter.name, room).encode()
        if self._channels.get(name) is adapter and name not in (
            adapter.public.encode(),
            adapter.private.encode(),
        ):
            del self._channels[name]
            self._changed.set()

    async def _reader(self) -> None:
        self.reading.set()  # no stream

    def _lost(self) -> None:
        self._changed.set()  # the subscriber syncs (after learning the map again)

    async def _subscriber(self) -> None:
        """Keep every wanted channel subscribed on its master (module docstring)."""
        backoff = 0.1
        shards = self.shards
        try:
            async with trio.open_nursery() as nursery:
                shards.nursery = nursery
                while True:
                    try:
                        self._changed = trio.Event()
                        if shards.lost.is_set():
                            shards.lost = trio.Event()
                            await shards.refresh()
                        await shards.sync(set(self._channels))
                        self._state("subscribing", up=True)
                        backoff = 0.1
                        self.subscribed.set()
                        await self._changed.wait()
                        continue
                    except Exception as exc:
                        if _cancelled():
                            raise
                        shards.lost.set()
                        self.subscribed = trio.Event()
                        self._state("subscribing", up=False, why=exc)
                    backoff = await self._retrying("subscriber", backoff)
        finally:
            with trio.CancelScope(shield=True):
                await shards.aclose()

    async def _send_batch(self, batch: list[_Item]) -> None:
        """SPUBLISH each message on its channel's master; what failed is retried with
        backoff (what was sent is not sent again)."""
        left = [(a.encode(), b) for kind, a, b in batch if kind == "p"]
        backoff = 0.1
        while True:
            try:
                await self.shards.publish(left)
                self._state("publishing", up=True)
                return
            except Exception as exc:
                if _cancelled():
                    raise
                self._state("publishing", up=False, why=exc)
                backoff = await self._retrying("publisher", backoff)

    async def remote_count(self, adapter: NamespaceRef) -> int:
        """Other nodes subscribed to the namespace's channel (0 if Redis is down)."""
        try:
            with trio.fail_after(self.requests_timeout):
                count = await self.shards.shardnumsub(adapter.public.encode())
        except Exception as exc:
            logger.warning("Redis %s: cannot count the nodes (%s)", self.url, _why(exc))
            return 0
        return max(count - 1, 0)

    def send(self, message: ClusterMessage, room: str | None) -> None:
        """A broadcast to one room that is not a socket id goes to the room's channel; the
        rest to the namespace's."""
        name = streams.channel(self.channel_prefix, message.nsp)
        if room is not None and not streams.looks_like_sid(room):
            name = streams.channel(self.channel_prefix, message.nsp, room)
        self.publish(name, streams.encode_sharded(message))

    def publish_message(self, channel: str, message: ClusterMessage) -> None:
        self.publish(channel, streams.encode_sharded(message))

    def _dispatch(self, pattern: bytes | None, channel: bytes, data: bytes) -> None:
        adapter = self._channels.get(channel)
        if adapter is None:
            return
        try:
            message = streams.decode_sharded(data)
            if message.nsp != adapter.name:
                return
            if streams.is_room_operation(message):
                adapter.on_entry(message, "")
            else:
                adapter.on_message(message)
        except CodecError as exc:
            self.malformed(exc)
        except Exception:
            logger.exception("message from Redis not handled")

    def __repr__(self) -> str:
        return f"<RedisShardedAdapter {self.url} prefix={self.channel_prefix!r} uid={self.uid}>"

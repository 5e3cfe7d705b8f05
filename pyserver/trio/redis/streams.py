"""``RedisStreamsAdapter``: several server processes as one over a Redis stream, with
connection state recovery across nodes.

::

    from pyserver import RedisStreamsAdapter, Server

    sio = Server(
        adapter=RedisStreamsAdapter("redis://127.0.0.1:6379/0"),
        connection_state_recovery=True,
    )

It speaks what Node's ``@socket.io/redis-streams-adapter`` 0.3 speaks (wire:
:mod:`pyserver.redis.streams`), so Python and Node servers share one cluster, and a client of
one node can recover its session on any other (Node's or ours). One adapter is one node;
``Server.run`` starts its tasks; each namespace gets a
:class:`~pyserver.trio.redis.streams_namespace.StreamsNamespaceAdapter`.

Tasks:

* the **reader**: one Redis connection of its own, ``XREAD BLOCK COUNT <read_count>`` from the
  last entry it read (at start: the stream's last entry), so a reconnection after an outage
  goes on where it stopped: no entry is delivered twice, none is skipped unless the stream
  was trimmed past it meanwhile. The entries of one read are handled at once, in order.
* the **subscriber** (:class:`~pyserver.trio.redis.subscriber.Subscriber`): the public and
  the private channel of every namespace, for requests and answers.
* the **publisher**: everything to send (``XADD ... MAXLEN ~ <max_len>``, ``PUBLISH``,
  session ``SET``/``DEL``) goes through one bounded queue, in order, in transactions; while
  Redis is unreachable the head batch is retried with backoff, and once the queue is full new
  messages are dropped (one log line per outage). With recovery on, this node's own clients
  get a broadcast only once it is read back from the stream: while Redis is away they get it
  late (queued), and not at all when the queue dropped it.
* the **session keeper** (with recovery on): saves the sessions of sockets that connected or
  changed rooms, and all of them every third of ``max_disconnection_duration``.

Bounds: one reader connection per stream, ``read_count`` entries per read, the stream
trimmed near ``max_len`` entries (a session whose offset was trimmed is not recovered: the
client gets a new session, as with Node), the queue, pending requests, handler tasks, and
``MAX_REPLAY`` entries read to restore one session.
"""

from __future__ import annotations

import logging
import secrets
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import coredis
import trio
from coredis.tokens import PureToken

from pyserver.redis import streams
from pyserver.redis.codec import CodecError
from pyserver.redis.streams import ClusterMessage, MessageType
from pyserver.socketio.packets import Sid
from pyserver.trio.redis.adapter import _cancelled, _why
from pyserver.trio.redis.answers import HandlerBudget
from pyserver.trio.redis.streams_namespace import StreamsNamespaceAdapter
from pyserver.trio.redis.streams_parts import NamespaceRef
from pyserver.trio.redis.streams_reader import ReaderConnection, entries, take_session, text
from pyserver.trio.redis.subscriber import Subscriber

if TYPE_CHECKING:
    from pyserver.trio.socketio.adapter import AdapterNamespace
    from pyserver.trio.socketio.server import Server

__all__ = ["RedisStreamsAdapter"]

logger = logging.getLogger("pyserver.redis")

MAX_BACKOFF = 5.0
PUBLISH_BATCH = 256
RECENT = 10_000
"""Broadcast entries the reader remembers (to complete a recovery that raced with it)."""

_Item = tuple[
    str, Any, Any
]  # ("x", fields, None) | ("p", channel, payload) | ("s"/"d", key, value)


class RedisStreamsAdapter:
    """The adapter factory for ``Server(adapter=...)``, and this node's Redis connections.

    Options as Node's: ``stream_name``, ``channel_prefix``, ``max_len``, ``read_count``,
    ``block_time`` (seconds), ``session_key_prefix``; ``requests_timeout`` (seconds) bounds
    requests to the other nodes. See the module docstring for the rest."""

    def __init__(
        self,
        url: str,
        *,
        stream_name: str = "socket.io",
        channel_prefix: str = "socket.io",
        max_len: int = 10_000,
        read_count: int = 100,
        block_time: float = 5.0,
        session_key_prefix: str = "sio:session:",
        requests_timeout: float = 5.0,
        publish_queue_size: int = 10_000,
        max_pending_requests: int = 10_000,
        max_handler_tasks: int = 256,
        start_timeout: float = 5.0,
        max_message_bytes: int = 64 * 1024 * 1024,
        sharded_pubsub: bool = False,
    ) -> None:
        if requests_timeout <= 0 or block_time <= 0 or max_len < 1 or read_count < 1:
            raise ValueError("requests_timeout, block_time, max_len, read_count must be > 0")
        self.url = url
        self.stream_name = stream_name
        self.channel_prefix = channel_prefix
        self.max_len = max_len
        self.read_count = read_count
        self.block_time = block_time
        self.session_key_prefix = session_key_prefix
        self.requests_timeout = requests_timeout
        self.max_pending_requests = max_pending_requests
        #: The server-side handler tasks run for other nodes (``max_handler_tasks``).
        self.handlers = HandlerBudget(max_handler_tasks)
        self.start_timeout = start_timeout
        self.max_message_bytes = max_message_bytes
        #: SSUBSCRIBE/SPUBLISH/SHARDNUMSUB (Redis 7) instead (Node's ``useShardedPubSub``).
        self.sharded_pubsub = sharded_pubsub
        self.uid = secrets.token_hex(8)
        self._uid_bytes = self.uid.encode()
        #: Without recovery our own entries were applied when sent: not even decoded.
        self._own_delivered = True
        self.adapters: dict[str, StreamsNamespaceAdapter] = {}
        self.client: coredis.Redis[bytes] = coredis.Redis.from_url(
            url, decode_responses=False, stream_timeout=requests_timeout,
            connect_timeout=requests_timeout,
        )  # fmt: skip
        self._send, self._receive = trio.open_memory_channel[_Item](publish_queue_size)
        self._dropped = 0
        #: The id of the last entry the reader handled, as a pair (see ``replay``).
        self.position: tuple[int, int] = (0, 0)
        self._last_id = "0-0"
        self._recent: deque[tuple[tuple[int, int], str, ClusterMessage]] = deque(maxlen=RECENT)
        self._channels: dict[bytes, StreamsNamespaceAdapter] = {}
        self._changed = trio.Event()
        self._dirty: dict[tuple[str, Sid], NamespaceRef] = {}
        self._dirty_event = trio.Event()
        self._ttl_ms = 120_000
        self.subscribed = trio.Event()
        self.reading = trio.Event()
        self._running = False
        self._malformed = 0
        self._down: set[str] = set()

    # -- the factory -----------------------------------------------------------------------

    def __call__(self, nsp: AdapterNamespace) -> StreamsNamespaceAdapter:
        adapter = StreamsNamespaceAdapter(self, nsp)
        self.adapters[nsp.name] = adapter
        self._channels[adapter.public.encode()] = adapter
        self._channels[adapter.private.encode()] = adapter
        self._changed.set()
        return adapter

    def forget(self, adapter: NamespaceRef) -> None:
        if self.adapters.get(adapter.name) is adapter:
            del self.adapters[adapter.name]
        for name in (adapter.public.encode(), adapter.private.encode()):
            if self._channels.get(name) is adapter:
                del self._channels[name]
        self._changed.set()

    def new_id(self) -> str:
        return secrets.token_hex(8)

    # -- running ---------------------------------------------------------------------------

    async def run(
        self, server: Server, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """The node's tasks until cancelled; started once it reads the stream and holds its
        subscriptions (or after ``start_timeout``: it keeps trying, local clients are
        served meanwhile)."""
        if self._running:
            raise RuntimeError("this RedisStreamsAdapter is already running (one per Server)")
        self._running = True
        if server.state_recovery is not None:
            self._ttl_ms = round(server.state_recovery.max_disconnection_duration * 1000)
        self._own_delivered = server.state_recovery is None
        try:
            async with self.client, trio.open_nursery() as nursery:
                nursery.start_soon(self._reader, name="redis stream reader")
                nursery.start_soon(self._subscriber, name="redis subscriber")
                nursery.start_soon(self._publisher, name="redis publisher")
                if server.state_recovery is not None:
                    nursery.start_soon(self._keeper, name="redis session keeper")
                with trio.move_on_after(self.start_timeout):
                    await self.reading.wait()
                    await self.subscribed.wait()
                if not (self.reading.is_set() and self.subscribed.is_set()):
                    logger.warning("Redis %s not reachable yet: serving local clients", self.url)
                task_status.started()
        except BaseException:
            if _cancelled():
                await trio.lowlevel.checkpoint()
            raise
        finally:
            self._running = False

    def _state(self, what: str, up: bool, why: BaseException | None = None) -> None:
        """One log line per outage of each task."""
        if up and what in self._down:
            self._down.discard(what)
            logger.warning("Redis %s: %s again", self.url, what)
        elif not up and what not in self._down:
            self._down.add(what)
            logger.warning("Redis %s: %s failed (%s); retrying", self.url, what, _why(why))

    async def _retrying(self, what: str, backoff: float) -> float:
        await trio.sleep(backoff * (0.5 + secrets.randbelow(1000) / 1000))
        return min(backoff * 2, MAX_BACKOFF)

    # -- the stream ------------------------------------------------------------------------

    async def _reader(self) -> None:
        backoff = 0.1
        while True:
            try:
                conn = await ReaderConnection.open(self.url, self.requests_timeout)
                try:
                    if not self.reading.is_set():
                        last = await conn.call(
                            [b"XREVRANGE", self.stream_name.encode(), b"+", b"-", b"COUNT", b"1"],
                            self.requests_timeout,
                        )
                        if isinstance(last, list) and last:
                            self._moved(text(entries(last)[0][0]))
                        self.reading.set()
                    block = str(round(self.block_time * 1000)).encode()
                    count = str(self.read_count).encode()
                    while True:
                        reply = await conn.call(
                            [b"XREAD", b"COUNT", count, b"BLOCK", block, b"STREAMS",
                             self.stream_name.encode(), self._last_id.encode()],
                            self.block_time + self.requests_timeout,
                        )  # fmt: skip
                        self._state("reading the stream", up=True)
                        backoff = 0.1
                        if isinstance(reply, list):
                            for stream in reply:
                                if isinstance(stream, list) and len(stream) == 2:
                                    for entry_id, fields in entries(stream[1]):
                                        self._entry(entry_id, fields)
                finally:
                    await conn.aclose()
            except Exception as exc:
                if _cancelled():
                    raise
                self._state("reading the stream", up=False, why=exc)
                backoff = await self._retrying("reader", backoff)

    def _moved(self, entry_id: str) -> None:
        self._last_id = entry_id
        self.position = streams.offset_key(entry_id)

    def _entry(self, entry_id: str, fields: Any) -> None:
        """One stream entry, handled at once (no checkpoint between the entries of a read:
        a recovering socket sees the position it is reconciled with)."""
        self._moved(entry_id)
        if self._own_delivered and fields.get(b"uid") == self._uid_bytes:
            return  # ours, applied here when sent (with recovery on, broadcasts are not)
        try:
            message = streams.decode_entry(fields)
            if message is None:
                return
            if message.type == MessageType.BROADCAST:
                self._recent.append((self.position, entry_id, message))
            adapter = self.adapters.get(message.nsp)
            if adapter is not None:
                adapter.on_entry(message, entry_id)
        except CodecError as exc:
            self.malformed(exc)
        except Exception:
            logger.exception("stream entry %s not handled", entry_id)

    def recent_after(
        self, upto: tuple[int, int]
    ) -> Iterator[tuple[tuple[int, int], str, ClusterMessage]]:
        """Broadcast entries the reader handled after ``upto``, in order."""
        for item in self._recent:
            if item[0] > upto:
                yield item

    async def take_session(
        self, pid: str, offset: str, limit: int
    ) -> tuple[bytes | None, list[tuple[str, ClusterMessage]] | None]:
        """See :func:`~pyserver.trio.redis.streams_reader.take_session`."""
        key = self.session_key_prefix + pid
        return await take_session(self.client, self.stream_name, key, offset, limit)

    # -- publishing ------------------------------------------------------------------------

    def _queue(self, item: _Item) -> bool:
        try:
            self._send.send_nowait(item)
        except trio.WouldBlock:
            if not self._dropped:
                logger.warning("Redis publish queue full: dropping messages until it drains")
            self._dropped += 1
            return False
        return True

    def append(self, fields: list[bytes]) -> bool:
        """Queue a stream entry (never blocks); False when the queue is full."""
        return self._queue(("x", fields, None))

    def publish(self, channel: str, payload: bytes) -> bool:
        return self._queue(("p", channel, payload))

    def send(self, message: ClusterMessage, room: str | None) -> None:
        """A broadcast or a room operation: a stream entry (``room``: its only room)."""
        self.append(streams.entry_fields(message))

    def publish_message(self, channel: str, message: ClusterMessage) -> None:
        """A request or an answer: a msgpack map on ``channel``."""
        self.publish(channel, streams.encode_message(message))

    def save_session(self, pid: str, value: bytes) -> None:
        self._queue(("s", self.session_key_prefix + pid, value))

    def forget_session(self, pid: str) -> None:
        self._queue(("d", self.session_key_prefix + pid, None))

    async def _publisher(self) -> None:
        receive = self._receive
        async for first in receive:
            batch = [first]
            while len(batch) < PUBLISH_BATCH:
                try:
                    batch.append(receive.receive_nowait())
                except trio.WouldBlock:
                    break
            await self._send_batch(batch)
            if self._dropped and not receive.statistics().current_buffer_used:
                logger.warning("Redis publish queue drained (%d dropped)", self._dropped)
                self._dropped = 0

    async def _send_batch(self, batch: list[_Item]) -> None:
        backoff = 0.1
        while True:
            try:
                # one transaction: a batch cut by a lost connection was applied whole or not
                # at all, so its retry adds no entry twice (only a reply lost after EXEC can)
                async with self.client.pipeline(transaction=True) as pipe:
                    for kind, a, b in batch:
                        if kind == "x":
                            pipe.xadd(
                                self.stream_name,
                                dict(zip(a[::2], a[1::2], strict=True)),
                                trim_strategy=PureToken.MAXLEN,
                                trim_operator=PureToken.APPROXIMATELY,
                                threshold=self.max_len,
                            )
                        elif kind == "p" and self.sharded_pubsub:
                            pipe.spublish(a, b)
                        elif kind == "p":
                            pipe.publish(a, b)
                        elif kind == "s":
                            pipe.set(a, b, px=self._ttl_ms)
                        else:
                            pipe.delete([a])
                self._state("publishing", up=True)
                return
            except Exception as exc:
                self._state("publishing", up=False, why=exc)
                backoff = await self._retrying("publisher", backoff)

    # -- sessions --------------------------------------------------------------------------

    def session_changed(self, adapter: NamespaceRef, sid: Sid) -> None:
        self._dirty[(adapter.name, sid)] = adapter
        self._dirty_event.set()

    async def _keeper(self) -> None:
        refresh = self._ttl_ms / 3000
        deadline = trio.current_time() + refresh
        while True:
            with trio.move_on_at(deadline):
                await self._dirty_event.wait()
            self._dirty_event = trio.Event()
            if trio.current_time() >= deadline:
                deadline = trio.current_time() + refresh
                for adapter in list(self.adapters.values()):
                    for sid in list(adapter.sockets):
                        self._dirty[(adapter.name, sid)] = adapter
            dirty, self._dirty = self._dirty, {}
            for (_, sid), changed in dirty.items():
                found = changed.session_of(sid)
                if found is not None:
                    self.save_session(*found)
            await trio.sleep(0.01)  # changes of one burst saved together

    # -- pub/sub ---------------------------------------------------------------------------

    async def _subscriber(self) -> None:
        backoff = 0.1
        while True:
            try:
                channels = set(self._channels)
                self._changed = trio.Event()
                conn = await Subscriber.connect(
                    self.url, timeout=self.requests_timeout, keepalive=5.0,
                    max_bulk=self.max_message_bytes,
                )  # fmt: skip
                try:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(conn.run, self._dispatch, name="redis subscriber read")
                        await self._subscribe(conn, channels)
                        self._state("subscribing", up=True)
                        backoff = 0.1
                        self.subscribed.set()
                        while True:
                            await self._changed.wait()
                            self._changed = trio.Event()
                            wanted = set(self._channels)
                            await self._subscribe(conn, wanted - channels)
                            gone = channels - wanted
                            if gone and self.sharded_pubsub:
                                await conn.sunsubscribe(gone)
                            elif gone:
                                await conn.unsubscribe(gone, ())
                            channels = wanted
                finally:
                    await conn.aclose()
            except Exception as exc:
                if _cancelled():
                    raise
                self.subscribed = trio.Event()
                self._state("subscribing", up=False, why=exc)
            backoff = await self._retrying("subscriber", backoff)

    async def _subscribe(self, conn: Subscriber, channels: set[bytes]) -> None:
        if self.sharded_pubsub:
            await conn.ssubscribe(channels)
        else:
            await conn.subscribe(channels, ())

    def _dispatch(self, pattern: bytes | None, channel: bytes, data: bytes) -> None:
        adapter = self._channels.get(channel)
        if adapter is None:
            return
        try:
            adapter.on_message(streams.decode_message(data))
        except CodecError as exc:
            self.malformed(exc)
        except Exception:
            logger.exception("message from Redis not handled")

    def malformed(self, exc: BaseException) -> None:
        self._malformed += 1
        if self._malformed % 1000 == 1:
            logger.warning("dropped a malformed message (%d so far): %s", self._malformed, exc)

    async def remote_count(self, adapter: NamespaceRef) -> int:
        """Other nodes subscribed to the namespace's public channel (0 if Redis is down)."""
        try:
            with trio.fail_after(self.requests_timeout):
                if self.sharded_pubsub:
                    counts = await self.client.pubsub_shardnumsub(adapter.public)
                else:
                    counts = await self.client.pubsub_numsub(adapter.public)
        except Exception as exc:
            logger.warning("Redis %s: cannot count the nodes (%s)", self.url, _why(exc))
            return 0
        return max(counts.get(adapter.public.encode(), 0) - 1, 0)

    def __repr__(self) -> str:
        return f"<RedisStreamsAdapter {self.url} stream={self.stream_name!r} uid={self.uid}>"

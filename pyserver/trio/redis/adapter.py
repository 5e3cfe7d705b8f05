"""``RedisAdapter``: several server processes behaving as one, over Redis pub/sub.

::

    from pyserver import RedisAdapter, Server

    sio = Server(adapter=RedisAdapter("redis://127.0.0.1:6379/0"))

It speaks the protocol of Node's ``@socket.io/redis-adapter`` 8.x (classic pub/sub; see
:mod:`pyserver.redis.codec`), so Python and Node servers can share one cluster (same
``key``). One ``RedisAdapter`` is one node: ``Server.run`` starts its tasks in the server's
nursery, and each namespace (static or dynamic, made before or after the start) gets a
:class:`~pyserver.trio.redis.remote.RedisNamespaceAdapter` with its channels.

Tasks:

* the **subscriber**: one Redis connection of its own (:mod:`pyserver.trio.redis.subscriber`),
  subscribed to every namespace's request and response channels and its broadcast pattern,
  plus the heartbeat channel. New namespaces are subscribed on the fly, and the channels of a
  namespace removed (an empty dynamic child, with ``cleanup_empty_child_namespaces``)
  unsubscribed. Every message of a
  read from the socket is handled at once, before any other task runs, so a burst's local
  deliveries reach each client in one write; the socket is read no faster than messages are
  handled, so a node that falls behind leaves its backlog in Redis (whose
  ``client-output-buffer-limit pubsub`` cuts a hopeless one: it then reconnects), never in
  its own memory. A message over ``max_message_bytes`` drops the connection (logged).
* the **publisher**: ``emit`` never blocks, so everything to publish goes through one bounded
  queue (``publish_queue_size`` messages, ``publish_queue_bytes`` bytes) drained in order.
  What is queued goes out in pipelines of up to ``PUBLISH_BATCH`` messages. While Redis is
  unreachable the head batch is retried with backoff; once the queue is full, new messages
  are dropped (one log line per outage) and local clients are served as usual.
* the **heartbeat**: every ``heartbeat_interval`` seconds a Python node publishes
  ``{"uid", "type": "heartbeat", "interval"}`` (JSON) on ``<key>-heartbeat#``, which Node
  servers never read (:mod:`pyserver.redis.nodes`).

Counting the nodes to wait for (requests: ``fetch_sockets``, ``server_side_emit_with_ack``,
broadcasts with acks): as Node does, ``PUBSUB NUMSUB`` of the namespace's request channel,
minus this node, minus each **stale** Python node still subscribed. A Python node is stale
when we heard no heartbeat from it for twice the interval it announced (while subscribed
ourselves: see :mod:`pyserver.redis.nodes`); it is still subscribed when ``NUMSUB`` of
its own response channel (``<key>-response#<nsp>#<uid>#``, which every Python node
subscribes) is not 0 (one ``NUMSUB`` call gives both). So a hung node (its connection open,
its tasks stuck) is not waited for, a crashed one is not counted by Redis anyway, and Node
servers (no heartbeat) are counted as Node counts them. A stale node that answers after all
(Python responses carry ``uid``) is counted back in.

Redis restarts and network cuts: the subscriber reconnects with exponential backoff (0.1 s
to 5 s) and resubscribes everything; the publisher retries; each state change is logged once
(logger ``pyserver.redis``). Malformed messages are dropped and counted (logged the first
time and then every 1000th). A request made while Redis is unreachable gets this node's
answer only (logged).
"""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING

import coredis
import trio

from pyserver.logtext import shown
from pyserver.redis import codec
from pyserver.redis.nodes import NodeTable, heartbeat_message
from pyserver.trio.redis.answers import HandlerBudget
from pyserver.trio.redis.remote import RedisNamespaceAdapter, new_uid
from pyserver.trio.redis.subscriber import Subscriber

if TYPE_CHECKING:
    from pyserver.trio.socketio.adapter import AdapterNamespace
    from pyserver.trio.socketio.server import Server

__all__ = ["RedisAdapter"]

logger = logging.getLogger("pyserver.redis")

MAX_BACKOFF = 5.0
PUBLISH_BATCH = 256
"""At most this many queued messages go to Redis in one pipeline."""
MAX_NODES = 10_000
"""Python nodes remembered (by heartbeat); past this, the ones unheard of longest go."""


class RedisAdapter:
    """The adapter factory for ``Server(adapter=...)``, and this node's Redis connection.

    ``url``: ``redis://[:password@]host:port/db`` (or ``rediss://``, ``unix://``). ``key``:
    the channel prefix (Node's ``key`` option). ``requests_timeout``: how long requests wait
    for the other nodes (seconds; also the bound of a broadcast with acks without
    ``timeout(...)``). See the module docstring for the rest."""

    def __init__(
        self,
        url: str,
        *,
        key: str = "socket.io",
        requests_timeout: float = 5.0,
        heartbeat_interval: float = 5.0,
        publish_queue_size: int = 10_000,
        publish_queue_bytes: int = 64 * 1024 * 1024,
        max_pending_requests: int = 10_000,
        max_handler_tasks: int = 256,
        start_timeout: float = 5.0,
        keepalive_interval: float = 5.0,
        max_message_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        if requests_timeout <= 0 or heartbeat_interval <= 0:
            raise ValueError("requests_timeout and heartbeat_interval must be > 0")
        self.url = url
        self.key = key
        self.uid = new_uid()
        self.requests_timeout = requests_timeout
        self.heartbeat_interval = heartbeat_interval
        self.max_pending_requests = max_pending_requests
        #: The server-side handler tasks run for other nodes (``max_handler_tasks``).
        self.handlers = HandlerBudget(max_handler_tasks)
        self.start_timeout = start_timeout
        self.publish_queue_bytes = publish_queue_bytes
        self.adapters: dict[str, RedisNamespaceAdapter] = {}
        #: The other Python nodes, by their heartbeats.
        self.nodes = NodeTable(self.uid, MAX_NODES)
        self.keepalive_interval = keepalive_interval
        self.max_message_bytes = max_message_bytes
        # the publisher's and the requests' connection; a Redis that stops answering (a
        # network cut without a reset, a hung server) is noticed by the subscriber's PING
        # after keepalive_interval idle seconds, unanswered after requests_timeout
        self.client: coredis.Redis[bytes] = coredis.Redis.from_url(
            url,
            decode_responses=False,
            stream_timeout=requests_timeout,
            connect_timeout=requests_timeout,
        )
        self._send, self._receive = trio.open_memory_channel[tuple[str, bytes]](publish_queue_size)
        self._queued_bytes = 0
        self._dropped = 0
        #: Messages for other nodes dropped (queue full) since the start (for the metrics).
        self.dropped_total = 0
        #: Times the subscriber got every subscription back after losing them (metrics).
        self.reconnects = 0
        self._routes: dict[bytes, tuple[RedisNamespaceAdapter, bool]] = {}
        self._patterns: dict[bytes, RedisNamespaceAdapter] = {}
        self._heartbeat_channel = codec.heartbeat_channel(key)
        self._heartbeat_bytes = self._heartbeat_channel.encode()
        self._changed = trio.Event()
        self.subscribed = trio.Event()
        """Set while the subscriber holds every subscription (replaced when it is lost)."""
        self._running = False
        self._malformed = 0
        self._redis_down = False
        self._subscribed_since = 0.0
        self._count_failing = False

    @property
    def redis_down(self) -> bool:
        """True from a lost subscription until the subscriber is back."""
        return self._redis_down

    @property
    def publish_queued(self) -> tuple[int, int]:
        """Messages waiting in the publish queue, and their bytes (for monitoring)."""
        return self._send.statistics().current_buffer_used, self._queued_bytes

    @property
    def dropped(self) -> int:
        """Messages for other nodes dropped (queue full) in the current outage."""
        return self._dropped

    # -- the factory -------------------------------------------------------------------------

    def __call__(self, nsp: AdapterNamespace) -> RedisNamespaceAdapter:
        adapter = RedisNamespaceAdapter(self, nsp)
        self.adapters[nsp.name] = adapter
        ch = adapter.channels
        self._routes[ch.request.encode()] = (adapter, True)
        self._routes[ch.response.encode()] = (adapter, False)
        self._routes[ch.specific_response(self.uid).encode()] = (adapter, False)
        self._patterns[ch.pattern.encode()] = adapter
        self._changed.set()
        return adapter

    def forget(self, adapter: RedisNamespaceAdapter) -> None:
        """``adapter``'s namespace is gone (``adapter.close()``): its channels are
        unsubscribed (unless a namespace of that name took them again meanwhile)."""
        if self.adapters.get(adapter.name) is adapter:
            del self.adapters[adapter.name]
        ch = adapter.channels
        for channel in (ch.request, ch.response, ch.specific_response(self.uid)):
            key = channel.encode()
            route = self._routes.get(key)
            if route is not None and route[0] is adapter:
                del self._routes[key]
        pattern = ch.pattern.encode()
        if self._patterns.get(pattern) is adapter:
            del self._patterns[pattern]
        self._changed.set()

    # -- running -----------------------------------------------------------------------------

    async def run(
        self, server: Server, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """The node's tasks, until cancelled (``Server.run`` starts it). Started once the
        subscriptions are in place, or after ``start_timeout`` if Redis cannot be reached
        (it keeps trying; local clients are served meanwhile)."""
        if self._running:
            raise RuntimeError("this RedisAdapter is already running (one per Server)")
        self._running = True
        try:
            await self._run(task_status)
        except BaseException:
            if _cancelled():  # see _subscriber: no library noise on the way out
                await trio.lowlevel.checkpoint()
            raise
        finally:
            self._running = False

    async def _run(self, task_status: trio.TaskStatus[None]) -> None:
        async with self.client, trio.open_nursery() as nursery:
            nursery.start_soon(self._subscriber, name="redis subscriber")
            nursery.start_soon(self._publisher, name="redis publisher")
            nursery.start_soon(self._heartbeat, name="redis heartbeat")
            with trio.move_on_after(self.start_timeout):
                await self.subscribed.wait()
            if not self.subscribed.is_set():
                logger.warning("Redis %s not reachable yet: serving local clients", self.url)
            task_status.started()

    async def wait_subscribed(self) -> None:
        """Wait until every namespace's channels are subscribed."""
        while True:
            event = self.subscribed
            await event.wait()
            if not self._changed.is_set() and event is self.subscribed:
                return
            await trio.sleep(0.01)

    def _subscriptions(self) -> tuple[list[bytes], list[bytes]]:
        return [*self._routes, self._heartbeat_channel.encode()], list(self._patterns)

    async def _subscriber(self) -> None:
        backoff = 0.1
        while True:
            try:
                channels, patterns = self._subscriptions()
                self._changed = trio.Event()
                conn = await Subscriber.connect(
                    self.url,
                    timeout=self.requests_timeout,
                    keepalive=self.keepalive_interval,
                    max_bulk=self.max_message_bytes,
                )
                try:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(conn.run, self._dispatch, name="redis subscriber read")
                        await conn.subscribe(channels, patterns)
                        backoff = 0.1
                        self._subscribed_since = trio.current_time()
                        self._state(up=True)
                        self.subscribed.set()
                        await self._subscribe_new(conn, set(channels), set(patterns))
                finally:
                    await conn.aclose()
            except BaseException as exc:
                if _cancelled():
                    await trio.lowlevel.checkpoint()
                    raise
                if not isinstance(exc, Exception):
                    raise
                self.subscribed = trio.Event()
                self._state(up=False, why=exc)
            await trio.sleep(backoff * (0.5 + secrets.randbelow(1000) / 1000))
            backoff = min(backoff * 2, MAX_BACKOFF)

    async def _subscribe_new(
        self, conn: Subscriber, channels: set[bytes], patterns: set[bytes]
    ) -> None:
        """Subscribe the channels of namespaces made after the subscriber connected, and
        unsubscribe those of namespaces removed since."""
        while True:
            await self._changed.wait()
            self.subscribed = trio.Event()
            self._changed = trio.Event()
            wanted_channels, wanted_patterns = self._subscriptions()
            new_channels = [c for c in wanted_channels if c not in channels]
            new_patterns = [p for p in wanted_patterns if p not in patterns]
            gone_channels = channels.difference(wanted_channels)
            gone_patterns = patterns.difference(wanted_patterns)
            await conn.subscribe(new_channels, new_patterns)
            channels.update(new_channels)
            patterns.update(new_patterns)
            if gone_channels or gone_patterns:
                channels.difference_update(gone_channels)
                patterns.difference_update(gone_patterns)
                await conn.unsubscribe(gone_channels, gone_patterns)
            self.subscribed.set()

    def _state(self, *, up: bool, why: BaseException | None = None) -> None:
        if up and self._redis_down:
            self._redis_down = False
            self.reconnects += 1
            logger.warning("Redis %s: reconnected and resubscribed", self.url)
        elif up:
            logger.info("Redis %s: subscribed (node %s)", self.url, self.uid)
        elif not self._redis_down:
            self._redis_down = True
            logger.warning("Redis %s: connection lost (%s); reconnecting", self.url, _why(why))

    def _dispatch(self, pattern: bytes | None, channel: bytes, data: bytes) -> None:
        """One message from Redis, handled at once (called by the subscriber's reader for
        every message of a read before any other task runs: see
        :mod:`pyserver.trio.redis.subscriber`)."""
        try:
            if pattern is not None:
                adapter = self._patterns.get(pattern)
                if adapter is not None:
                    adapter.on_broadcast(channel.decode("utf-8", "replace"), data)
                return
            route = self._routes.get(channel)
            if route is not None:
                adapter, is_request = route
                if is_request:
                    adapter.on_request(data)
                else:
                    adapter.on_response(data)
            elif channel == self._heartbeat_bytes:
                self.nodes.heartbeat(data, trio.current_time())
        except codec.CodecError as exc:
            self.malformed(exc)
        except Exception:
            logger.exception("message from Redis not handled")

    def malformed(self, exc: BaseException) -> None:
        self._malformed += 1
        if self._malformed % 1000 == 1:
            logger.warning(
                "dropped a malformed message from Redis (%d so far): %s",
                self._malformed,
                shown(str(exc)),
            )

    # -- publishing --------------------------------------------------------------------------

    def publish(self, channel: str, payload: bytes) -> bool:
        """Queue ``payload`` for ``channel`` (never blocks); False if the queue is full."""
        if self._queued_bytes + len(payload) > self.publish_queue_bytes:
            return self._drop()
        try:
            self._send.send_nowait((channel, payload))
        except trio.WouldBlock:
            return self._drop()
        self._queued_bytes += len(payload)
        return True

    def _drop(self) -> bool:
        if not self._dropped:
            logger.warning(
                "Redis publish queue full: dropping messages for other nodes until it drains"
            )
        self._dropped += 1
        self.dropped_total += 1
        return False

    async def _publisher(self) -> None:
        receive = self._receive
        async for first in receive:
            batch = [first]
            while len(batch) < PUBLISH_BATCH:
                try:
                    batch.append(receive.receive_nowait())
                except trio.WouldBlock:
                    break
            await self._publish(batch)
            self._queued_bytes -= sum(len(payload) for _, payload in batch)
            if self._dropped and self._queued_bytes == 0:
                logger.warning("Redis publish queue drained (%d messages dropped)", self._dropped)
                self._dropped = 0

    async def _publish(self, batch: list[tuple[str, bytes]]) -> None:
        """Publish in order, one round trip per batch (a pipeline); retried with backoff
        while Redis is unreachable (a batch cut in the middle may then repeat a message)."""
        backoff = 0.1
        failing = False
        while True:
            try:
                if len(batch) == 1:
                    await self.client.publish(*batch[0])
                else:
                    async with self.client.pipeline(transaction=False) as pipe:
                        for channel, payload in batch:
                            pipe.publish(channel, payload)
                break
            except Exception as exc:
                if not failing:
                    failing = True
                    logger.warning("Redis %s: publish failed (%s); retrying", self.url, _why(exc))
                await trio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
        if failing:
            logger.warning("Redis %s: publishing again", self.url)

    # -- nodes -------------------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        payload = heartbeat_message(self.uid, self.heartbeat_interval)
        while True:
            self.publish(self._heartbeat_channel, payload)
            await trio.sleep(self.heartbeat_interval)

    def stale_nodes(self) -> list[str]:
        """Python nodes whose heartbeats stopped (see :mod:`pyserver.redis.nodes`)."""
        return self.nodes.stale(trio.current_time(), self._subscribed_since)

    async def remote_count(self, adapter: RedisNamespaceAdapter) -> tuple[int, frozenset[str]]:
        """How many other nodes will answer a request in ``adapter``'s namespace, and the
        stale nodes left out (see the module docstring); ``(0, ...)`` if Redis is down."""
        stale = self.stale_nodes()
        ch = adapter.channels
        names = [ch.request, ch.specific_response(self.uid)]
        names += [ch.specific_response(uid) for uid in stale]
        try:
            with trio.fail_after(self.requests_timeout):
                counts = await self.client.pubsub_numsub(*names)
        except Exception as exc:
            if not self._count_failing:
                self._count_failing = True
                logger.warning(
                    "Redis %s: cannot count the nodes (%s): requests get this node's answers "
                    "only until it is back",
                    self.url,
                    _why(exc),
                )
            return 0, frozenset()
        self._count_failing = False
        total = counts.get(names[0].encode(), 0)
        me = min(counts.get(names[1].encode(), 0), 1)
        hung = frozenset(
            uid
            for uid, name in zip(stale, names[2:], strict=True)
            if counts.get(name.encode(), 0) > 0
        )
        return max(total - me - len(hung), 0), hung

    def __repr__(self) -> str:
        return f"<RedisAdapter {self.url} key={self.key!r} uid={self.uid}>"


def _cancelled() -> bool:
    """Whether the current task is being cancelled."""
    return trio.current_effective_deadline() == float("-inf")


def _why(exc: BaseException | None) -> str:
    """One line for an exception (the first leaf of an exception group)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}" if exc is not None else "unknown"

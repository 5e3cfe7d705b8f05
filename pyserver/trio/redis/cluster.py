"""Sharded pub/sub on a Redis Cluster (or a standalone Redis 7): every ``SSUBSCRIBE`` and
``SPUBLISH`` goes to the master that serves its channel's hash slot.

:class:`ShardedPubSub` is the I/O of :class:`~pyserver.trio.redis.sharded.RedisShardedAdapter`:

* the **slot map** (:class:`~pyserver.redis.slots.SlotMap`): learnt with ``CLUSTER SLOTS``
  from the URL's Redis (or, later, from any master it knows), and learnt again whenever a
  reply says it is stale. A Redis without cluster support is one master for every slot: the
  same code serves a standalone Redis 7.
* **subscriptions**: one :class:`~pyserver.trio.redis.subscriber.Subscriber` per master that
  owns a wanted channel (the channels of one master on its connection, nothing else).
  :meth:`ShardedPubSub.sync` makes the connections hold exactly the wanted channels. A
  channel is *lost* when its master refuses it (``MOVED``: the map was stale) or drops it
  (``sunsubscribe`` pushed when its slot migrates), or when its master's connection fails;
  then :attr:`ShardedPubSub.lost` is set, and the owner refreshes the map and syncs again,
  which subscribes the channel where its slot went (or retries with backoff while its
  master is unreachable: the other masters' channels are held meanwhile).
* **publishing**: one command connection per master; a batch is split by master, in order,
  one pipeline each (:meth:`ShardedPubSub.publish`); a ``MOVED`` reply refreshes the map
  and sends that message again to its new master. Only what failed is retried.
* **counting**: ``PUBSUB SHARDNUMSUB`` asked of the channel's master (a master counts only
  its own subscribers, and no other has any for that channel).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import urlsplit

import trio

from pyserver.redis.resp import RespError
from pyserver.redis.slots import Address, SlotMap, key_slot, parse_cluster_slots, parse_redirect
from pyserver.trio.redis.streams_reader import ReaderConnection
from pyserver.trio.redis.subscriber import Dispatch, Subscriber

__all__ = ["ShardedPubSub"]

logger = logging.getLogger("pyserver.redis")

MAX_CACHED = 100_000
"""Channels whose master is remembered between two changes of the map."""


class _Link:
    """A master's subscribed connection and the channels it holds."""

    def __init__(self, addr: Address, conn: Subscriber) -> None:
        self.addr = addr
        self.conn = conn
        self.channels: set[bytes] = set()
        self.scope = trio.CancelScope()


class _Commands:
    """A master's command connection, one pipeline at a time."""

    def __init__(self, conn: ReaderConnection) -> None:
        self.conn = conn
        self.lock = trio.Lock()


class ShardedPubSub:
    """See the module docstring. ``dispatch`` gets every message; ``nursery`` (set before
    :meth:`sync`) runs the subscribed connections' readers."""

    def __init__(self, url: str, *, timeout: float, max_bulk: int, dispatch: Dispatch) -> None:
        self.url = url
        self.timeout = timeout
        self.max_bulk = max_bulk
        self.dispatch = dispatch
        parts = urlsplit(url)
        self._scheme = "rediss" if parts.scheme == "rediss" else "redis"
        self._userinfo = parts.netloc.rpartition("@")[0]
        self.seed: Address = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self.slots: SlotMap | None = None
        self._owners: dict[bytes, Address | None] = {}
        self._links: dict[Address, _Link] = {}
        self._commands: dict[Address, _Commands] = {}
        self._refreshing = trio.Lock()
        #: Set when a channel was lost (see the module docstring); the owner replaces it.
        self.lost = trio.Event()
        self.on_lost: Callable[[], None] = lambda: None
        #: Called with the error when a subscribed connection fails (the owner logs it once
        #: per outage).
        self.on_failed: Callable[[BaseException], None] = lambda exc: None
        self.nursery: trio.Nursery | None = None

    # -- the map -----------------------------------------------------------------------------

    def url_of(self, addr: Address) -> str:
        """The URL of a master: the configured one on a standalone Redis; else its address
        with the configured scheme and credentials (a cluster has database 0 only)."""
        if self.slots is not None and self.slots.standalone:
            return self.url
        at = f"{self._userinfo}@" if self._userinfo else ""
        host = f"[{addr[0]}]" if ":" in addr[0] else addr[0]
        return f"{self._scheme}://{at}{host}:{addr[1]}"

    def owner(self, channel: bytes) -> Address | None:
        """The master of ``channel``'s slot by the current map (None: no map or no owner)."""
        try:
            return self._owners[channel]
        except KeyError:
            pass
        if self.slots is None:
            return None
        if len(self._owners) >= MAX_CACHED:
            self._owners.clear()
        found = self._owners[channel] = self.slots.owner(key_slot(channel))
        return found

    async def refresh(self) -> None:
        """Learn the slot map from the URL's Redis, or else from any master known."""
        async with self._refreshing:
            known = self.slots.masters if self.slots is not None else []
            error: BaseException | None = None
            for addr in dict.fromkeys([self.seed, *known]):
                url = self.url if addr == self.seed else self.url_of(addr)
                try:
                    conn = await ReaderConnection.open(url, self.timeout)
                    try:
                        (reply,) = await conn.calls([[b"CLUSTER", b"SLOTS"]], self.timeout)
                    finally:
                        await conn.aclose()
                    if isinstance(reply, RespError):
                        if "cluster support disabled" not in reply.message:
                            raise ConnectionError(f"CLUSTER SLOTS: {reply.message}")
                        slots = SlotMap.single(self.seed)
                    else:
                        slots = SlotMap(parse_cluster_slots(reply, addr[0]))
                except (OSError, ConnectionError, ValueError, trio.TooSlowError) as exc:
                    error = error or exc
                    continue
                if self.slots is None or slots.masters != self.slots.masters:
                    shape = f"a cluster of {len(slots.masters)} masters"
                    logger.info(
                        "Redis %s: %s", self.url, "standalone" if slots.standalone else shape
                    )
                self.slots = slots
                self._owners.clear()
                return
            raise ConnectionError(f"no master answered CLUSTER SLOTS ({error})")

    # -- subscriptions -----------------------------------------------------------------------

    def _lose(self, link: _Link, channel: bytes) -> None:
        if channel in link.channels:
            link.channels.discard(channel)
            self.lost.set()
            self.on_lost()

    async def _open(self, addr: Address) -> _Link:
        conn = await Subscriber.connect(
            self.url_of(addr), timeout=self.timeout, keepalive=5.0, max_bulk=self.max_bulk
        )
        link = _Link(addr, conn)
        conn.lost = lambda channel: self._lose(link, channel)
        self._links[addr] = link
        assert self.nursery is not None
        self.nursery.start_soon(self._read, link, name=f"redis subscriber {addr[0]}:{addr[1]}")
        return link

    async def _read(self, link: _Link) -> None:
        try:
            with link.scope:
                await link.conn.run(self.dispatch)
        except Exception as exc:  # the channels are lost: sync opens a new connection
            self.on_failed(exc)
        finally:
            if self._links.get(link.addr) is link:
                del self._links[link.addr]
            held, link.channels = link.channels, set()
            with trio.CancelScope(shield=True):
                await link.conn.aclose()
            if held:
                self.lost.set()
                self.on_lost()

    def _drop(self, link: _Link) -> None:
        """Close ``link`` (its reader ends); its channels are forgotten, not lost."""
        link.channels = set()
        link.scope.cancel()
        if self._links.get(link.addr) is link:
            del self._links[link.addr]

    async def sync(self, wanted: set[bytes]) -> None:
        """Subscribe each wanted channel on its master, unsubscribe the others; a master
        that fails does not keep the others from being synced (its error is raised last)."""
        if self.slots is None:
            await self.refresh()
        plan: dict[Address, set[bytes]] = {}
        error: BaseException | None = None
        for channel in wanted:
            addr = self.owner(channel)
            if addr is None:
                error = ConnectionError(f"slot {key_slot(channel)} has no master")
                self.lost.set()
                continue
            plan.setdefault(addr, set()).add(channel)
        for addr, link in list(self._links.items()):
            keep = plan.get(addr, set())
            gone = link.channels - keep
            try:
                if not keep:
                    self._drop(link)
                elif gone:
                    link.channels -= gone
                    await link.conn.sunsubscribe(gone)
            except Exception as exc:
                self._drop(link)
                error = error or exc
        for addr, channels in plan.items():
            held = self._links.get(addr)
            try:
                if held is None:
                    held = await self._open(addr)
                new = channels - held.channels
                if new:
                    held.channels |= new
                    await held.conn.ssubscribe(new)
            except Exception as exc:
                if held is not None:  # in an unknown state: the next sync starts afresh
                    self._drop(held)
                error = error or exc
        if error is not None:
            raise error

    # -- commands ----------------------------------------------------------------------------

    async def _call(self, addr: Address, commands: list[list[bytes]]) -> list[object]:
        link = self._commands.get(addr)
        if link is None:
            link = _Commands(await ReaderConnection.open(self.url_of(addr), self.timeout))
            self._commands[addr] = link
        async with link.lock:
            try:
                return list(await link.conn.calls(commands, self.timeout))
            except BaseException:
                if self._commands.get(addr) is link:
                    del self._commands[addr]
                await link.conn.aclose()
                raise

    async def publish(self, batch: list[tuple[bytes, bytes]]) -> None:
        """``SPUBLISH`` each ``(channel, payload)``, in order per master; returns once every
        one was accepted. A failing master raises after the others were sent; ``batch`` is
        left holding what was not sent (for the caller's retry)."""
        error: BaseException | None = None
        for _ in range(3):  # redirections chased before the caller's backoff
            if self.slots is None:
                await self.refresh()
            groups: dict[Address | None, list[tuple[bytes, bytes]]] = {}
            for item in batch:
                groups.setdefault(self.owner(item[0]), []).append(item)
            left: list[tuple[bytes, bytes]] = groups.pop(None, [])
            stale = bool(left)
            for addr, items in groups.items():
                assert addr is not None
                try:
                    replies = await self._call(addr, [[b"SPUBLISH", c, p] for c, p in items])
                except Exception as exc:
                    error = error or exc
                    left += items
                    continue
                for item, reply in zip(items, replies, strict=True):
                    if not isinstance(reply, RespError):
                        continue
                    if reply.message.startswith(("CLUSTERDOWN", "TRYAGAIN", "LOADING")):
                        error = error or ConnectionError(f"{addr[0]}:{addr[1]}: {reply.message}")
                        left.append(item)  # the cluster is failing over or starting: later
                    elif parse_redirect(reply.message) is not None:
                        stale = True
                        left.append(item)
                    else:
                        logger.warning("Redis %s: SPUBLISH refused (%s)", self.url, reply.message)
            batch[:] = left
            if not batch:
                return
            if stale:
                await self.refresh()
                self.lost.set()  # subscriptions may be on the wrong masters too
                self.on_lost()
            if error is not None:
                raise error
        raise ConnectionError("SPUBLISH still redirected after refreshing the slot map")

    async def shardnumsub(self, channel: bytes) -> int:
        """Subscribers of ``channel`` (``PUBSUB SHARDNUMSUB`` on its master)."""
        if self.slots is None:
            await self.refresh()
        addr = self.owner(channel)
        if addr is None:
            raise ConnectionError(f"slot {key_slot(channel)} has no master")
        (reply,) = await self._call(addr, [[b"PUBSUB", b"SHARDNUMSUB", channel]])
        if isinstance(reply, list) and len(reply) == 2 and isinstance(reply[1], int):
            return reply[1]
        raise ConnectionError(f"PUBSUB SHARDNUMSUB: unexpected reply {reply!r:.80}")

    async def aclose(self) -> None:
        for link in list(self._links.values()):
            link.scope.cancel()
        for commands in list(self._commands.values()):
            await commands.conn.aclose()
        self._commands.clear()

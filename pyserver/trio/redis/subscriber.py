"""The subscriber's own Redis connection: a small RESP2 reader (sans-IO) and a Trio shell.

Why not the Redis client's pub/sub object: it reads the socket in a task of its own and hands
each message on through two unbounded in-memory queues, with a scheduler checkpoint per
message and per queue. A node that falls behind then (1) buffers without bound, in Python,
what Redis would otherwise hold (and cut, at its ``client-output-buffer-limit pubsub``), and
(2) yields after every message, so its WebSocket writers run once per message: one write
system call per recipient per message, exactly when batching would let it catch up. Here one
read from the socket is parsed whole and every message in it is dispatched at once, so the
local deliveries of a burst are queued before any writer runs (a writer sends them in one
call); and the socket is read only as fast as messages are handled, so a slow node leaves its
backlog in Redis.

:class:`~pyserver.redis.resp.RespReader` is the sans-IO part. :class:`Subscriber` owns a
trio stream: ``connect`` (AUTH when the URL has a password), ``subscribe`` (waits for every
acknowledgement), and ``run(dispatch)``, which reads until the connection fails, pinging an
idle Redis every ``keepalive`` seconds and failing when an answer takes longer than
``timeout``.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterable
from typing import Final
from urllib.parse import unquote, urlsplit

import trio

from pyserver.redis.resp import Reply, RespError, RespProtocolError, RespReader, command
from pyserver.redis.slots import key_slot, parse_redirect

__all__ = ["Dispatch", "Lost", "Subscriber", "SubscriberError", "open_stream"]

Dispatch = Callable[[bytes | None, bytes, bytes], None]
"""``dispatch(pattern, channel, data)``: one published message (pattern None for SUBSCRIBE)."""
Lost = Callable[[bytes], None]
"""``lost(channel)``: a sharded channel this connection does not hold (any more): Redis sent
``sunsubscribe`` for it (ours acknowledged, or a Redis Cluster's slot moved away), or
answered its SSUBSCRIBE with ``MOVED`` (the slot is another master's)."""

READ_SIZE: Final = 256 * 1024


class SubscriberError(Exception):
    """The connection to Redis broke, or Redis sent what a subscriber cannot accept."""


async def open_stream(url: str) -> tuple[trio.abc.Stream, list[bytes]]:
    """A stream to the Redis of ``url`` and the AUTH command's words for it (empty without a
    password): ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` (TLS, default
    verification) or ``unix://[[user]:password@]/path``."""
    parts = urlsplit(url)
    password = unquote(parts.password) if parts.password is not None else None
    auth: list[bytes] = []
    if password is not None:
        auth = [b"AUTH"]
        if parts.username:
            auth.append(unquote(parts.username).encode())
        auth.append(password.encode())
    if parts.scheme == "unix":
        return await trio.open_unix_socket(parts.path), auth
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 6379
    if parts.scheme == "rediss":
        context = ssl.create_default_context()
        return await trio.open_ssl_over_tcp_stream(host, port, ssl_context=context), auth
    if parts.scheme != "redis":
        raise ValueError(f"not a Redis URL: {url!r}")
    return await trio.open_tcp_stream(host, port), auth


class Subscriber:
    """One subscribed connection (see the module docstring). Not reusable after it failed."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        timeout: float,
        keepalive: float,
        max_bulk: int,
        lost: Lost | None = None,
    ) -> None:
        self.stream = stream
        self.lost = lost
        self.timeout = timeout
        self.keepalive = keepalive
        self.reader = RespReader(max_bulk)
        self._send_lock = trio.Lock()
        self._awaited: dict[tuple[bytes, bytes], int] = {}
        self._acked = trio.Event()
        self._last_read = trio.current_time()
        #: Set once ``run`` ended (the connection failed): nothing more will be acknowledged.
        self.ended = False

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        timeout: float,  # noqa: ASYNC109  (the connection keeps it: see run)
        keepalive: float,
        max_bulk: int,
        lost: Lost | None = None,
    ) -> Subscriber:
        with trio.fail_after(timeout):
            stream, auth = await open_stream(url)
            self = cls(stream, timeout=timeout, keepalive=keepalive, max_bulk=max_bulk, lost=lost)
            try:
                if auth:
                    await stream.send_all(command(*auth))
                    reply = await self._one_reply()
                    if isinstance(reply, RespError):
                        raise SubscriberError(f"AUTH refused: {reply.message}")
            except BaseException:
                await trio.aclose_forcefully(stream)
                raise
        return self

    async def _one_reply(self) -> Reply:
        while True:
            replies = _replies(self.reader)
            if replies:
                return replies[0]
            data = await self.stream.receive_some(READ_SIZE)
            if not data:
                raise SubscriberError("Redis closed the connection")
            self.reader.feed(data)

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)

    async def _send(self, data: bytes) -> None:
        async with self._send_lock:
            await self.stream.send_all(data)

    async def subscribe(self, channels: Iterable[bytes], patterns: Iterable[bytes]) -> None:
        """SUBSCRIBE and PSUBSCRIBE, and wait (at most ``timeout``) until Redis acknowledged
        each one; ``run`` must be running to read the acknowledgements."""
        channels, patterns = list(channels), list(patterns)
        out = b""
        if channels:
            out += command(b"SUBSCRIBE", *channels)
        if patterns:
            out += command(b"PSUBSCRIBE", *patterns)
        if not out:
            return
        awaited = self._awaited
        for kind, names in ((b"subscribe", channels), (b"psubscribe", patterns)):
            for name in names:
                awaited[kind, name] = awaited.get((kind, name), 0) + 1
        self._acked = trio.Event()
        with trio.fail_after(self.timeout):
            await self._send(out)
            while awaited:
                await self._acked.wait()

    async def ssubscribe(self, channels: Iterable[bytes]) -> None:
        """SSUBSCRIBE (sharded pub/sub, Redis 7), one command per channel (on a Redis Cluster
        the channels of one command must share a slot), waiting for every acknowledgement."""
        channels = list(channels)
        if not channels:
            return
        awaited = self._awaited
        for name in channels:
            awaited[b"ssubscribe", name] = awaited.get((b"ssubscribe", name), 0) + 1
        self._acked = trio.Event()
        with trio.fail_after(self.timeout):
            await self._send(b"".join(command(b"SSUBSCRIBE", name) for name in channels))
            while awaited:
                if self.ended:  # run (another task's) failed: no acknowledgement will come
                    raise SubscriberError("the connection failed while subscribing")
                await self._acked.wait()

    async def sunsubscribe(self, channels: Iterable[bytes]) -> None:
        """SUNSUBSCRIBE, one command per channel (acknowledgements not waited for)."""
        out = b"".join(command(b"SUNSUBSCRIBE", name) for name in channels)
        if out:
            await self._send(out)

    async def unsubscribe(self, channels: Iterable[bytes], patterns: Iterable[bytes]) -> None:
        """UNSUBSCRIBE and PUNSUBSCRIBE (Redis's acknowledgements are not waited for)."""
        channels, patterns = list(channels), list(patterns)
        out = command(b"UNSUBSCRIBE", *channels) if channels else b""
        if patterns:
            out += command(b"PUNSUBSCRIBE", *patterns)
        if out:
            await self._send(out)

    async def run(self, dispatch: Dispatch) -> None:
        """Read and dispatch until the connection fails: raises :class:`SubscriberError`
        (or the stream's own error)."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._keepalive)
                await self._read(dispatch)
        except BaseExceptionGroup as group:
            # the reader's or the keepalive's failure, without the nursery's wrapping
            if len(group.exceptions) == 1 and isinstance(group.exceptions[0], Exception):
                raise group.exceptions[0] from None
            raise
        finally:
            self.ended = True
            self._acked.set()

    async def _read(self, dispatch: Dispatch) -> None:
        stream = self.stream
        reader = self.reader
        while True:
            data = await stream.receive_some(READ_SIZE)
            if not data:
                raise SubscriberError("Redis closed the connection")
            self._last_read = trio.current_time()
            reader.feed(data)
            # every message of this read, before any other task runs (module docstring);
            # those before a malformed or oversized one too, then the connection fails
            for reply in _replies(reader):
                self._handle(reply, dispatch)
            if reader.error is not None:
                raise SubscriberError(f"Redis sent bad RESP: {reader.error}") from reader.error

    async def _keepalive(self) -> None:
        """PING after ``keepalive`` idle seconds; fail if nothing comes back in ``timeout``."""
        while True:
            idle_until = self._last_read + self.keepalive
            if trio.current_time() < idle_until:
                await trio.sleep_until(idle_until)
                continue
            sent = trio.current_time()
            with trio.move_on_after(self.timeout):
                await self._send(command(b"PING"))
            await trio.sleep_until(sent + self.timeout)
            if self._last_read < sent:
                raise SubscriberError(f"Redis did not answer a PING within {self.timeout:g} s")

    def _handle(self, reply: Reply, dispatch: Dispatch) -> None:
        if isinstance(reply, RespError):
            redirect = parse_redirect(reply.message) if self.lost is not None else None
            if redirect is None:
                raise SubscriberError(f"Redis answered an error: {reply.message}")
            self._refused(redirect.slot)
            return
        if not isinstance(reply, list) or not reply or not isinstance(reply[0], bytes):
            raise SubscriberError("not a pub/sub reply")
        kind = reply[0]
        if kind in (b"message", b"smessage") and len(reply) == 3:
            _, channel, data = reply
            if isinstance(channel, bytes) and isinstance(data, bytes):
                dispatch(None, channel, data)
                return
        elif kind == b"pmessage" and len(reply) == 4:
            _, pattern, channel, data = reply
            if isinstance(pattern, bytes) and isinstance(channel, bytes):
                if isinstance(data, bytes):
                    dispatch(pattern, channel, data)
                    return
        elif kind in (b"subscribe", b"psubscribe", b"ssubscribe") and len(reply) == 3:
            name = reply[1]
            if isinstance(name, bytes):
                self._ack(kind, name)
                return
        elif kind == b"sunsubscribe":
            if self.lost is not None and len(reply) == 3 and isinstance(reply[1], bytes):
                self.lost(reply[1])
            return
        elif kind in (b"pong", b"unsubscribe", b"punsubscribe"):
            return
        raise SubscriberError(f"unexpected pub/sub reply {kind[:20]!r}")

    def _refused(self, slot: int) -> None:
        """SSUBSCRIBE answered ``MOVED <slot>``: the channels of that slot still awaited are
        not subscribed here (each command had one channel: all of them were refused)."""
        assert self.lost is not None
        for kind, name in list(self._awaited):
            if kind == b"ssubscribe" and key_slot(name) == slot:
                del self._awaited[kind, name]
                self.lost(name)
        if not self._awaited:
            self._acked.set()

    def _ack(self, kind: bytes, name: bytes) -> None:
        key = (kind, name)
        left = self._awaited.get(key, 0) - 1
        if left > 0:
            self._awaited[key] = left
        else:
            self._awaited.pop(key, None)
        if not self._awaited:
            self._acked.set()


def _replies(reader: RespReader) -> list[Reply]:
    try:
        return reader.replies()
    except RespProtocolError as exc:
        raise SubscriberError(f"Redis sent bad RESP: {exc}") from exc

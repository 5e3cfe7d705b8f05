"""``AsyncEmitter``: :class:`~pyserver.sync.emitter.Emitter` for asyncio programs (an aiohttp or
FastAPI worker, an async job queue), on one asyncio connection per emitter::

    from pyserver import AsyncEmitter

    emitter = AsyncEmitter("redis://127.0.0.1:6379/0")
    await emitter.to("room").emit("event", {"some": "data"})
    await emitter.aclose()

The same options, chaining and bytes as the blocking one; every call is one round trip.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

from pyserver.redis.emitter import Target
from pyserver.redis.resp import Reply, RespError, RespReader, command
from pyserver.sync.emitter import Chain, wire
from pyserver.sync.redis import RedisError, Word, word

__all__ = ["AsyncEmitter", "AsyncRedisConnection"]


class AsyncRedisConnection:
    """The asyncio twin of :class:`~pyserver.sync.redis.RedisConnection` (one lock, one
    retry on a new connection)."""

    def __init__(self, url: str, *, timeout: float = 5.0, max_reply: int = 64 << 20) -> None:
        self.url = url
        self.timeout = timeout
        self.max_reply = max_reply
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._reader = RespReader(max_reply)
        self._lock = asyncio.Lock()

    async def _connect(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme == "unix":
            streams = await asyncio.open_unix_connection(parts.path)
        elif parts.scheme in ("redis", "rediss"):
            context = ssl.create_default_context() if parts.scheme == "rediss" else None
            streams = await asyncio.open_connection(
                parts.hostname or "127.0.0.1", parts.port or 6379, ssl=context
            )
        else:
            raise ValueError(f"not a Redis URL: {self.url!r}")
        self._streams = streams
        self._reader = RespReader(self.max_reply)
        first: list[list[Word]] = []
        if parts.password is not None:
            auth: list[Word] = ["AUTH"]
            if parts.username:
                auth.append(unquote(parts.username))
            first.append([*auth, unquote(parts.password)])
        db = parts.path.strip("/") if parts.scheme != "unix" else ""
        if db and db != "0":
            first.append(["SELECT", db])
        if first:
            await self._exchange(first)

    async def _exchange(self, commands: Sequence[Sequence[Word]]) -> list[Reply]:
        assert self._streams is not None
        reader, writer = self._streams
        writer.write(b"".join(command(*(word(w) for w in c)) for c in commands))
        await writer.drain()
        replies: list[Reply] = []
        while True:
            replies.extend(self._reader.replies())
            if len(replies) >= len(commands):
                break
            data = await reader.read(65536)
            if not data:
                raise ConnectionError("Redis closed the connection")
            self._reader.feed(data)
        for reply in replies:
            if isinstance(reply, RespError):
                raise RedisError(reply.message)
        return replies

    async def execute(self, *commands: Sequence[Word]) -> list[Reply]:
        """Send ``commands`` in one write and return their replies."""
        async with self._lock:
            for attempt in (1, 2):
                try:
                    async with asyncio.timeout(self.timeout):
                        if self._streams is None:
                            await self._connect()
                        return await self._exchange(commands)
                except (OSError, ConnectionError, TimeoutError) as exc:
                    await self._close()
                    if attempt == 2:
                        raise RedisError(f"Redis {self.url}: {exc}") from exc
            raise AssertionError("unreachable")

    async def _close(self) -> None:
        if self._streams is not None:
            writer = self._streams[1]
            self._streams = None
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass

    async def aclose(self) -> None:
        async with self._lock:
            await self._close()


class AsyncEmitter(Chain):
    """:class:`~pyserver.sync.emitter.Emitter` with ``await`` (the same options)."""

    __slots__ = ()

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        key: str = "socket.io",
        stream: str | None = None,
        max_len: int = 10_000,
        channel_prefix: str = "socket.io",
        timeout: float = 5.0,
    ) -> None:
        self._conn = AsyncRedisConnection(url, timeout=timeout)
        self._wire = wire(key, stream, max_len, channel_prefix)
        self._target = Target()

    async def emit(self, event: str, *args: Any) -> None:
        await self._conn.execute(self._wire.emit(self._target, event, args))

    async def send(self, *args: Any) -> None:
        await self.emit("message", *args)

    async def sockets_join(self, rooms: str | Iterable[str]) -> None:
        await self._conn.execute(self._wire.sockets_join(self._target, rooms))

    async def sockets_leave(self, rooms: str | Iterable[str]) -> None:
        await self._conn.execute(self._wire.sockets_leave(self._target, rooms))

    async def disconnect_sockets(self, close: bool = False) -> None:
        await self._conn.execute(self._wire.disconnect_sockets(self._target, close))

    async def server_side_emit(self, event: str, *args: Any) -> None:
        await self._conn.execute(self._wire.server_side_emit(self._target, event, args))

    async def aclose(self) -> None:
        """Close the connection (shared with the emitters made from this one)."""
        await self._conn.aclose()

    async def __aenter__(self) -> AsyncEmitter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

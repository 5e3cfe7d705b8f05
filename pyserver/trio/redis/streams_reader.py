"""Reading the stream: the reader's own Redis connection (:class:`ReaderConnection`: one
blocking ``XREAD`` at a time over a trio stream, read with the sans-IO
:class:`~pyserver.redis.resp.RespReader`; a Redis client's pool would hold the blocked call on
a connection it may not notice is gone, and a killed Redis would stop the reader for good),
and the reads that restore a session (:func:`take_session`)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import coredis
import trio

from pyserver.redis import streams
from pyserver.redis.resp import Reply, RespError, RespReader, command
from pyserver.redis.streams import ClusterMessage
from pyserver.trio.redis.subscriber import open_stream

__all__ = ["REPLAY_BATCH", "ReaderConnection", "entries", "take_session", "text"]

REPLAY_BATCH = 1000
"""Entries per ``XRANGE`` when a session is restored."""


class ReaderConnection:
    """One command at a time, its reply read whole (arrays nested up to ``XREAD``'s 5)."""

    def __init__(self, stream: trio.abc.Stream, max_bulk: int) -> None:
        self.stream = stream
        self.reader = RespReader(max_bulk, max_depth=5)

    @classmethod
    async def open(cls, url: str, timeout: float) -> ReaderConnection:  # noqa: ASYNC109
        with trio.fail_after(timeout):
            stream, auth = await open_stream(url)
            conn = cls(stream, 64 * 1024 * 1024)
            try:
                if auth:
                    await conn.call(auth, timeout)
                db = urlsplit(url).path.strip("/")
                if db.isdigit() and db != "0":
                    await conn.call([b"SELECT", db.encode()], timeout)
            except BaseException:
                await conn.aclose()
                raise
        return conn

    async def call(self, words: list[bytes], timeout: float) -> Reply:  # noqa: ASYNC109
        """Send one command and return its reply (a Redis error raises)."""
        with trio.fail_after(timeout):
            await self.stream.send_all(command(*words))
            while True:
                replies = self.reader.replies()
                if replies:
                    reply = replies[0]
                    if isinstance(reply, RespError):
                        raise ConnectionError(f"Redis: {reply.message}")
                    return reply
                data = await self.stream.receive_some(256 * 1024)
                if not data:
                    raise ConnectionError("Redis closed the connection")
                self.reader.feed(data)

    async def calls(self, commands: list[list[bytes]], timeout: float) -> list[Reply]:  # noqa: ASYNC109
        """Several commands in one write (a pipeline) and their replies, in order; an error
        reply is returned as a :class:`~pyserver.redis.resp.RespError`, not raised. After
        any exception the connection is unusable (replies may be half read)."""
        out: list[Reply] = []
        with trio.fail_after(timeout):
            await self.stream.send_all(b"".join(command(*words) for words in commands))
            while True:
                out += self.reader.replies()
                if len(out) >= len(commands):
                    return out
                data = await self.stream.receive_some(256 * 1024)
                if not data:
                    raise ConnectionError("Redis closed the connection")
                self.reader.feed(data)

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)


def entries(value: Reply) -> list[tuple[str, dict[bytes, bytes]]]:
    """``[[id, [field, value, ...]], ...]`` as ``(id, {field: value})`` pairs."""
    out = []
    for entry in value if isinstance(value, list) else ():
        if isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], list):
            words = [w for w in entry[1] if isinstance(w, bytes)]
            out.append((text(entry[0]), dict(zip(words[::2], words[1::2], strict=False))))
    return out


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def take_session(
    client: coredis.Redis[bytes], stream: str, key: str, offset: str, limit: int
) -> tuple[bytes | None, list[tuple[str, ClusterMessage]] | None]:
    """The session at ``key``, taken (single use), and the entries of ``stream`` after
    ``offset`` (at most ``limit``, decoded, in order), or None for them when ``offset`` is no
    longer in the stream. The first batch comes in the session's round trip."""
    batch = min(REPLAY_BATCH, limit)
    async with client.pipeline(transaction=False) as pipe:
        taken = pipe.getdel(key)
        at = pipe.xrange(stream, offset, offset)
        first = pipe.xrange(stream, streams.next_offset(offset), "+", count=batch)
    raw, found, read = await taken, await at, await first
    if not found:
        return raw, None
    out: list[tuple[str, ClusterMessage]] = []
    while True:
        for entry in read:
            offset = text(entry.identifier)
            message = streams.decode_entry(entry.field_values)  # type: ignore[arg-type]
            if message is not None:
                out.append((offset, message))
        limit -= len(read)
        if len(read) < batch or limit <= 0:
            return raw, out
        batch = min(REPLAY_BATCH, limit)
        read = await client.xrange(stream, streams.next_offset(offset), "+", count=batch)

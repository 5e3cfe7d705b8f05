"""The stream reader's own Redis connection (:class:`ReaderConnection`): one blocking
``XREAD`` at a time over a trio stream, read with the sans-IO
:class:`~pyserver.redis.resp.RespReader` (a Redis client's pool would hold the blocked call on
a connection it may not notice is gone: a killed Redis then stops the reader for good)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import trio

from pyserver.redis.resp import Reply, RespError, RespReader, command
from pyserver.trio.redis.subscriber import open_stream

__all__ = ["ReaderConnection", "entries", "text"]


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

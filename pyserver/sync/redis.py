"""A small blocking Redis connection (plain sockets, RESP2 through the sans-IO
:class:`~pyserver.redis.resp.RespReader`): enough to send an emitter's commands from any
Python program. Thread-safe (one lock per connection); a command that fails on a broken
connection is sent once more on a new one."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Sequence
from urllib.parse import unquote, urlsplit

from pyserver.redis.resp import Reply, RespError, RespReader, command

__all__ = ["RedisConnection", "RedisError", "Word", "word"]

Word = bytes | str | int


class RedisError(Exception):
    """Redis answered with an error, or could not be reached."""


def word(value: Word) -> bytes:
    """One word of a command as bytes (str as UTF-8, int in decimal)."""
    if isinstance(value, bytes):
        return value
    return str(value).encode()


class RedisConnection:
    """``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` or ``unix:///path``."""

    def __init__(self, url: str, *, timeout: float = 5.0, max_reply: int = 64 << 20) -> None:
        self.url = url
        self.timeout = timeout
        self.max_reply = max_reply
        self._sock: socket.socket | None = None
        self._reader = RespReader(max_reply)
        self._lock = threading.Lock()

    def _connect(self) -> socket.socket:
        parts = urlsplit(self.url)
        sock: socket.socket
        if parts.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            sock.connect(parts.path)
        elif parts.scheme in ("redis", "rediss"):
            host, port = parts.hostname or "127.0.0.1", parts.port or 6379
            sock = socket.create_connection((host, port), timeout=self.timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if parts.scheme == "rediss":
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        else:
            raise ValueError(f"not a Redis URL: {self.url!r}")
        self._sock = sock
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
            self._exchange(first)
        return sock

    def _exchange(self, commands: Sequence[Sequence[Word]]) -> list[Reply]:
        sock = self._sock
        assert sock is not None
        sock.sendall(b"".join(command(*(word(w) for w in c)) for c in commands))
        replies: list[Reply] = []
        while len(replies) < len(commands):
            replies.extend(self._reader.replies())
            if len(replies) >= len(commands):
                break
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("Redis closed the connection")
            self._reader.feed(data)
        for reply in replies:
            if isinstance(reply, RespError):
                raise RedisError(reply.message)
        return replies

    def execute(self, *commands: Sequence[Word]) -> list[Reply]:
        """Send ``commands`` in one write (a pipeline) and return their replies."""
        with self._lock:
            for attempt in (1, 2):
                try:
                    if self._sock is None:
                        self._connect()
                    return self._exchange(commands)
                except (OSError, ConnectionError) as exc:
                    self._close()
                    if attempt == 2:
                        raise RedisError(f"Redis {self.url}: {exc}") from exc
            raise AssertionError("unreachable")

    def _close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def close(self) -> None:
        with self._lock:
            self._close()

    def __enter__(self) -> RedisConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

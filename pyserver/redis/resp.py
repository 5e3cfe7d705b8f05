"""RESP2, the Redis protocol, as far as a pub/sub subscriber needs it: sans-IO.

:class:`RespReader` takes bytes (``feed``) and returns the complete replies (``replies``):
bulk strings as ``bytes``, integers, simple strings as ``bytes``, errors as
:class:`RespError`, arrays as lists, nulls as None. Limits are enforced while parsing, from a
reply's header, before its bytes are waited for: a bulk string over ``max_bulk``, an array
over ``MAX_ARRAY`` elements or nested more than twice, a line over ``MAX_LINE`` are a
:class:`RespProtocolError`. :func:`command` encodes a command. No I/O, no trio, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, TypeAlias

from pyserver.errors import RemoteProtocolError

__all__ = ["MAX_ARRAY", "MAX_LINE", "Reply", "RespError", "RespProtocolError", "RespReader",
           "command"]  # fmt: skip

Reply: TypeAlias = "bytes | int | RespError | list[Reply] | None"

MAX_ARRAY: Final = 1024
"""Elements of one array reply (pub/sub replies have 2 to 4)."""
MAX_LINE: Final = 64 * 1024
"""A simple string, error or length line."""


class RespProtocolError(RemoteProtocolError, ValueError):
    """Bytes that are not RESP2, or a reply over the reader's limits (Redis, the peer,
    misbehaved: the answer is dropping the connection)."""


@dataclass(frozen=True, slots=True)
class RespError:
    """An error reply (``-ERR ...``)."""

    message: str


class _Incomplete(Exception):
    """Not enough bytes yet; ``need`` is the buffer length worth parsing again."""

    def __init__(self, need: int) -> None:
        self.need = need


class RespReader:
    """RESP2 replies from a byte stream, sans-IO. ``feed(data)`` then ``replies()``.

    Bulk strings longer than ``max_bulk`` and arrays longer than ``MAX_ARRAY`` (or nested
    deeper than 2) are a :class:`RespProtocolError`, raised before their bytes are buffered, so
    the buffer never holds more than one reply of at most ``max_bulk`` bytes plus one read.
    The complete replies before a bad one are returned first: ``replies()`` then keeps the
    error in :attr:`error` (and raises it from then on)."""

    def __init__(self, max_bulk: int, max_depth: int = 2) -> None:
        self.max_bulk = max_bulk
        #: Arrays nested deeper than this are refused (pub/sub needs 2; ``XREAD`` 5).
        self.max_depth = max_depth
        self._buf = bytearray()
        self._need = 1
        #: The protocol error met after the replies last returned (the stream is unusable).
        self.error: RespProtocolError | None = None

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes | bytearray) -> None:
        self._buf += data

    def replies(self) -> list[Reply]:
        """Every complete reply buffered (consumed), in order. Raises
        :class:`RespProtocolError` at a bad reply, unless complete replies come before it:
        those are returned, and the error is kept in :attr:`error` for the caller to check
        (and raised by the next call)."""
        if self.error is not None:
            raise self.error
        out: list[Reply] = []
        buf = self._buf
        if len(buf) < self._need:
            return out
        pos = 0
        try:
            while pos < len(buf):
                value, pos = self._parse(pos, 0)
                out.append(value)
            self._need = 1
        except _Incomplete as more:
            self._need = more.need - pos
        except RespProtocolError as exc:
            self.error = exc
            if not out:
                raise
        if pos:
            del buf[:pos]
        return out

    def _line(self, pos: int) -> tuple[bytes, int]:
        buf = self._buf
        end = buf.find(b"\r\n", pos, pos + MAX_LINE + 2)
        if end < 0:
            if len(buf) - pos > MAX_LINE:
                raise RespProtocolError("a RESP line longer than 64 KiB")
            raise _Incomplete(len(buf) + 1)
        return bytes(buf[pos + 1 : end]), end + 2

    def _length(self, line: bytes, limit: int, what: str) -> int:
        try:
            n = int(line)
        except ValueError:
            raise RespProtocolError(f"bad RESP {what} length {line[:20]!r}") from None
        if n > limit:
            raise RespProtocolError(f"RESP {what} of {n} is over the limit ({limit})")
        return n

    def _parse(self, pos: int, depth: int) -> tuple[Reply, int]:
        buf = self._buf
        if pos >= len(buf):
            raise _Incomplete(pos + 1)
        kind = buf[pos]
        line, after = self._line(pos)
        if kind == 0x24:  # $ bulk string
            n = self._length(line, self.max_bulk, "bulk string")
            if n < 0:
                return None, after
            end = after + n
            if len(buf) < end + 2:
                raise _Incomplete(end + 2)
            if buf[end : end + 2] != b"\r\n":
                raise RespProtocolError("a RESP bulk string without its CRLF")
            return bytes(buf[after:end]), end + 2
        if kind == 0x2A:  # * array
            n = self._length(line, MAX_ARRAY, "array")
            if n < 0:
                return None, after
            if depth >= self.max_depth:
                raise RespProtocolError("RESP arrays nested too deep")
            items: list[Reply] = []
            for _ in range(n):
                item, after = self._parse(after, depth + 1)
                items.append(item)
            return items, after
        if kind == 0x3A:  # : integer
            return self._length(line, 2**63, "integer"), after
        if kind == 0x2B:  # + simple string
            return line, after
        if kind == 0x2D:  # - error
            return RespError(line.decode("utf-8", "replace")), after
        raise RespProtocolError(f"not a RESP2 reply (first byte {kind:#04x})")


def command(*words: bytes) -> bytes:
    """One command in RESP (an array of bulk strings)."""
    parts = [b"*%d\r\n" % len(words)]
    for word in words:
        parts.append(b"$%d\r\n%s\r\n" % (len(word), word))
    return b"".join(parts)

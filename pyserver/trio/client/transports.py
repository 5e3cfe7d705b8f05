"""The client's two Engine.IO transports, on Trio: WebSocket (over the Rust frame codec in
its client role) and HTTP long-polling (over :mod:`pyserver.trio.client.http`).

Both speak in *messages* in their WebSocket form: a ``str`` is one Engine.IO packet with its
type digit (``"4hello"``), ``bytes`` is a binary message packet. :meth:`receive` returns the
next messages (a WebSocket read, or one polling GET's payload); :meth:`send` writes a batch
(frames in one write, or one POST). Both raise :class:`TransportClosed` when the server ends
the transport (a close frame, the end of the stream), raise ``HttpError`` for a poll or POST
the server refuses, and let ``OSError``, ``trio.BrokenResourceError``, ``HttpError``,
``FrameError`` and Engine.IO's ``PacketError`` through: the engine names them.
"""

from __future__ import annotations

import binascii
import os
from base64 import b64decode, b64encode
from collections.abc import Sequence

import trio

from pyserver import _frames
from pyserver.engineio.client import engine_target
from pyserver.engineio.packets import SEPARATOR, PacketError
from pyserver.trio.client.http import HttpConnection, HttpError, Origin, open_websocket

__all__ = [
    "PollingTransport",
    "TransportClosed",
    "WebSocketTransport",
    "decode_polling",
    "encode_polling",
]

READ_SIZE = 65536
FAIR_STREAK = 32
"""Reads in a row without a schedule point (each found the kernel with more than it took)
before the reader lets other tasks run."""

_Ping = _frames.Ping
_Close = _frames.Close
_os_read = os.read
_wait_readable = trio.lowlevel.wait_readable


class TransportClosed(Exception):
    """The server ended the transport (a close frame, the end of the stream)."""


class WebSocketTransport:
    """One WebSocket: Rust decoder and encoder in the client role (frames masked)."""

    name = "websocket"

    def __init__(self, stream: trio.abc.Stream, leftover: bytes, *, max_message: int) -> None:
        self.stream = stream
        self.decoder = _frames.Decoder(
            client=True, max_frame_size=max_message, max_message_size=max_message
        )
        self.encoder = _frames.Encoder(client=True)
        self._lock = trio.StrictFIFOLock()
        self._leftover = leftover
        self._closed = False
        # plain TCP: frames may be written at once from sync code (see try_write), and read
        # from the descriptor (see _read)
        self._socket = stream.socket if isinstance(stream, trio.SocketStream) else None
        self._fd = self._socket.fileno() if self._socket is not None else -1
        self._full = False  # the last read filled its buffer: the kernel may have more
        self._streak = 0

    @classmethod
    async def open(
        cls,
        origin: Origin,
        path: str,
        query: Sequence[tuple[str, str]],
        headers: Sequence[tuple[str, str]],
        sid: str | None,
        *,
        max_message: int,
    ) -> WebSocketTransport:
        target = engine_target(path, query, transport="websocket", sid=sid)
        stream, leftover = await open_websocket(origin, target, headers)
        return cls(stream, leftover, max_message=max_message)

    async def receive(self) -> list[str | bytes]:
        """The next messages. Over plain TCP the socket's descriptor is read directly, as
        the server's WebSocket reader reads it: ``os.read`` after
        ``trio.lowlevel.wait_readable``, except right after a read that filled its buffer
        (the kernel likely has more: read again at once, a schedule point every
        ``FAIR_STREAK`` reads): no EAGAIN read per message and none of ``receive_some``'s
        layers; errors as ``receive_some`` raises them."""
        data: bytes | bytearray
        sock = self._socket
        while True:
            if self._leftover:
                data, self._leftover = self._leftover, b""
            elif sock is None:
                data = await self.stream.receive_some(READ_SIZE)
            else:
                if self._full and self._streak < FAIR_STREAK:
                    self._streak += 1
                else:
                    self._streak = 0
                    try:
                        await _wait_readable(sock)
                    except ValueError:  # its descriptor is -1: closed before the wait
                        raise trio.ClosedResourceError("the socket was closed") from None
                fd = sock.fileno()
                if fd < 0:
                    raise trio.ClosedResourceError("the socket was closed")
                try:
                    data = _os_read(fd, READ_SIZE)
                except BlockingIOError:
                    self._full = False
                    continue
                except OSError as exc:
                    raise trio.BrokenResourceError(f"socket read failed: {exc}") from exc
                self._full = len(data) == READ_SIZE
            if not data:
                raise TransportClosed("the server closed the connection")
            out: list[str | bytes] = []
            for message in self.decoder.feed(data):
                kind = type(message)
                if kind is str or kind is bytes:
                    out.append(message)  # type: ignore[arg-type]
                elif kind is _Ping:
                    await self._write(self.encoder.pong(message.payload))  # type: ignore[union-attr]
                elif kind is _Close:
                    self._closed = True
                    raise TransportClosed(f"close frame {message.code}")  # type: ignore[union-attr]
            if out:
                return out

    def frames(self, messages: Sequence[str | bytes]) -> bytes:
        """The frames of ``messages``, masked, in one buffer."""
        encoder = self.encoder
        if len(messages) == 1:
            m = messages[0]
            return encoder.text(m) if type(m) is str else encoder.binary(m)  # type: ignore[arg-type]
        return b"".join(
            [encoder.text(m) if type(m) is str else encoder.binary(m) for m in messages]  # type: ignore[arg-type]
        )

    async def send(self, messages: Sequence[str | bytes]) -> None:
        await self._write(self.frames(messages))

    async def write(self, data: bytes) -> None:
        """Write bytes already framed (what :meth:`try_write` left)."""
        await self._write(data)

    def try_write(self, data: bytes) -> bytes:
        """Write ``data`` now, without waiting, if this is plain TCP and no write is in
        flight: one ``write(2)``. Returns what is left to write (all of it when nothing
        could be written now; nothing when the socket failed: the reader will see it)."""
        if self._fd < 0 or self._lock.locked() or self._closed:
            return data
        try:
            written = os.write(self._fd, data)
        except BlockingIOError:
            return data
        except OSError:
            return b""
        return data[written:]

    async def _write(self, data: bytes) -> None:
        async with self._lock:
            await self.stream.send_all(data)

    async def aclose(self, *, graceful: bool = True) -> None:
        with trio.CancelScope(shield=True):
            if graceful and not self._closed:
                with trio.move_on_after(1.0):
                    try:
                        await self._write(self.encoder.close(1000))
                    except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                        pass
            self._closed = True
            await self.stream.aclose()


def decode_polling(body: bytes) -> list[str | bytes]:
    """A polling payload as messages in their WebSocket form (``b``+base64 to bytes)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise PacketError("polling payload is not valid UTF-8") from None
    out: list[str | bytes] = []
    for record in text.split(SEPARATOR):
        if record.startswith("b"):
            try:
                out.append(b64decode(record[1:], validate=True))
            except (binascii.Error, ValueError):
                raise PacketError("invalid base64 binary packet") from None
        else:
            out.append(record)
    return out


def encode_polling(messages: Sequence[str | bytes]) -> bytes:
    return SEPARATOR.join(
        m if type(m) is str else "b" + b64encode(m).decode("ascii")  # type: ignore[arg-type]
        for m in messages
    ).encode("utf-8")


class PollingTransport:
    """HTTP long-polling: one kept-alive connection for the GETs, one for the POSTs."""

    name = "polling"

    def __init__(
        self,
        origin: Origin,
        path: str,
        query: Sequence[tuple[str, str]],
        headers: Sequence[tuple[str, str]],
        *,
        max_message: int,
    ) -> None:
        self.origin = origin
        self.path = path
        self.query = query
        self.headers = headers
        self.sid: str | None = None
        self.max_message = max_message
        self._get = HttpConnection(origin, max_body=max_message)
        self._post = HttpConnection(origin, max_body=4096)

    def _target(self) -> str:
        return engine_target(self.path, self.query, transport="polling", sid=self.sid)

    async def receive(self) -> list[str | bytes]:
        status, body = await self._get.request("GET", self._target(), self.headers)
        if status != 200:
            raise HttpError(f"poll answered HTTP {status}: {body[:200]!r}", status, body[:200])
        return decode_polling(body)

    async def send(self, messages: Sequence[str | bytes]) -> None:
        headers = [*self.headers, ("Content-Type", "text/plain;charset=UTF-8")]
        status, body = await self._post.request(
            "POST", self._target(), headers, encode_polling(messages)
        )
        if status != 200:
            raise HttpError(f"POST answered HTTP {status}: {body[:200]!r}", status, body[:200])

    async def aclose(self, *, graceful: bool = True) -> None:
        await self._get.aclose()
        await self._post.aclose()

"""A WebSocket client on a plain socket, independent of the codec under test: h11 for the
handshake, frames made here byte by byte (``frame``, ``masked``) and the server's frames read by
wsproto's frame parser; and ``serving``, an App on a free loopback port.

Used by the WebSocket shell tests (``test_http_app_websocket``, ``test_websocket_*``) and the
audit's ping flood."""

from __future__ import annotations

import base64
import os
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import h11
import trio
from wsproto.frame_protocol import FrameProtocol, Opcode

from pyserver.trio.http.app import App


@asynccontextmanager
async def serving(app: App) -> AsyncIterator[tuple[trio.Nursery, int]]:
    """``app`` serving on 127.0.0.1 and a free port: yields the nursery it runs in (to start
    more tasks next to it) and the port; cancelled when the block ends."""
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(app.serve, "127.0.0.1", 0)
        yield nursery, listeners[0].socket.getsockname()[1]
        nursery.cancel_scope.cancel()


class RawClient:
    """A WebSocket client on a plain socket: h11 for the handshake, frames made by hand
    (``frame`` below) and server frames read by wsproto's frame parser."""

    def __init__(self, stream: trio.SocketStream, leftover: bytes) -> None:
        self.stream = stream
        self.proto = FrameProtocol(client=True, extensions=[])
        self.parts: list[Any] = []
        self.messages: list[Any] = []
        self._feed(leftover)

    @classmethod
    async def open(
        cls, port: int, path: str = "/echo", first_frames: bytes = b"", **headers: str
    ) -> RawClient:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        http = h11.Connection(h11.CLIENT)
        request = h11.Request(
            method="GET",
            target=path,
            headers=[
                ("Host", f"127.0.0.1:{port}"),
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Key", base64.b64encode(os.urandom(16)).decode()),
                ("Sec-WebSocket-Version", "13"),
                *headers.items(),
            ],
        )
        await stream.send_all((http.send(request) or b"") + first_frames)
        while True:
            event = http.next_event()
            if event is h11.NEED_DATA:
                http.receive_data(await stream.receive_some(65536))
                continue
            assert isinstance(event, h11.InformationalResponse), event
            assert event.status_code == 101
            return cls(stream, http.trailing_data[0])

    def _feed(self, data: bytes) -> None:
        self.proto.receive_bytes(data)
        for f in self.proto.received_frames():
            if f.opcode is Opcode.CLOSE:
                self.messages.append(("close", int(f.payload[0]), f.payload[1]))
            elif f.opcode is Opcode.PING:
                self.messages.append(("ping", bytes(f.payload)))
            elif f.opcode is Opcode.PONG:
                self.messages.append(("pong", bytes(f.payload)))
            else:
                self.parts.append(f.payload)
                if f.message_finished:
                    parts, self.parts = self.parts, []
                    joined = "".join(parts) if isinstance(parts[0], str) else b"".join(parts)
                    self.messages.append(joined)

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def next(self) -> Any:
        while not self.messages:
            data = await self.stream.receive_some(65536)
            if not data:
                raise EOFError
            self._feed(data)
        return self.messages.pop(0)

    async def until_close(self) -> tuple[str, int, str]:
        while True:
            message = await self.next()
            if isinstance(message, tuple) and message[0] == "close":
                return message  # type: ignore[return-value]


MASK = b"\x01\x02\x03\x04"
TEXT, BINARY, CLOSE, PING = 1, 2, 8, 9


def frame(opcode: int, payload: bytes, *, mask: bytes | None = MASK, rsv2: bool = False) -> bytes:
    """One frame, built here byte by byte (independent of the codec under test)."""
    head = bytes([0x80 | (0x20 if rsv2 else 0) | opcode])
    mbit = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head += bytes([mbit | n])
    elif n < 65536:
        head += bytes([mbit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mbit | 127]) + struct.pack("!Q", n)
    if mask is None:
        return head + payload
    key = (mask * (n // 4 + 1))[:n]
    masked_payload = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(
        n, "big"
    )
    return head + mask + masked_payload


def masked(opcode: int, payload: bytes, **kw: Any) -> bytes:
    return frame(opcode, payload, **kw)

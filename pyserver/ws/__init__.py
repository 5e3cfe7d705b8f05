"""RFC 6455 WebSocket: the sans-IO handshake and connection state, and broadcasting.

``broadcast(connections, message)`` encodes ``message`` once (and once per distinct deflate
window among compressed peers) and queues the frame on every open connection without
waiting: a slow recipient is closed by its own outbox limit and never blocks the others.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from pyserver import _frames
from pyserver.errors import ConnectionClosed

__all__ = ["BROADCAST_COMPRESS_THRESHOLD", "broadcast"]

#: Messages shorter than this (in characters or bytes) are never compressed for broadcast.
BROADCAST_COMPRESS_THRESHOLD = 128


class _FrameSink(Protocol):
    @property
    def closed(self) -> bool: ...

    def send_frame_nowait(self, frame: bytes) -> None: ...


def broadcast(connections: Iterable[_FrameSink], message: str | bytes) -> int:
    """Queue ``message`` on every open connection; returns how many took it.

    A connection may carry ``deflate_window_bits`` (int or None, see
    ``pyserver.trio.websocket.connection.WebSocket``): peers with the same window share one
    compressed frame; the rest share one plain frame.
    """
    compress = len(message) >= BROADCAST_COMPRESS_THRESHOLD
    frames: dict[int | None, bytes] = {}
    sent = 0
    for ws in connections:
        if ws.closed:
            continue
        bits: int | None = getattr(ws, "deflate_window_bits", None) if compress else None
        frame = frames.get(bits)
        if frame is None:
            frame = frames[bits] = _frames.encode_message(message, deflate_window_bits=bits)
        try:
            ws.send_frame_nowait(frame)
        except ConnectionClosed:
            continue
        sent += 1
    return sent

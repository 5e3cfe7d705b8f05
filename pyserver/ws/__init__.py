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

#: Messages shorter than this (in characters or bytes) are not compressed for broadcast to
#: a connection that does not say its own threshold (``deflate_key``).
BROADCAST_COMPRESS_THRESHOLD = 128


class _FrameSink(Protocol):
    @property
    def closed(self) -> bool: ...

    def send_frame_nowait(self, frame: bytes) -> None: ...


def broadcast(connections: Iterable[_FrameSink], message: str | bytes) -> int:
    """Queue ``message`` on every open connection; returns how many took it.

    A connection that agreed on permessage-deflate carries ``deflate_key``, ``(window bits,
    zlib level, threshold)`` (see ``pyserver.trio.websocket.connection.DeflateWebSocket``):
    peers with the same key share one compressed frame when the message reaches their
    threshold; the rest share one plain frame. (A connection with only
    ``deflate_window_bits`` is compressed at level 6 from ``BROADCAST_COMPRESS_THRESHOLD``.)
    """
    size = len(message)
    frames: dict[tuple[int, int, int] | None, bytes] = {}
    sent = 0
    for ws in connections:
        if ws.closed:
            continue
        key: tuple[int, int, int] | None = None
        bits: int | None = getattr(ws, "deflate_window_bits", None)  # (a slot: None if plain)
        if bits is not None:
            key = getattr(ws, "deflate_key", None) or (bits, 6, BROADCAST_COMPRESS_THRESHOLD)
            if size < key[2]:
                key = None
        frame = frames.get(key)
        if frame is None:
            frame = frames[key] = (
                _frames.encode_message(message)
                if key is None
                else _frames.encode_message(
                    message, deflate_window_bits=key[0], compression_level=key[1]
                )
            )
        try:
            ws.send_frame_nowait(frame)
        except ConnectionClosed:
            continue
        sent += 1
    return sent

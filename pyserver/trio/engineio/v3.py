"""Engine.IO v3 sessions on Trio (``allow_eio3``): what differs from v4 on the WebSocket.

A v3 session is an :class:`EngineSessionV3` over a :class:`~pyserver.engineio.v3.SessionV3`
core, chosen once when it opens (``SessionTable._new_session``), so v4 sessions run exactly
the code they ran before. Polling needs nothing here (the core encodes its payloads); on the
WebSocket a v3 binary message carries its packet type as a first byte (``\\x04``), both ways:

* incoming, :meth:`EngineSessionV3._receive_ws` drops that byte before the v4 path;
* outgoing, the session's WebSocket is wrapped in a :class:`V3Socket`, which puts it in front
  of every binary message, also of the frames a broadcast encoded once for every recipient
  (``send_encoded_many`` hands them to it as to any WebSocket that is not the Trio one):
  such a frame is re-encoded for this recipient. Text goes through unchanged. A client that
  asked for ``b64=1`` gets binary as ``b4<base64>`` text instead.
"""

from __future__ import annotations

import contextvars
from base64 import b64encode
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import trio

from pyserver import _frames
from pyserver.engineio.session import SessionState
from pyserver.engineio.v3 import SessionV3
from pyserver.http import Request, WebSocket
from pyserver.trio.engineio.session import EngineSession
from pyserver.trio.websocket.inline import Work

__all__ = ["EngineSessionV3", "V3Socket", "v3_frame"]

_BINARY_OPCODE = 0x2


class EngineSessionV3(EngineSession):
    """A session of a socket.io-client 2.x (Engine.IO v3) client (module docstring)."""

    __slots__ = ()

    core: SessionV3

    def _use_ws(self, ws: WebSocket) -> None:
        self._ws = V3Socket(ws, b64=not self.core.binary)

    def _receive_ws(self, message: str | bytes) -> Work | None:
        if message.__class__ is not str:
            if message[:1] != b"\x04":  # another packet type in binary form: the core's
                core = self.core
                if core.state is SessionState.OPEN:
                    self._server._process(self, core.receive_data(message, trio.current_time()))
                return None
            message = message[1:]
        return super()._receive_ws(message)


def v3_frame(frame: bytes, *, b64: bool = False) -> bytes:
    """``frame`` (a whole unmasked, uncompressed frame, as a broadcast builds it) as a v3
    client reads it: a binary message gets its packet type byte (or becomes ``b4<base64>``
    text with ``b64``); any other frame is returned as it is."""
    if frame[0] & 0x0F != _BINARY_OPCODE:
        return frame
    size = frame[1] & 0x7F
    start = 2 if size < 126 else 4 if size == 126 else 10
    payload = frame[start:]
    if b64:
        return _frames.encode_message("b4" + b64encode(payload).decode("ascii"))
    return _frames.encode_message(b"\x04" + payload)


class V3Socket:
    """The WebSocket of a v3 session, as the session's sends see it: binary messages and
    frames rewritten for v3 (module docstring), everything else passed to ``ws``."""

    __slots__ = ("_b64", "remote_address", "request", "subprotocol", "ws")

    def __init__(self, ws: WebSocket, *, b64: bool = False) -> None:
        self.ws = ws
        self._b64 = b64
        self.request: Request = ws.request
        self.remote_address: tuple[str, int] = ws.remote_address
        self.subprotocol: str | None = ws.subprotocol

    def _v3(self, message: str | bytes) -> str | bytes:
        if isinstance(message, str):
            return message
        if self._b64:
            return "b4" + b64encode(message).decode("ascii")
        return b"\x04" + message

    def send_nowait(self, message: str | bytes) -> None:
        self.ws.send_nowait(self._v3(message))

    async def send(self, message: str | bytes) -> None:
        await self.ws.send(self._v3(message))

    def send_frame_nowait(self, frame: bytes) -> None:
        self.ws.send_frame_nowait(v3_frame(frame, b64=self._b64))

    def send_frames_nowait(self, frames: list[bytes]) -> bool:
        return self.ws.send_frames_nowait([v3_frame(f, b64=self._b64) for f in frames])

    @property
    def outbox_depth(self) -> int:
        return self.ws.outbox_depth

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        return self.ws.__aiter__()

    async def receive(self) -> str | bytes:
        return await self.ws.receive()

    async def serve_messages(
        self,
        on_message: Callable[[str | bytes], Callable[[], Coroutine[Any, Any, Any]] | None],
        on_end: Callable[[], None] | None = None,
        *,
        context: contextvars.Context | None = None,
    ) -> None:
        await self.ws.serve_messages(on_message, on_end, context=context)

    def close_nowait(self, code: int = 1000, reason: str = "") -> None:
        self.ws.close_nowait(code, reason)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.ws.close(code, reason)

    @property
    def closed(self) -> bool:
        return self.ws.closed

    @property
    def close_code(self) -> int | None:
        return self.ws.close_code

"""A WebSocket over the ASGI ``websocket`` scope, as ``pyserver.http.WebSocket``.

Under an ASGI server there is no socket: the server owns the connection, does the framing,
the pings and the close handshake, and hands the application events through ``receive``
and ``send``. This class gives the layers above (Engine.IO's WebSocket transport, raw
WebSocket routes) the same object they get from pyserver's own shell
(:class:`pyserver.trio.websocket.connection.WebSocket`), with the same rules:

* **Bounded outbox.** ``send_nowait`` / ``send_frame_nowait`` never wait: a message goes to
  the outbox, and one writer task (:meth:`AsgiWebSocket.run_writer`) awaits the ASGI
  ``send`` for each in turn (the ASGI server's ``send`` waits while the client does not read).
  The outbox holds at most ``max_outbox`` messages and ``max_outbox_bytes`` bytes (an empty
  outbox takes any message); a message that does not fit drops the queue and closes the
  connection 1008 "slow consumer" with one log line: one slow client never holds memory
  without bound, nor holds up anyone else. ``send`` (async) waits for room instead.
* **Encoded frames.** The broadcast path hands over frames already encoded for the wire
  (``send_frame_nowait``, ``send_frames_nowait``); an ASGI server wants the message, so the
  frame's payload is taken back out of it (:func:`message_of`; a broadcast hands the same
  frame object to every recipient, so the last one decoded is kept).
* **Work from callbacks.** ``serve_messages`` reads in the calling task and hands each
  message to the callback; the work it returns runs right there (its first step, with
  :func:`pyserver.trio.websocket.inline.run_first_step`): work that blocks stays in this
  task and the reading goes on in a new one, as the native reader does.
* **Close.** ``close_nowait`` queues the close after what is queued (the writer sends
  ``websocket.close`` once the outbox is written); ``close_code`` is the first known code,
  ours or the peer's (``websocket.disconnect``).
"""

from __future__ import annotations

import contextvars
import logging
import math
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import TYPE_CHECKING, Any

import trio

from pyserver.errors import ConnectionClosed
from pyserver.http import Request, WebSocket
from pyserver.logtext import shown
from pyserver.trio.websocket import inline

__all__ = ["AsgiWebSocket", "message_of"]

logger = logging.getLogger("pyserver.ws")

Receive = Callable[[], Coroutine[Any, Any, dict[str, Any]]]
Send = Callable[[dict[str, Any]], Coroutine[Any, Any, None]]
MessageCallback = Callable[[str | bytes], "inline.Work | None"]

_last_frame: bytes | None = None
_last_message: str | bytes = b""


def message_of(frame: bytes) -> str | bytes:
    """The message carried by one encoded, unmasked, unfragmented server frame (what
    ``pyserver._frames.encode_message`` builds without compression): ``str`` for a text
    frame, ``bytes`` for a binary one. The last frame decoded is remembered, so a
    broadcast decodes its frame once for all its ASGI recipients."""
    global _last_frame, _last_message
    if frame is _last_frame:
        return _last_message
    length = frame[1] & 0x7F
    start = 2 if length < 126 else 4 if length == 126 else 10
    payload = frame[start:]
    message: str | bytes = (
        payload.decode("utf-8", "surrogatepass") if frame[0] & 0x0F == 1 else bytes(payload)
    )
    _last_frame, _last_message = frame, message
    return message


def _call(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


class AsgiWebSocket:
    """An accepted ASGI WebSocket as the layers above want it (module docstring). The
    ASGI runner (:func:`pyserver.trio.asgi.app.serve_websocket`) starts
    :meth:`run_writer` in the connection's nursery (``_nursery``) and runs the handler."""

    __slots__ = (
        "_close_code",
        "_close_deadline",
        "_close_reason",
        "_close_timeout",
        "_closing",
        "_corked",
        "_finished",
        "_in_flight",
        "_max_message_size",
        "_max_outbox",
        "_max_outbox_bytes",
        "_nursery",
        "_outbox",
        "_outbox_bytes",
        "_peer_gone",
        "_read_scope",
        "_receive",
        "_send",
        "_space",
        "_wake",
        "remote_address",
        "request",
        "subprotocol",
    )

    def __init__(
        self,
        request: Request,
        receive: Receive,
        send: Send,
        *,
        subprotocol: str | None,
        max_message_size: int | None,
        max_outbox: int,
        max_outbox_bytes: int,
        close_timeout: float = 5.0,
    ) -> None:
        self.request = request
        self.remote_address = request.remote_address
        self.subprotocol = subprotocol
        self._receive = receive
        self._send = send
        self._max_message_size = max_message_size
        self._max_outbox = max_outbox
        self._max_outbox_bytes = max_outbox_bytes
        self._outbox: deque[str | bytes] = deque()
        self._outbox_bytes = 0
        self._in_flight = 0  # a message being handed to the ASGI server now
        # True only while the reading task runs a message's callback and the first step of
        # its work (never across an await): what is queued then is sent by the reading task
        # right after (one task switch less per message than waking the writer)
        self._corked = False
        self._close_code: int | None = None
        self._close_reason = ""
        self._closing = False  # our close is queued (sent after the outbox)
        # once we close, the reading waits for the peer's end at most close_timeout (as
        # the native close handshake does): then the connection counts as ended
        self._close_timeout = close_timeout
        self._close_deadline = math.inf
        self._read_scope: trio.CancelScope | None = None
        self._peer_gone = False  # websocket.disconnect came, or send failed
        self._wake = trio.Event()  # the writer's: something to do
        self._space = trio.lowlevel.ParkingLot()  # senders waiting for room
        self._finished = trio.Event()  # the writer is done (close sent, or the peer gone)
        self._nursery: trio.Nursery | None = None

    # -- state ---------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once a close has started (ours or the peer's)."""
        return self._close_code is not None

    @property
    def close_code(self) -> int | None:
        return self._close_code

    @property
    def close_reason(self) -> str:
        return self._close_reason

    @property
    def outbox_depth(self) -> int:
        """Messages queued for the writer and not yet handed to the ASGI server."""
        return len(self._outbox) + self._in_flight

    def _closed_error(self) -> ConnectionClosed:
        return ConnectionClosed(self._close_code or 1006, self._close_reason)

    # -- sending -------------------------------------------------------------------------

    def send_nowait(self, message: str | bytes) -> None:
        """Queue one message without waiting; ConnectionClosed once closing. A message that
        does not fit closes the connection as a slow consumer."""
        if self._close_code is not None:
            raise self._closed_error()
        self._enqueue(message)

    def send_frame_nowait(self, frame: bytes) -> None:
        self.send_nowait(message_of(frame))

    def send_frames_nowait(self, frames: list[bytes]) -> bool:
        if self._close_code is not None:
            return False
        for frame in frames:
            if self._close_code is not None:
                break  # closed as a slow consumer: the rest is dropped
            self._enqueue(message_of(frame))
        return True

    async def send(self, message: str | bytes) -> None:
        """Queue one message, waiting while the outbox is full."""
        await trio.lowlevel.checkpoint()
        while True:
            if self._close_code is not None:
                raise self._closed_error()
            if not self._no_room(len(message)):
                self._enqueue(message)
                return
            await self._space.park()

    def _no_room(self, size: int) -> bool:
        outbox = self._outbox
        return bool(outbox) and (
            len(outbox) >= self._max_outbox or self._outbox_bytes + size > self._max_outbox_bytes
        )

    def _enqueue(self, message: str | bytes) -> None:
        size = len(message)
        if self._no_room(size):
            self._slow_consumer()
            return
        self._outbox.append(message)
        self._outbox_bytes += size
        if not self._corked:
            self._wake.set()

    def _slow_consumer(self) -> None:
        logger.warning(
            "closing WebSocket %s (peer %s:%s): slow consumer, %d messages / %d bytes queued",
            shown(self.request.path),
            self.remote_address[0],
            self.remote_address[1],
            len(self._outbox),
            self._outbox_bytes,
        )
        self._outbox.clear()
        self._outbox_bytes = 0
        self.close_nowait(1008, "slow consumer")

    def close_nowait(self, code: int = 1000, reason: str = "") -> None:
        """Close after what is queued (the writer sends ``websocket.close``); a no-op once
        closing."""
        if self._close_code is not None:
            return
        self._close_code = code
        self._close_reason = reason
        self._closing = True
        self._close_deadline = trio.current_time() + self._close_timeout
        if self._read_scope is not None:
            self._read_scope.deadline = self._close_deadline
        self._wake.set()
        self._space.unpark_all()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close and wait until the close is sent (or the peer is gone)."""
        self.close_nowait(code, reason)
        await self._finished.wait()

    async def _flush(self) -> None:
        """Hand what is queued to the ASGI server, in order (one party at a time: the
        writer, or the reading task after a message; ``_in_flight`` says one is at it)."""
        outbox = self._outbox
        send = self._send
        self._in_flight = 1
        try:
            while outbox:
                message = outbox.popleft()
                self._outbox_bytes -= len(message)
                if self._space:
                    self._space.unpark_all()
                if message.__class__ is str:
                    await send({"type": "websocket.send", "text": message})
                else:
                    await send({"type": "websocket.send", "bytes": message})
        finally:
            self._in_flight = 0
        if self._closing:
            self._wake.set()  # (the writer sends the close)

    async def _reader_flush(self) -> None:
        """After a message: the reading task sends what it queued, unless a send is under
        way (the writer is at it and takes the rest)."""
        if self._outbox and not self._in_flight and not self._peer_gone:
            try:
                await self._flush()
            except Exception:  # the ASGI server refuses sends: the connection is gone
                self._gone(1006)

    async def run_writer(self) -> None:
        """Hand the outbox to the ASGI server in order, then the close: until the close is
        sent or the peer is gone. Sets ``_finished`` however it ends."""
        outbox = self._outbox
        send = self._send
        try:
            while True:
                if outbox and not self._in_flight:
                    await self._flush()
                    continue
                if self._peer_gone:
                    return
                if self._closing and not self._in_flight:
                    await send(
                        {
                            "type": "websocket.close",
                            "code": self._close_code,
                            "reason": self._close_reason,
                        }
                    )
                    return
                self._wake = trio.Event()
                await self._wake.wait()
        except Exception:  # the ASGI server refuses sends: the connection is gone
            self._gone(1006)
        finally:
            self._finished.set()

    def _gone(self, code: int) -> None:
        self._peer_gone = True
        if self._close_code is None:
            self._close_code = code
        self._outbox.clear()
        self._outbox_bytes = 0
        self._wake.set()
        self._space.unpark_all()

    # -- receiving -----------------------------------------------------------------------

    async def receive(self) -> str | bytes:
        """The next message (``str`` text, ``bytes`` binary); ConnectionClosed at the end."""
        while not self._peer_gone:
            with trio.CancelScope(deadline=self._close_deadline) as scope:
                self._read_scope = scope
                try:
                    event = await self._receive()
                except Exception:  # the ASGI server has no more events for us
                    self._gone(1006)
                    break
                finally:
                    self._read_scope = None
            if scope.cancelled_caught:  # we closed and the peer did not end in time
                self._gone(self._close_code or 1006)
                break
            kind = event["type"]
            if kind == "websocket.receive":
                text = event.get("text")
                message: str | bytes = text if text is not None else event.get("bytes") or b""
                limit = self._max_message_size
                if limit is not None and len(message) > limit:
                    self.close_nowait(1009, "message too big")
                    continue
                return message
            if kind == "websocket.disconnect":
                self._gone(int(event.get("code", 1005)))
        raise self._closed_error()

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        return self

    async def __anext__(self) -> str | bytes:
        try:
            return await self.receive()
        except ConnectionClosed:
            raise StopAsyncIteration from None

    async def serve_messages(
        self,
        on_message: MessageCallback,
        on_end: Callable[[], None] | None = None,
        *,
        context: contextvars.Context | None = None,
    ) -> None:
        """Hand every message to ``on_message`` as it is read and run the work it returns
        right after it (module docstring), until the connection ends; then ``on_end()``.
        The callbacks and the work run in ``context`` (default: the calling task's)."""
        done = trio.Event()
        await self._read_loop(on_message, on_end, done, context)
        await done.wait()

    async def _read_loop(
        self,
        on_message: MessageCallback,
        on_end: Callable[[], None] | None,
        done: trio.Event,
        context: contextvars.Context | None,
    ) -> None:
        if context is trio.lowlevel.current_task().context:
            context = None  # (this task runs in it already)
        run: Callable[..., Any] = _call if context is None else context.run
        while True:
            try:
                message = await self.receive()
            except ConnectionClosed:
                try:
                    if on_end is not None:
                        run(on_end)
                finally:
                    done.set()
                return
            self._corked = True
            try:
                work = run(on_message, message)
            except Exception:
                self._corked = False
                self._failed("message callback")
                continue
            if work is None:
                self._corked = False
                await self._reader_flush()
                continue
            try:
                coro = run(work)
                yielded = run(inline.run_first_step, coro)
            except Exception:
                self._corked = False
                self._failed("inline work")
                continue
            self._corked = False
            if yielded is inline.FINISHED:
                await self._reader_flush()
                continue
            if self._outbox:
                self._wake.set()  # (no await before resuming the blocked work: the writer)
            # the work blocks: it stays in this task, the reading goes on in a new one
            nursery = self._nursery
            if nursery is not None:
                nursery.start_soon(self._read_loop, on_message, on_end, done, context)
            try:
                await inline.resume(coro, yielded, context)
            except Exception:
                self._failed("inline work")
            if nursery is None:
                continue
            return

    def _failed(self, what: str) -> None:
        logger.exception(
            "WebSocket %s (peer %s:%s): %s failed",
            shown(self.request.path),
            self.remote_address[0],
            self.remote_address[1],
            what,
        )
        self.close_nowait(1011, "internal error")

    def __repr__(self) -> str:
        state = "open" if self._close_code is None else f"closed {self._close_code}"
        return f"<AsgiWebSocket {self.request.path} {state}>"


if TYPE_CHECKING:  # mypy holds the class to the protocol the layers above are written for

    def _conforms(ws: AsgiWebSocket) -> WebSocket:
        return ws

"""The Trio shell for one accepted WebSocket: reader, single writer, timers, backpressure.

Tasks per connection (all in one nursery, ended together):

* the **reader** calls ``receive_some`` and feeds every chunk to the sans-IO core in one call
  (one Rust crossing per read); data messages go to the inbox (a deque), the consumer is woken
  only when it is parked. The reader pauses while the inbox holds ``max_inbox`` messages.
* the **writer** is the only task that writes to the stream: it takes everything queued in the
  outbox and writes it with one ``send_all``. It closes the stream once the connection is
  CLOSED and the outbox is flushed.
* the **timer** (only with keepalive pings, or once a close is under way) sleeps until the
  core's ``next_deadline()``.
* the **handler** runs in the task that called :meth:`WebSocket.run`.

Resource handling: the outbox is bounded by frame count and bytes. ``send`` waits for room;
``send_nowait``/``send_frame_nowait`` never wait: overflowing closes the connection as a slow
consumer (1008 "slow consumer", one log line) and drops what was queued, so one slow peer
never holds up anyone else. Waking uses ``wait_task_rescheduled``/``reschedule`` directly:
no channel, Event or task per message, and no checkpoint per message while messages are
ready (a full checkpoint every 32 consecutive ready messages keeps the scheduler fair).

Error handling: a peer's protocol error is answered with its close code by the core and
logged once (``pyserver.ws``); a handler exception is logged once and closes with 1011.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from pyserver.errors import ConnectionClosed
from pyserver.http.types import Request
from pyserver.ws.connection import ConnectionState, WebSocketConnection

__all__ = ["WebSocket"]

logger = logging.getLogger("pyserver.ws")

_OPEN = ConnectionState.OPEN
_CLOSING = ConnectionState.CLOSING
_CLOSED = ConnectionState.CLOSED
_reschedule = trio.lowlevel.reschedule
_current_task = trio.lowlevel.current_task
_wait_rescheduled = trio.lowlevel.wait_task_rescheduled
_SUCCEEDED = trio.lowlevel.Abort.SUCCEEDED
_FAIR_STREAK = 32
_DRAINED: list[str | bytes] = []  # never appended to


class _Parked:
    """Room for exactly one parked task; waking it is one ``reschedule``."""

    __slots__ = ("task",)

    def __init__(self) -> None:
        self.task: trio.lowlevel.Task | None = None

    async def park(self) -> None:
        if self.task is not None:
            raise trio.BusyResourceError("another task is already waiting here")
        self.task = _current_task()
        await _wait_rescheduled(self.abort)

    def abort(self, _: Any) -> trio.lowlevel.Abort:
        self.task = None
        return _SUCCEEDED

    def unpark(self) -> None:
        task = self.task
        if task is not None:
            self.task = None
            _reschedule(task)


class WebSocket:
    """An accepted WebSocket (implements ``pyserver.http.types.WebSocket``)."""

    __slots__ = (
        "__weakref__",
        "_binary",
        "_conn",
        "_consumer",
        "_discard",
        "_done",
        "_done_event",
        "_head",
        "_inbox",
        "_inbox_low",
        "_max_inbox",
        "_max_outbox",
        "_max_outbox_bytes",
        "_nursery",
        "_outbox",
        "_outbox_bytes",
        "_paused_reader",
        "_reader_finished",
        "_seen_state",
        "_space",
        "_streak",
        "_stream",
        "_text",
        "_timer_running",
        "_timer_sleep",
        "_trailing",
        "_writer_idle",
        "deflate_window_bits",
        "remote_address",
        "request",
        "subprotocol",
    )

    def __init__(
        self,
        stream: trio.abc.Stream,
        request: Request,
        conn: WebSocketConnection,
        *,
        subprotocol: str | None = None,
        trailing_data: bytes = b"",
        max_inbox: int = 64,
        max_outbox: int = 1024,
        max_outbox_bytes: int = 4 << 20,
    ) -> None:
        self.request = request
        self.remote_address = request.remote_address
        self.subprotocol = subprotocol
        deflate = conn.deflate
        #: The window a shared compressed broadcast frame must use for this peer, or None
        #: (no permessage-deflate, or a stateful server context): see ``pyserver.ws.broadcast``.
        self.deflate_window_bits: int | None = (
            deflate.server_max_window_bits
            if deflate is not None and deflate.server_no_context_takeover
            else None
        )
        self._stream = stream
        self._conn = conn
        self._text = conn.encoder.text
        self._binary = conn.encoder.binary
        self._trailing = trailing_data
        # The inbox is the decoder's own result list, adopted whole when the previous one is
        # consumed (no copy), read from ``_head``; the shared empty list marks "drained".
        self._inbox: list[str | bytes] = _DRAINED
        self._head = 0
        self._discard = False  # the handler is done: nobody will read the inbox again
        self._reader_finished = False
        self._max_inbox = max_inbox
        self._inbox_low = max_inbox // 2
        self._outbox: list[bytes] = []
        self._outbox_bytes = 0
        self._max_outbox = max_outbox
        self._max_outbox_bytes = max_outbox_bytes
        self._consumer = _Parked()
        self._paused_reader = _Parked()
        self._writer_idle = _Parked()
        self._space: trio.lowlevel.ParkingLot | None = None
        self._done = False
        self._done_event: trio.Event | None = None
        self._timer_sleep: trio.CancelScope | None = None
        self._timer_running = False
        self._nursery: trio.Nursery | None = None
        self._seen_state = conn.state
        self._streak = 0

    # -- public API --------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once a close handshake has started (or the connection ended)."""
        return self._conn.state is not _OPEN

    @property
    def outbox_depth(self) -> int:
        """Frames queued for the writer and not yet written."""
        return len(self._outbox)

    @property
    def close_code(self) -> int | None:
        return self._conn.close_code

    @property
    def close_reason(self) -> str:
        return self._conn.close_reason

    def __aiter__(self) -> WebSocket:
        return self

    async def __anext__(self) -> str | bytes:
        inbox = self._inbox
        head = self._head
        if head < len(inbox):
            self._streak += 1
            if self._streak >= _FAIR_STREAK:
                self._streak = 0
                await trio.lowlevel.checkpoint()
                return await self._wait_message(StopAsyncIteration)
            message = inbox[head]
            head += 1
            if head == len(inbox):
                self._inbox = _DRAINED
                head = 0
            self._head = head
            if self._paused_reader.task is not None and len(inbox) - head <= self._inbox_low:
                self._paused_reader.unpark()
            return message
        return await self._wait_message(StopAsyncIteration)

    async def receive(self) -> str | bytes:
        """The next message (``str`` text, ``bytes`` binary); ConnectionClosed at the end."""
        try:
            return await self.__anext__()
        except StopAsyncIteration:
            raise self._closed_error() from None

    async def _wait_message(self, end: type[BaseException]) -> str | bytes:
        while self._head >= len(self._inbox):
            if self._conn.state is _CLOSED:
                await trio.lowlevel.checkpoint()
                raise end
            consumer = self._consumer
            if consumer.task is not None:
                raise trio.BusyResourceError("another task is already receiving")
            consumer.task = _current_task()  # parked inline: one coroutine frame less
            await _wait_rescheduled(consumer.abort)
        self._streak = 0
        inbox = self._inbox
        head = self._head
        message = inbox[head]
        head += 1
        if head == len(inbox):
            self._inbox = _DRAINED
            head = 0
        self._head = head
        if self._paused_reader.task is not None and len(inbox) - head <= self._inbox_low:
            self._paused_reader.unpark()
        return message

    def send_nowait(self, message: str | bytes) -> None:
        """Queue one message without waiting. Raises ConnectionClosed if the connection is
        already closing; a full outbox closes it as a slow consumer (the message is lost)."""
        if self._conn.state is not _OPEN:
            raise self._closed_error()
        frame = self._text(message) if message.__class__ is str else self._binary(message)  # type: ignore[arg-type]
        outbox = self._outbox
        outbox.append(frame)
        size = self._outbox_bytes + len(frame)
        self._outbox_bytes = size
        if len(outbox) > self._max_outbox or (size > self._max_outbox_bytes and len(outbox) > 1):
            self._slow_consumer()
            return
        task = self._writer_idle.task
        if task is not None:
            self._writer_idle.task = None
            _reschedule(task)

    def send_frame_nowait(self, frame: bytes) -> None:
        """Queue an already encoded frame (the broadcast path: encode once, send many)."""
        if self._conn.state is not _OPEN:
            raise self._closed_error()
        self._enqueue(frame)

    async def send(self, message: str | bytes) -> None:
        """Queue one message, waiting while the outbox is full."""
        conn = self._conn
        if conn.state is not _OPEN:
            await trio.lowlevel.checkpoint()
            raise self._closed_error()
        self._streak += 1
        if self._streak >= _FAIR_STREAK:  # a sender that never waits still lets others run
            self._streak = 0
            await trio.lowlevel.checkpoint()
        frame = self._text(message) if message.__class__ is str else self._binary(message)  # type: ignore[arg-type]
        size = len(frame)
        # wait until the frame fits (an empty outbox takes any frame); no await between
        # this check and the append, so concurrent senders cannot overfill it
        while self._outbox and (
            len(self._outbox) >= self._max_outbox
            or self._outbox_bytes + size > self._max_outbox_bytes
        ):
            if conn.state is not _OPEN:
                break
            if self._space is None:
                self._space = trio.lowlevel.ParkingLot()
            await self._space.park()
        if conn.state is not _OPEN:
            raise self._closed_error()
        self._enqueue(frame)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the close handshake (if still open) and wait until the connection is done:
        the peer answered, or ``close_timeout`` passed and the connection was dropped."""
        self._conn.close(code, reason, now=trio.current_time())
        self._sync()
        await self.wait_closed()

    async def wait_closed(self) -> None:
        """Wait until the connection is finished (its stream closed)."""
        if self._done:
            await trio.lowlevel.checkpoint()
            return
        if self._done_event is None:
            self._done_event = trio.Event()
        await self._done_event.wait()

    # -- running -----------------------------------------------------------------------

    async def run(self, handler: Callable[[WebSocket], Awaitable[None]]) -> None:
        """Run the connection's tasks and ``handler(self)`` until all are done; the stream
        is closed on the way out."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._reader)
                nursery.start_soon(self._writer)
                if self._conn.next_deadline() is not None:
                    self._start_timer()
                try:
                    await handler(self)
                except ConnectionClosed:
                    pass
                except Exception:
                    logger.exception(
                        "WebSocket handler failed (%s, peer %s)",
                        self.request.path,
                        _peer(self.remote_address),
                    )
                    self._close_quietly(1011, "internal error")
                else:
                    self._close_quietly(1000, "")
                # while we wait for the peer's Close, what it still sends is dropped
                self._discard = True
                self._inbox = _DRAINED
                self._head = 0
                self._paused_reader.unpark()
        finally:
            self._nursery = None
            self._finish()
            await trio.aclose_forcefully(self._stream)

    def _close_quietly(self, code: int, reason: str) -> None:
        self._conn.close(code, reason, now=trio.current_time())
        self._sync()

    # -- internals ---------------------------------------------------------------------

    def _closed_error(self) -> ConnectionClosed:
        conn = self._conn
        return ConnectionClosed(conn.close_code or 1006, conn.close_reason)

    def _enqueue(self, frame: bytes) -> None:
        outbox = self._outbox
        outbox.append(frame)
        size = self._outbox_bytes + len(frame)
        self._outbox_bytes = size
        if len(outbox) > self._max_outbox or (size > self._max_outbox_bytes and len(outbox) > 1):
            self._slow_consumer()
            return
        task = self._writer_idle.task
        if task is not None:
            self._writer_idle.task = None
            _reschedule(task)

    def _slow_consumer(self) -> None:
        logger.warning(
            "closing WebSocket %s (peer %s): slow consumer, %d frames / %d bytes queued",
            self.request.path,
            _peer(self.remote_address),
            len(self._outbox),
            self._outbox_bytes,
        )
        self._outbox = []
        self._outbox_bytes = 0
        self._conn.close(1008, "slow consumer", now=trio.current_time())
        self._sync()

    def _sync(self) -> None:
        """Move the core's control frames to the outbox and react to state changes."""
        conn = self._conn
        if conn.pending:
            frames = conn.pending
            conn.pending = []
            self._outbox.extend(frames)
            self._outbox_bytes += sum(map(len, frames))
            self._writer_idle.unpark()
        state = conn.state
        if state is self._seen_state:
            return
        self._seen_state = state
        if conn.failure is not None:
            code, reason = conn.failure
            logger.warning(
                "closing WebSocket %s (peer %s): %d %s",
                self.request.path,
                _peer(self.remote_address),
                code,
                reason,
            )
        if state is _CLOSED:
            self._consumer.unpark()
            self._paused_reader.unpark()
            self._writer_idle.unpark()
            if self._space is not None:
                self._space.unpark_all()
        self._update_timer()

    def _update_timer(self) -> None:
        sleep = self._timer_sleep
        if sleep is not None:
            deadline = self._conn.next_deadline()
            sleep.deadline = -math.inf if deadline is None else deadline
        elif not self._timer_running and self._conn.next_deadline() is not None:
            self._start_timer()

    def _start_timer(self) -> None:
        if self._nursery is not None and not self._timer_running:
            self._timer_running = True
            self._nursery.start_soon(self._timer)

    async def _timer(self) -> None:
        conn = self._conn
        try:
            while True:
                deadline = conn.next_deadline()
                if deadline is None:
                    return
                with trio.CancelScope(deadline=deadline) as sleep:
                    self._timer_sleep = sleep
                    await trio.sleep_forever()
                self._timer_sleep = None
                now = trio.current_time()
                deadline = conn.next_deadline()
                if deadline is not None and now >= deadline:
                    was_closing = conn.state is _CLOSING
                    conn.handle_timeout(now)
                    self._sync()
                    if was_closing and conn.state is _CLOSED:
                        # the peer never answered our Close (or never read it): drop the
                        # stream; a reader or writer blocked on it gets ClosedResourceError
                        await trio.aclose_forcefully(self._stream)
        finally:
            self._timer_sleep = None
            self._timer_running = False

    async def _reader(self) -> None:
        conn = self._conn
        consumer = self._consumer
        receive_some = self._stream.receive_some
        try:
            data = self._trailing
            self._trailing = b""
            while True:
                if data:
                    messages = conn.receive_data(data)
                    if messages and not self._discard:
                        inbox = self._inbox
                        if self._head >= len(inbox):
                            self._inbox = messages  # adopt the decoder's list: no copy
                            self._head = 0
                        else:
                            inbox.extend(messages)
                        task = consumer.task
                        if task is not None:
                            consumer.task = None
                            _reschedule(task)
                    if conn.pending or conn.state is not self._seen_state:
                        self._sync()
                    if conn.state is _CLOSED:
                        if conn.failure is not None:
                            await self._drain()
                        return
                    while (
                        len(self._inbox) - self._head >= self._max_inbox
                        and conn.state is not _CLOSED
                    ):
                        await self._paused_reader.park()
                # 64 KiB as a rule (larger buffers cost an mmap each in CPython); the
                # whole rest of a large partial frame (up to 1 MiB) in one call.
                wanted = conn.wanted
                data = bytes(await receive_some(65536 if wanted <= 65536 else min(wanted, 1 << 20)))
                if not data:
                    break
            conn.receive_eof()
            self._sync()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            conn.receive_eof()
            self._sync()
        finally:
            self._reader_finished = True
            self._writer_idle.unpark()

    async def _drain(self) -> None:
        """After failing the connection: read and drop what the peer still sends (its
        decoder is dead) until it closes, so closing our socket does not reset the
        connection and destroy the Close frame we sent before the peer reads it."""
        receive_some = self._stream.receive_some
        with trio.move_on_after(self._conn.close_timeout):
            while await receive_some(65536):
                pass

    async def _writer(self) -> None:
        conn = self._conn
        send_all = self._stream.send_all
        idle = self._writer_idle
        writing = False
        try:
            while True:
                batch = self._outbox
                if batch:
                    size = self._outbox_bytes
                    self._outbox = []
                    self._outbox_bytes = 0
                    if self._space is not None:
                        self._space.unpark_all()
                    writing = True
                    if len(batch) == 1:
                        await send_all(batch[0])
                    elif size <= _JOIN_LIMIT:
                        await send_all(b"".join(batch))
                    else:
                        await _send_large_batch(send_all, batch)
                    writing = False
                elif conn.state is _CLOSED:
                    if conn.failure is not None and not self._reader_finished:
                        await self._linger()
                    break
                else:
                    idle.task = _current_task()  # parked inline: one coroutine frame less
                    await _wait_rescheduled(idle.abort)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            conn.abort()
            self._sync()
        finally:
            if conn.state is _OPEN and not writing:
                # cancelled from outside (the server is shutting down): say so if the
                # socket takes it right away; never after a partly written frame
                with trio.CancelScope(shield=True, deadline=trio.current_time() + 0.5):
                    try:
                        await send_all(conn.encoder.close(1001, "server shutting down"))
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        pass
                conn.abort(1001, "server shutting down")
            self._finish()
            self._update_timer()
            # closing the stream also ends a reader blocked in receive_some
            await trio.aclose_forcefully(self._stream)

    async def _linger(self) -> None:
        """Half-close after our failure Close, then wait (bounded) for the reader to drain
        the peer's remaining bytes up to its end of stream."""
        stream = self._stream
        idle = self._writer_idle
        with trio.move_on_after(self._conn.close_timeout):
            if isinstance(stream, trio.abc.HalfCloseableStream):
                try:
                    await stream.send_eof()
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
            while not self._reader_finished:
                idle.task = _current_task()
                await _wait_rescheduled(idle.abort)

    def _finish(self) -> None:
        if not self._done:
            self._done = True
            self._conn.abort()
            self._sync()
            if self._done_event is not None:
                self._done_event.set()


#: Frames are joined into one write up to this many bytes; a larger batch is written in
#: pieces (a big frame on its own), so echoing large messages does not build (and page-fault)
#: a fresh multi-megabyte buffer per batch.
_JOIN_LIMIT = 65536


async def _send_large_batch(
    send_all: Callable[[bytes], Awaitable[None]], batch: list[bytes]
) -> None:
    group: list[bytes] = []
    group_size = 0
    for frame in batch:
        if len(frame) >= _JOIN_LIMIT:
            if group:
                await send_all(group[0] if len(group) == 1 else b"".join(group))
                group = []
                group_size = 0
            await send_all(frame)
            continue
        group.append(frame)
        group_size += len(frame)
        if group_size >= _JOIN_LIMIT:
            await send_all(group[0] if len(group) == 1 else b"".join(group))
            group = []
            group_size = 0
    if group:
        await send_all(group[0] if len(group) == 1 else b"".join(group))


def _peer(address: tuple[str, int]) -> str:
    host, port = address[0], address[1]
    return f"{host}:{port}" if host else "?"

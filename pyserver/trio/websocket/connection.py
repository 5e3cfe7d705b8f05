"""The Trio shell for one accepted WebSocket: reader, single writer, timers, backpressure.

Tasks per connection (all in one nursery, ended together):

* the **reader** reads the socket and feeds every chunk to the sans-IO core in one call (one
  Rust crossing per read). Data messages go to the inbox (a list), the consumer is woken only
  when it is parked; the reader pauses while the inbox holds ``max_inbox`` messages. A
  consumer that takes messages through a callback (:meth:`WebSocket.serve_messages`, what
  Engine.IO does) gets them straight from the reader, and when it asks before the reader task
  has started, it does the reading itself: one task fewer per connection. Work the callback
  offers (:mod:`pyserver.trio.websocket.inline`: Socket.IO handlers) runs in the reading task right
  after the batch it came in, and what the batch queued on this connection goes out in one write
  from the reader (no writer wake-up); work that blocks keeps the task, and a new reader task
  goes on reading.
  **The reactor** (Linux, :mod:`pyserver.trio.websocket.reactor`): a reader that would wait for
  the socket while callbacks take the messages and the connection is open registers the
  socket with the run's reactor instead, and its task ends; one reactor task then reads every
  such connection in one scheduler step per batch (``_react``: the loop's body for one read).
  The end of the stream and a completed close end the reading there; a failure (whose
  draining needs a task), a Pong waiting for room in the outbox (a task waits for it) or
  an unexpected error gives the reading back to a new reader task.
  The socket always leaves the reactor before the stream is closed (``_leave_reactor``).
* the **writer** is the only task that writes to the stream: it takes everything queued in the
  outbox and writes it in one write. It closes the stream once the connection is CLOSED and
  the outbox is flushed. A writer with nothing to write for ``WRITER_IDLE_SECONDS`` or more
  ends (an idle connection keeps no writer task); the next frame queued starts a new one, so
  there is still never more than one.
  **Try-write-first** (the one refinement of the single-writer rule, as asyncio/uvloop
  transports do): ``send_frame_nowait``/``send_frames_nowait`` (the broadcast path) write
  the frame at once from the calling task, with one non-blocking ``os.write`` on a plain
  socket, when the outbox is empty and no write is in flight (the writer is parked idle,
  retiring, or there is none) and the connection is open (so never after a Close was queued
  or sent: control frames go through the outbox, which is then not empty). Bytes are then
  still written by one party at a time, in queue order: nothing is queued that could go
  before them, and nobody is mid-frame. What the kernel does not take goes to the outbox as
  the first item (the rest of the frame, before anything queued later) and the writer
  starts or wakes as usual; a failed write (no room, or a broken socket) queues the whole
  frame, and the writer meets the error and closes as it always does. No await on that
  path, so no cancellation point. A Socket.IO broadcast goes through
  ``send_frames_to_many``: the same rule per recipient, with all of the direct writes made
  by one Rust call (``_frames.write_many``, one ``write(2)`` each). ``send``/``send_nowait``
  (replies) always queue, so a
  handler answering a chunk of messages still goes out in one write; after a reader's batch
  that write is made the same way by the reader itself.
  **One direct write per connection per scheduler batch**: after one, the connection is
  busy until the loop has gone round (as a Node socket is until its write callback), and
  what is sent to it meanwhile is queued and written in one write by the per-run *ticker*
  task at the start of the next batch (one task step for all such connections, no writer
  woken). So several broadcasts in one batch cost each recipient one write, not one each,
  and a server that falls behind writes less often instead of more.
  **Queued for the reactor's step**: during a step of the reactor (the module docstring of
  :mod:`pyserver.trio.websocket.reactor`), what is sent to a connection other than one whose
  read is being handled (a broadcast's recipients) is not written at once: it is queued,
  and the step's end writes every such connection's queue in one write, all of them in
  one Rust call (``_frames.write_each``). A step that handles several broadcasts (a server
  that has fallen behind reads several per step) then costs each recipient one write for
  all of them. The ticker writes what it flushes the same way.
* **timers**: while the connection is open, the core's ``next_deadline()`` (keepalive
  pings) is watched by the run's one keepalive timer (``_Keepalive``: a
  :class:`~pyserver.trio.timers.DeadlineTimer`, one heap and one system task for every
  connection), so an idle connection with keepalive costs a heap entry, not a sleeping task;
  when a deadline comes, it feeds ``now`` to the core and sends what the core queued (a Ping
  goes out in one direct write when the socket takes it, as a reader's batch does; a 1011
  Close wakes the writer), which runs no user code. Once a close is under way, a **timer**
  task of the connection sleeps until the close deadline and then drops the stream (which
  needs an ``await``, and may hand the reading to a new task of the connection): the close
  handshake is short and happens once per connection, so that task costs no idle memory.
* the **handler** runs in the task that called :meth:`WebSocket.run`.

I/O: on a plain ``trio.SocketStream`` the reader and the writer use the socket's file
descriptor directly: ``os.read``/``os.write`` (non-blocking; the socket is) and
``trio.lowlevel.wait_readable``/``wait_writable`` when the kernel has nothing to give or no
room. That spares the scheduler pass ``receive_some``/``send_all`` take after every
successful call, and a reader parked in ``wait_readable`` holds a much smaller stack than one
parked in ``receive_some``. The descriptor is looked up before every call (a closed socket
says -1), never cached. Any other stream (TLS, memory streams in tests) goes through
``receive_some``/``send_all``.

Resource handling: the outbox is bounded by frame count and bytes. ``send`` waits for room;
``send_nowait``/``send_frame_nowait`` never wait: overflowing closes the connection as a slow
consumer (1008 "slow consumer", one log line) and drops what was queued, so one slow peer
never holds up anyone else. Control frames from the core count against the same limit
(``_no_room``, the one rule): a keepalive Ping that does not fit closes as a data frame does,
and a Pong that does not fit waits (only the latest Ping is answered, so one at most) while
the connection is not read, until the writer has taken the queue: a peer that pings and never
reads its Pongs gets a full outbox and no more reading, not a Pong per Ping.

Waking uses ``wait_task_rescheduled``/``reschedule`` directly: no channel, Event or task per
message, and no checkpoint per message while messages are ready (a full checkpoint every 32
consecutive ready messages or reads keeps the scheduler fair).

Error handling: a peer's protocol error is answered with its close code by the core and
logged once (``pyserver.ws``); a handler (or message callback) exception is logged once and
closes with 1011. Cancelled from outside while open (the server is shutting down), the
connection says 1001 "server shutting down" if the socket takes it at once.
"""

from __future__ import annotations

import contextvars
import enum
import logging
import math
import os
import sys
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import trio

from pyserver import _frames
from pyserver.errors import ConnectionClosed
from pyserver.http import Request
from pyserver.logtext import shown
from pyserver.trio.timers import DeadlineTimer
from pyserver.trio.websocket import inline
from pyserver.trio.websocket import reactor as _reactor_module
from pyserver.trio.websocket.reactor import Blocked, Reactor
from pyserver.ws.connection import PONG_HEAD, ConnectionState, WebSocketConnection

__all__ = ["WRITER_IDLE_SECONDS", "WebSocket", "send_frames_to_many"]

logger = logging.getLogger("pyserver.ws")

_OPEN = ConnectionState.OPEN
_CLOSING = ConnectionState.CLOSING
_CLOSED = ConnectionState.CLOSED
_reschedule = trio.lowlevel.reschedule
_current_task = trio.lowlevel.current_task
_wait_rescheduled = trio.lowlevel.wait_task_rescheduled
_wait_readable = trio.lowlevel.wait_readable
_wait_writable = trio.lowlevel.wait_writable
_SUCCEEDED = trio.lowlevel.Abort.SUCCEEDED
_os_read = os.read
_os_write = os.write
_FAIR_STREAK = 32
_DRAINED: list[str | bytes] = []  # never appended to
_NO_CONTEXT = contextvars.Context()  # (never run in: serve_messages gives the connection its own)
_FD_IO = sys.platform != "win32"  # os.read/os.write work on socket descriptors
_write_many = getattr(_frames, "write_many", None) if _FD_IO else None  # (Unix only)
_write_each = getattr(_frames, "write_each", None) if _FD_IO else None  # (Unix only)

WRITER_IDLE_SECONDS = 0.5
"""A writer task that wrote nothing for this long (up to twice as long) ends."""

MessageCallback = Callable[[str | bytes], None]


class _Reading(enum.Enum):
    """Who reads the socket."""

    PENDING = "pending"  # the reader task is started but has not run yet
    TASK = "task"  # the reader task
    INLINE = "inline"  # the task in serve_messages(); the reader task found it so and left
    REACTOR = "reactor"  # this run's reactor (pyserver.trio.websocket.reactor)


class _WriterState(enum.Enum):
    NONE = "none"  # no writer task (not started yet, or retired while idle)
    RUNNING = "running"
    RETIRING = "retiring"  # asked to end at its next idle moment


_W_NONE = _WriterState.NONE
_W_RUNNING = _WriterState.RUNNING
_W_RETIRING = _WriterState.RETIRING


def _socket_of(stream: trio.abc.Stream) -> trio.socket.SocketType | None:
    # the exact type: a subclass may wrap its I/O, and TLS streams are not SocketStreams
    if _FD_IO and type(stream) is trio.SocketStream:
        return stream.socket
    return None


class WebSocket:
    """An accepted WebSocket (implements ``pyserver.http.WebSocket``)."""

    __slots__ = (
        "__weakref__",
        "_conn",
        "_consumer",
        "_context",
        "_corked",
        "_deferred",
        "_direct_gen",
        "_discard",
        "_done",
        "_done_event",
        "_encoder",
        "_head",
        "_inbox",
        "_inbox_low",
        "_keepers",
        "_max_inbox",
        "_max_outbox",
        "_max_outbox_bytes",
        "_nursery",
        "_on_end",
        "_on_message",
        "_outbox",
        "_outbox_bytes",
        "_paused_reader",
        "_pong",
        "_reactor",
        "_reactor_fd",
        "_reader_finished",
        "_reader_generation",
        "_reading",
        "_seen_state",
        "_sock",
        "_space",
        "_stepped",
        "_streak",
        "_stream",
        "_ticker",
        "_timer_running",
        "_timer_sleep",
        "_torn",
        "_trailing",
        "_writer",
        "_writer_busy",
        "_writer_state",
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
        self._sock = _socket_of(stream)
        self._conn = conn
        self._encoder = conn.encoder  # shared by connections without deflate
        self._trailing = trailing_data
        # The inbox is the decoder's own result list, adopted whole when the previous one is
        # consumed (no copy), read from ``_head``; the shared empty list marks "drained".
        self._inbox: list[str | bytes] = _DRAINED
        self._head = 0
        self._discard = False  # the handler is done: nobody will read the inbox again
        self._on_message: MessageCallback | None = None
        self._on_end: Callable[[], None] | None = None
        # True only while the reader delivers a batch and runs its inline work (never
        # across a yield): replies queued meanwhile wait for the reader's one write after it
        self._corked = False
        self._reading = _Reading.PENDING
        self._reader_finished = False
        self._reader_generation = 0  # bumped by each hand-off of the reading (inline work)
        self._max_inbox = max_inbox
        self._inbox_low = max_inbox // 2
        self._outbox: list[bytes] = []
        self._outbox_bytes = 0
        self._max_outbox = max_outbox
        self._max_outbox_bytes = max_outbox_bytes
        # a Pong that did not fit in the outbox: the reading waits with it (_queue_controls)
        self._pong: bytes | None = None
        # parked tasks (each woken by one ``reschedule``): the consumer, the reader while the
        # inbox is full, the writer while the outbox is empty
        self._consumer: trio.lowlevel.Task | None = None
        self._paused_reader: trio.lowlevel.Task | None = None
        self._writer: trio.lowlevel.Task | None = None
        self._writer_state = _W_NONE
        self._writer_busy = False  # woken since the idle sweeper last looked
        self._torn = False  # the writer was cancelled in the middle of a frame
        self._space: trio.lowlevel.ParkingLot | None = None
        self._done = False
        self._done_event: trio.Event | None = None
        self._timer_sleep: trio.CancelScope | None = None
        self._timer_running = False
        self._nursery: trio.Nursery | None = None
        self._seen_state = conn.state
        self._streak = 0
        self._direct_gen = -1  # the _Ticker generation of the last direct write, or -1
        self._ticker: _Ticker | None = None  # this run's, looked up when first needed
        self._deferred = False  # queued frames wait for the ticker (_defer)
        self._stepped = False  # queued frames wait for the end of the reactor's step
        # read by this run's reactor (see pyserver.trio.websocket.reactor) instead of a task
        self._reactor: Reactor | None = None
        self._reactor_fd = -1
        # where messages go to callbacks: the context every delivery, every first step of
        # inline work and every step of blocked work runs in, whichever task runs them
        self._context: contextvars.Context = _NO_CONTEXT
        # the outermost cancel scopes of reactor tasks finishing blocked work of ours
        self._keepers: list[trio.CancelScope] | None = None

    # -- public API --------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once a close handshake has started (or the connection ended)."""
        return self._conn.state is not _OPEN

    @property
    def outbox_depth(self) -> int:
        """Frames queued for the writer and not yet written, plus one for a frame written
        directly (try-write-first) in the current scheduler batch: like a Node socket, a
        connection counts as busy until the loop has gone round once after a send."""
        depth = len(self._outbox)
        ticker = self._ticker
        if self._direct_gen >= 0 and ticker is not None:
            if self._direct_gen == ticker.generation:
                return depth + 1
            self._direct_gen = -1
        return depth

    @property
    def close_code(self) -> int | None:
        return self._conn.close_code

    @property
    def close_reason(self) -> str:
        return self._conn.close_reason

    def __aiter__(self) -> WebSocket:
        return self

    async def __anext__(self) -> str | bytes:
        if self._head < len(self._inbox):
            self._streak += 1
            if self._streak < _FAIR_STREAK:
                return self._take()
            self._streak = 0
            await trio.lowlevel.checkpoint()
        # parked inline (no helper coroutine): an idle consumer's stack stays short
        while self._head >= len(self._inbox):
            if self._conn.state is _CLOSED:
                await trio.lowlevel.checkpoint()
                raise StopAsyncIteration
            if self._consumer is not None:
                raise trio.BusyResourceError("another task is already receiving")
            self._consumer = _current_task()
            await _wait_rescheduled(self._abort_consumer)
        self._streak = 0
        return self._take()

    def _take(self) -> str | bytes:
        """The next inbox message (there is one); the paused reader resumes at low water."""
        inbox = self._inbox
        head = self._head
        message = inbox[head]
        head += 1
        if head == len(inbox):
            self._inbox = _DRAINED
            head = 0
        self._head = head
        if self._paused_reader is not None and len(inbox) - head <= self._inbox_low:
            self._unpark_reader()
        return message

    async def receive(self) -> str | bytes:
        """The next message (``str`` text, ``bytes`` binary); ConnectionClosed at the end."""
        try:
            return await self.__anext__()
        except StopAsyncIteration:
            raise self._closed_error() from None

    async def serve_messages(
        self, on_message: MessageCallback, on_end: Callable[[], None] | None = None
    ) -> None:
        """Hand every message to ``on_message(message)`` as it is read, until the connection
        is closed; then call ``on_end()`` (if given) and return. Messages already received
        go first, in order.

        ``on_message`` is synchronous and must not block: it runs in the task that reads
        the socket. When the reader task has not started yet, that is the calling task
        itself (one task fewer per connection); once there is nothing to read, on Linux,
        the run's reactor task (:mod:`pyserver.trio.websocket.reactor`), which reads every such
        connection. An exception from ``on_message`` is logged
        and closes the connection with 1011 (one from ``on_end`` is logged). Not together
        with ``async for``/``receive``.

        Work that ``on_message`` offers with :func:`pyserver.trio.websocket.inline.offer` runs in
        the reading task right after the batch of messages it came in (see that module);
        meanwhile what is sent on this connection is queued and goes out in one write after
        the batch. Work that blocks keeps its task, and a new task goes on reading: so this
        method may return later than the end of the connection (when this task was the one
        keeping it), which is why ``on_end`` is called by the reader as soon as the reading
        ends. Work kept by a reactor task is cancelled if this connection is cancelled (the
        server is stopping); it is not waited for.

        Contexts: every callback, and every step of the work they offer, runs in the
        calling task's ``contextvars`` context, whichever task reads: a ``ContextVar`` that
        work sets (also after it blocked) is seen by this connection's later work, and
        never by another connection's."""
        if self._on_message is not None or self._consumer is not None:
            raise trio.BusyResourceError("another task is already receiving")
        self._on_message = on_message
        self._on_end = on_end
        # the connection's context from now on: this task's own (so this task, as the
        # reader, runs handlers with no Context.run; the tasks after it enter this one)
        self._context = _current_task().context
        if self._head < len(self._inbox):
            inbox, head = self._inbox, self._head
            self._inbox = _DRAINED
            self._head = 0
            self._deliver(inbox[head:] if head else inbox)
            self._unpark_reader()
        try:
            if self._reading is _Reading.PENDING:
                # the reader task is started but has not run: it will see this and leave
                self._reading = _Reading.INLINE
                await self._read_loop()
            while not self._reader_finished:  # (the reading went to another task, or the
                self._consumer = _current_task()  # reactor)
                await _wait_rescheduled(self._abort_consumer)
        except BaseException:
            # cancelled (the server is stopping, and says so itself): no more callbacks
            self._on_message = None
            self._on_end = None
            self._discard = True
            raise

    def send_nowait(self, message: str | bytes) -> None:
        """Queue one message without waiting. Raises ConnectionClosed if the connection is
        already closing; a full outbox closes it as a slow consumer (the message is lost)."""
        if self._conn.state is not _OPEN:
            raise self._closed_error()
        encoder = self._encoder
        frame = encoder.text(message) if message.__class__ is str else encoder.binary(message)  # type: ignore[arg-type]
        self._enqueue(frame)

    def send_frame_nowait(self, frame: bytes) -> None:
        """Queue an already encoded frame (the broadcast path: encode once, send many)."""
        if self._conn.state is not _OPEN:
            raise self._closed_error()
        if self._may_write_first() and self._write_first(frame):
            return
        self._enqueue(frame)

    def send_frames_nowait(self, frames: list[bytes]) -> bool:
        """Queue already encoded frames, in order (a broadcast's parts), when the connection
        is open: True; False (nothing queued) once it is closing. Never waits; a full
        outbox closes the connection as a slow consumer, as for ``send_frame_nowait``."""
        if self._conn.state is not _OPEN:
            return False
        if self._may_write_first() and self._write_first(
            frames[0] if len(frames) == 1 else b"".join(frames)
        ):
            return True
        for frame in frames:
            self._enqueue(frame)
        return True

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
        encoder = self._encoder
        frame = encoder.text(message) if message.__class__ is str else encoder.binary(message)  # type: ignore[arg-type]
        size = len(frame)
        # wait until the frame fits; no await between this check and the append, so
        # concurrent senders cannot overfill it
        while self._outbox and self._no_room(size):
            if conn.state is not _OPEN:
                break
            if self._space is None:
                self._space = trio.lowlevel.ParkingLot()
            await self._space.park()
        if conn.state is not _OPEN:
            raise self._closed_error()
        self._enqueue(frame)

    def close_nowait(self, code: int = 1000, reason: str = "") -> None:
        """Start the close handshake (a no-op unless open) without waiting for its end."""
        self._conn.close(code, reason, now=trio.current_time())
        self._sync()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the close handshake (if still open) and wait until the connection is done:
        the peer answered, or ``close_timeout`` passed and the connection was dropped."""
        self.close_nowait(code, reason)
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
        conn = self._conn
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._reader)  # the writer starts with the first frame
                self._update_timer()  # (keepalive: the run's shared timer, no task)
                try:
                    await handler(self)
                except ConnectionClosed:
                    pass
                except Exception:
                    self._log_failure("handler")
                    self.close_nowait(1011, "internal error")
                else:
                    self.close_nowait(1000, "")
                # while we wait for the peer's Close, what it still sends is dropped
                self._discard = True
                self._on_message = None
                self._inbox = _DRAINED
                self._head = 0
                self._unpark_reader()
        except BaseException:
            # cancelled from outside: blocked work the reactor finishes for us ends too
            # (serve_messages, cancelled with the handler, already dropped the callbacks)
            for scope in self._keepers or ():
                scope.cancel()
            raise
        finally:
            self._nursery = None  # nothing starts a writer (or a reader) from here on
            self._leave_reactor()
            # Cancelled from outside (the server is shutting down): an open connection says
            # 1001 "going away", a closing one sends what is queued (its Close last), if the
            # socket takes it right away; never after a partly written frame. Every task of
            # the connection has ended: this is the only one touching the stream.
            last: list[bytes] = []
            if conn.state is _OPEN:
                last = [conn.encoder.close(1001, "server shutting down")]
                conn.abort(1001, "server shutting down")
            elif conn.state is _CLOSING and self._outbox:
                last = self._outbox
                self._outbox = []
                self._outbox_bytes = 0
            if last and not self._torn:
                with trio.CancelScope(shield=True, deadline=trio.current_time() + 0.5):
                    try:
                        await self._write(b"".join(last))
                    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                        pass
            self._finish()
            await trio.aclose_forcefully(self._stream)

    # -- internals ---------------------------------------------------------------------

    def _closed_error(self) -> ConnectionClosed:
        conn = self._conn
        return ConnectionClosed(conn.close_code or 1006, conn.close_reason)

    def _abort_consumer(self, _: Any) -> trio.lowlevel.Abort:
        self._consumer = None
        return _SUCCEEDED

    def _abort_reader(self, _: Any) -> trio.lowlevel.Abort:
        self._paused_reader = None
        return _SUCCEEDED

    def _abort_writer(self, _: Any) -> trio.lowlevel.Abort:
        self._writer = None
        return _SUCCEEDED

    def _unpark_consumer(self) -> None:
        task = self._consumer
        if task is not None:
            self._consumer = None
            _reschedule(task)

    def _unpark_reader(self) -> None:
        task = self._paused_reader
        if task is not None:
            self._paused_reader = None
            _reschedule(task)

    def _enqueue(self, frame: bytes) -> None:
        ticker = self._ticker
        if ticker is None:
            ticker = self._ticker = _ticker()
        if ticker.first is not None:
            _unfold(ticker)  # (a reactor step's first broadcast goes before this frame)
        outbox = self._outbox
        outbox.append(frame)
        size = self._outbox_bytes + len(frame)
        self._outbox_bytes = size
        # (_no_room, checked after the append, inline: the frame did not fit)
        if len(outbox) > self._max_outbox or (size > self._max_outbox_bytes and len(outbox) > 1):
            self._slow_consumer()
            return
        if self._corked:
            return  # the reader writes it after its batch (_uncork)
        task = self._writer
        if task is None and self._writer_state is _W_RUNNING:
            self._writer_busy = True  # a write is in flight: the writer comes back for it
            return
        step = ticker.step
        if step is not None:  # the reactor's step writes it when it ends
            if not self._stepped:
                self._stepped = True
                step.append(self)
            return
        if self._direct_gen == ticker.generation:
            self._defer()  # one direct write per batch; the ticker writes the rest after it
            return
        self._wake_writer()

    def _no_room(self, size: int) -> bool:
        """The outbox's limit, the one rule for every frame queued: a frame of ``size``
        bytes does not fit. An empty outbox takes any frame; otherwise the outbox stays
        within ``max_outbox`` frames and ``max_outbox_bytes`` bytes. ``send`` waits while
        its frame does not fit, and so does the reading while a Pong does not
        (``_queue_controls``); a frame queued without waiting that does not fit closes the
        connection as a slow consumer (``_enqueue`` and ``_queue_for_step`` have the check
        inline: they are the hot path)."""
        outbox = self._outbox
        return bool(outbox) and (
            len(outbox) >= self._max_outbox or self._outbox_bytes + size > self._max_outbox_bytes
        )

    def _may_write_first(self) -> bool:
        """Try-write-first applies: a plain socket, nothing queued, no write in flight, no
        direct write yet in this scheduler batch, not corked (the reader writes after its
        batch), and no reactor step under way (its end writes). ``_write_to_many`` has
        this (and ``_writer_idle``) inline: a call per recipient was a fifth of a
        broadcast's instructions per delivery."""
        if self._sock is None or self._outbox or self._corked:
            return False
        if self._writer is None and not self._writer_idle():
            return False
        ticker = self._ticker
        if ticker is None:
            ticker = self._ticker = _ticker()
        return ticker.step is None and self._direct_gen != ticker.generation

    def _wrote_this_batch(self) -> bool:
        """A direct write was made in the current scheduler batch: like a Node socket after
        a write, the connection takes more only once the loop has gone round, so what is
        sent meanwhile leaves in one write (the ticker's, at the start of the next batch)."""
        ticker = self._ticker
        return ticker is not None and self._direct_gen == ticker.generation

    def _defer(self) -> None:
        if not self._deferred:
            self._deferred = True
            self._ticker.defer(self)  # type: ignore[union-attr]  # (_wrote_this_batch)

    def _writer_idle(self) -> bool:
        """No write is in flight: the writer is parked with nothing to do, retiring, or
        there is none (and one could be started: the connection's nursery runs)."""
        if self._writer is not None:
            return True
        return (
            self._writer_state is not _W_RUNNING
            and self._nursery is not None
            and not self._done
            and not self._torn
        )

    def _write_first(self, data: bytes) -> bool:
        """Try-write-first (module docstring; the caller checked that nothing is queued
        and no write is in flight): write ``data`` now, without waiting. True when it is
        dealt with: all written, or the rest queued for the writer; False when the kernel
        took nothing or the write failed (the caller queues it: the writer meets the error
        again and closes as usual)."""
        fd = self._sock.fileno()  # type: ignore[union-attr]
        if fd < 0:
            return False
        try:
            sent = _os_write(fd, data)
        except OSError:  # BlockingIOError: no room; anything else: the writer's business
            return False
        return self._written(data, sent)

    def _written(self, data: bytes, sent: int) -> bool:
        """After a direct write took ``sent`` bytes of ``data`` (0 when it failed): what
        ``_write_first`` returns (also for ``send_frames_to_many``'s writes)."""
        if sent == len(data):
            ticker = self._ticker
            if ticker is None:
                ticker = self._ticker = _ticker()
            self._direct_gen = ticker.touch()
            return True
        if sent <= 0:
            return False
        self._enqueue(data[sent:])  # the rest of a frame: queued first, nothing interleaves
        return True

    def _wake_writer(self) -> None:
        task = self._writer
        if task is not None:
            self._writer = None
            self._writer_busy = True
            _reschedule(task)
        elif self._writer_state is not _W_RUNNING:
            self._start_writer()

    def _start_writer(self) -> None:
        nursery = self._nursery
        if nursery is None or self._done:
            return
        if self._writer_state is _W_NONE:
            try:
                nursery.start_soon(self._writer_task)
            except RuntimeError:
                # the connection's tasks were cancelled and have all ended (the server is
                # shutting down); run() has not resumed yet to say goodbye
                self._nursery = None
                return
        # a retiring writer that has not left yet simply stays
        self._writer_state = _W_RUNNING
        self._writer_busy = True

    def _retire_writer(self) -> bool:
        """Called by the idle sweeper: end the writer if it is parked with nothing to do."""
        task = self._writer
        if task is None or self._outbox or self._writer_busy or self._conn.state is not _OPEN:
            self._writer_busy = False
            return False
        self._writer = None
        self._writer_state = _W_RETIRING
        _reschedule(task)
        return True

    def _slow_consumer(self) -> None:
        logger.warning(
            "closing WebSocket %s (peer %s): slow consumer, %d frames / %d bytes queued",
            shown(self.request.path),
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
            if conn.state is _OPEN:
                self._queue_controls(frames)
            else:  # a Close (and what came before it): goes out whatever is queued
                self._outbox.extend(frames)
                self._outbox_bytes += sum(map(len, frames))
                self._wake_writer()
        state = conn.state
        if state is self._seen_state:
            return
        self._seen_state = state
        if conn.failure is not None:
            code, reason = conn.failure
            logger.warning(
                "closing WebSocket %s (peer %s): %d %s",
                shown(self.request.path),
                _peer(self.remote_address),
                code,
                reason,
            )
        if state is _CLOSED:
            self._unpark_consumer()
            self._unpark_reader()
            self._wake_writer()
            if self._space is not None:
                self._space.unpark_all()
        self._update_timer()

    def _queue_controls(self, frames: list[bytes]) -> None:
        """The core's Pongs and keepalive Pings, while open: queued as data frames are, so
        within the outbox's limit (``_no_room``). A Pong that does not fit is kept aside
        (one at most: the core answers only the latest Ping) and the reading of this
        connection stops until it fits (``_wait_for_pong_room``): a peer that pings and
        never reads costs a bounded outbox, not a Pong per Ping. Anything else that does not
        fit closes the connection as a slow consumer, as a data frame does."""
        for frame in frames:
            if frame[0] == PONG_HEAD and self._outbox and self._no_room(len(frame)):
                self._pong = frame  # (the reading waits for room before it reads again)
                continue
            self._enqueue(frame)
            if self._conn.state is not _OPEN:
                return  # closed as a slow consumer: the rest is dropped

    async def _wait_for_pong_room(self) -> None:
        """The reader, before it reads, while a Pong waits for room: park until the
        outbox takes it (the writer took the queue) or the connection is no longer open
        (the Pong is dropped), then queue it."""
        conn = self._conn
        while (pong := self._pong) is not None:
            if conn.state is not _OPEN:
                self._pong = None
            elif not self._no_room(len(pong)):
                self._pong = None
                self._enqueue(pong)
            else:
                if self._space is None:
                    self._space = trio.lowlevel.ParkingLot()
                await self._space.park()

    def _update_timer(self) -> None:
        """Have the core's next deadline watched (called when the connection starts and
        whenever its state changes): while open, by the run's keepalive timer; once a close
        is under way, by a timer task of the connection (module docstring)."""
        conn = self._conn
        if conn.state is _OPEN:
            deadline = conn.next_deadline()
            if deadline is not None:
                _keepalive().schedule(self, deadline)
            return
        keepalive = _keepalive_if_any()
        if keepalive is not None:
            keepalive.unschedule(self)  # (closed, or closing: the entry would be stale)
        sleep = self._timer_sleep
        if sleep is not None:
            deadline = conn.next_deadline()
            sleep.deadline = -math.inf if deadline is None else deadline
        elif not self._timer_running and conn.next_deadline() is not None:
            self._start_timer()

    def _keepalive_due(self, now: float) -> None:
        """The run's keepalive timer: the deadline it was given for this connection has
        come. What the timer task did after its sleep (``now`` to the core, then what the
        core queued to the outbox), without blocking and without running user code; what
        is queued (a Ping) goes out in one direct write when the socket takes it (no writer
        task), as after a reader's batch. Then the core's next deadline is scheduled."""
        conn = self._conn
        if conn.state is not _OPEN or self._nursery is None or self._done:
            return  # (a close under way has a timer task of its own; nothing runs any more)
        self._corked = True  # what the core queues waits for the one write below
        try:
            conn.handle_timeout(now)
            self._sync()
        finally:
            self._corked = False
        self._flush()
        if conn.state is _OPEN:
            deadline = conn.next_deadline()
            if deadline is not None:
                _keepalive().schedule(self, deadline)

    def _start_timer(self) -> None:
        if self._nursery is not None and not self._timer_running:
            try:
                self._nursery.start_soon(self._timer)
            except RuntimeError:  # every task of the connection has ended (see _start_writer)
                self._nursery = None
                return
            self._timer_running = True

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
                        self._leave_reactor()
                        await trio.aclose_forcefully(self._stream)
        finally:
            self._timer_sleep = None
            self._timer_running = False

    def _deliver(self, messages: list[str | bytes]) -> None:
        """Hand messages to the ``serve_messages`` callback."""
        on_message = self._on_message
        assert on_message is not None
        for message in messages:
            try:
                on_message(message)
            except Exception:
                self._log_failure("message callback")
                self._on_message = None
                self._discard = True
                self.close_nowait(1011, "internal error")
                return
            if self._on_message is None:
                return

    def _deliver_batch(self, messages: list[str | bytes]) -> list[inline.Work]:
        """Deliver one read's messages with the inline slot open, corked (the replies wait
        for the reader's one write after the batch); returns the work they offered."""
        self._corked = True
        pending = inline.open_slot()
        try:
            self._deliver(messages)
        finally:
            inline.close_slot()
        return pending

    async def _reader(self) -> None:
        if self._reading is _Reading.PENDING:
            self._reading = _Reading.TASK
            await self._read_loop()

    async def _read_loop(self, pending: list[inline.Work] | None = None) -> None:
        """Read until the end of the stream. ``pending``: inline work handed over by the
        previous reader, to run first (``_run_inline``)."""
        conn = self._conn
        sock = self._sock
        receive_some = self._stream.receive_some
        full = False  # the last read filled its buffer: more is probably waiting
        streak = 0
        generation = self._reader_generation  # changes when this task hands the reading off
        own = _current_task().context  # (the connection's, unless this task took over)
        try:
            data = self._trailing
            self._trailing = b""
            if pending and await self._run_inline(pending, own):
                return
            while True:
                if data:
                    messages = conn.receive_data(data)
                    pending = None
                    if messages and not self._discard:
                        if self._on_message is not None:
                            context = self._context
                            if context is own:
                                pending = self._deliver_batch(messages)
                            else:  # a reader that took over: the connection's context
                                pending = context.run(self._deliver_batch, messages)
                        else:
                            inbox = self._inbox
                            if self._head >= len(inbox):
                                self._inbox = messages  # adopt the decoder's list: no copy
                                self._head = 0
                            else:
                                inbox.extend(messages)
                            task = self._consumer
                            if task is not None:
                                self._consumer = None
                                _reschedule(task)
                    if conn.pending or conn.state is not self._seen_state:
                        self._sync()
                    if pending:
                        # a task that keeps blocked work must not keep the read buffer
                        data = b""
                        messages = _DRAINED
                        if await self._run_inline(pending, own):
                            return
                    if self._corked:
                        self._uncork()
                # (a reader that took over from another one starts here)
                if conn.state is _CLOSED:
                    if conn.failure is not None:
                        await self._drain()
                    return
                while (
                    len(self._inbox) - self._head >= self._max_inbox and conn.state is not _CLOSED
                ):
                    self._paused_reader = _current_task()
                    await _wait_rescheduled(self._abort_reader)
                if self._pong is not None:  # the outbox is full: no reading until it drains
                    await self._wait_for_pong_room()
                # 64 KiB as a rule (larger buffers cost an mmap each in CPython); the
                # whole rest of a large partial frame (up to 1 MiB) in one call.
                wanted = conn.wanted
                size = 65536 if wanted <= 65536 else min(wanted, 1 << 20)
                if sock is None:
                    data = bytes(await receive_some(size))
                else:
                    if full and streak < _FAIR_STREAK:
                        streak += 1  # read again at once: the kernel had more than we took
                    else:
                        streak = 0
                        if (
                            self._on_message is not None
                            and not self._discard
                            and conn.state is _OPEN
                            and self._enter_reactor(sock)
                        ):
                            return  # this run's reactor reads from now on
                        await _wait_readable(sock)
                    fd = sock.fileno()
                    if fd < 0:
                        raise trio.ClosedResourceError
                    try:
                        data = _os_read(fd, size)
                    except BlockingIOError:
                        data = b""
                        full = False
                        continue
                    full = len(data) == size
                if not data:
                    break
            conn.receive_eof()
            self._sync()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            conn.receive_eof()
            self._sync()
        except BaseException:
            if self._reader_generation == generation:
                self._on_end = None  # cancelled: the server is stopping (and says so itself)
            raise
        finally:
            self._corked = False
            if self._reader_generation == generation:  # still the reader
                context = self._context
                if context is own or context is _NO_CONTEXT:
                    self._end_reading()
                else:  # (on_end, and what it starts, in the connection's context)
                    context.run(self._end_reading)

    def _end_reading(self) -> None:
        """The reading has ended (the end of the stream, an error, or the connection is
        done): say so to whoever waits for it, and call ``on_end``."""
        self._reader_finished = True
        self._unpark_consumer()
        self._wake_writer()
        on_end = self._on_end
        if on_end is not None:
            self._on_end = None
            try:
                on_end()
            except Exception:
                self._log_failure("end callback")

    # -- read by the reactor (pyserver.trio.websocket.reactor) -------------------------------

    def _enter_reactor(self, sock: trio.socket.SocketType) -> bool:
        """Have this run's reactor read the socket from now on: True when it does (the
        calling reader task then leaves: it is no longer the reader)."""
        if self._nursery is None or self._done:
            return False  # (no task could take the reading back)
        reactor = _reactor_module.reactor(_step_started, _step_ended)
        if reactor is None:
            return False
        fd = sock.fileno()
        if fd < 0 or not reactor.add(fd, self):
            return False
        self._reactor = reactor
        self._reactor_fd = fd
        self._reader_generation += 1
        self._reading = _Reading.REACTOR
        return True

    def _leave_reactor(self, *, ended: bool = False) -> None:
        """Unregister from the reactor (always before the stream closes: its descriptor
        can be reused at once). The reading has ``ended``, or goes on in a task of the
        connection; or ends here when none can start (the connection's tasks are ending)."""
        reactor = self._reactor
        if reactor is None:
            return
        self._reactor = None
        reactor.remove(self._reactor_fd, self)
        self._reactor_fd = -1
        if ended:
            self._end_reading()
        else:
            self._read_in_a_task()

    def _read_in_a_task(self) -> None:
        if not self._hand_off(None):
            self._end_reading()

    def _react(self, fd: int) -> Blocked | None:
        """Called by the reactor when the socket is readable: what the reader task's loop
        does for one read (its messages delivered, the batch's inline work, one write), or
        for the end of the stream. Returns work that blocked, for the reactor to keep
        (``_go_on`` then runs the rest)."""
        conn = self._conn
        wanted = conn.wanted
        try:
            data = _os_read(fd, 65536 if wanted <= 65536 else min(wanted, 1 << 20))
        except BlockingIOError:
            return None
        except OSError:
            data = b""  # (a reset: as the reader task, the end of the stream)
        if not data:
            conn.receive_eof()
            self._sync()
            self._leave_reactor(ended=True)
            return None
        messages = conn.receive_data(data)
        del data
        pending: list[inline.Work] | None = None
        if messages and not self._discard:  # (registered: callbacks are set until then)
            pending = self._deliver_batch(messages)
        if conn.pending or conn.state is not self._seen_state:
            self._sync()
        if pending:
            blocked = self._first_steps(pending)
            if blocked is not None:
                return blocked
        self._end_batch()
        return None

    def _go_on(self, works: list[inline.Work]) -> Blocked | None:
        """The rest of a batch whose earlier work blocked (run by the next driver)."""
        self._corked = True
        blocked = self._first_steps(works)
        if blocked is None:
            self._end_batch()
        return blocked

    def _end_batch(self) -> None:
        if self._corked:
            self._uncork()
        conn = self._conn
        if conn.state is _CLOSED:
            # after a failure the reader task drains what the peer still sends
            self._leave_reactor(ended=conn.failure is None)
        elif self._pong is not None:
            self._leave_reactor()  # a reader task waits for room for it before reading on

    def _keep(self, scope: trio.CancelScope) -> None:
        if self._keepers is None:
            self._keepers = []
        self._keepers.append(scope)
        if self._corked:
            self._uncork()  # what the batch queued goes out now, not after the work

    def _kept(self, scope: trio.CancelScope, error: Exception | None) -> None:
        if self._keepers is not None:
            self._keepers.remove(scope)
        if error is not None:
            self._work_failed(error)

    def _lost(self) -> None:
        self._corked = False
        self._leave_reactor()
        if self._conn.state is _OPEN:
            self.close_nowait(1011, "internal error")

    async def _run_inline(self, pending: list[inline.Work], own: contextvars.Context) -> bool:
        """Run the work offered during a batch (:mod:`pyserver.trio.websocket.inline`), in order,
        in this task (whose context is ``own``) and in the connection's context. Work that
        blocks stays here: the reading goes on in a new task, which first runs the rest of
        ``pending``; this one flushes what is queued, finishes that work, and returns True
        (the caller leaves the read loop)."""
        context: contextvars.Context | None = self._context
        if context is own or context is _NO_CONTEXT:
            context = None  # (this task runs in it already)
        while pending:
            if context is None:
                blocked = self._first_steps(pending)
            else:
                blocked = context.run(self._first_steps, pending)
            if blocked is None:
                return False
            handed_off = self._hand_off(blocked.rest)
            self._uncork()
            try:
                await inline.resume(blocked.coro, blocked.yielded, context)
            except Exception:
                self._work_failed()
            if handed_off:
                return True
            # no new reader could start (the connection's tasks are ending): go on here
            pending = blocked.rest
        return False

    def _first_steps(self, works: list[inline.Work]) -> Blocked | None:
        """Run each work's first step, in order, until one blocks: that one (with the
        works after it), or None when none did. A failing work is logged (1011)."""
        for index, work in enumerate(works):
            coro = work()
            try:
                yielded = inline.run_first_step(coro)
            except Exception:
                self._work_failed()
                continue
            except BaseException:
                self._spawn_work(works[index + 1 :])
                raise
            if yielded is not inline.FINISHED:
                return Blocked(coro, yielded, works[index + 1 :])
        return None

    def _log_failure(self, what: str, error: BaseException | None = None) -> None:
        """One log line, with the traceback, for an exception from user code: ``error``,
        or the one being handled (called from its ``except``)."""
        logger.error(
            "WebSocket %s failed (%s, peer %s)",
            what,
            shown(self.request.path),
            _peer(self.remote_address),
            exc_info=True if error is None else error,
        )

    def _work_failed(self, error: BaseException | None = None) -> None:
        """Inline work raised (``error``, or the exception being handled): like a failing
        message callback, 1011 (logged once, with the traceback)."""
        self._log_failure("inline work", error)
        if self._conn.state is _OPEN:
            self.close_nowait(1011, "internal error")

    def _hand_off(self, rest: list[inline.Work] | None) -> bool:
        """Start a new reader task that runs ``rest`` (if any) and goes on reading: False
        when none can start (the connection's tasks are ending)."""
        nursery = self._nursery
        if nursery is None or self._done:
            return False
        try:
            nursery.start_soon(
                self._read_loop, rest, name=f"WebSocket reader {shown(self.request.path)}"
            )
        except RuntimeError:
            return False
        self._reading = _Reading.TASK
        self._reader_generation += 1
        return True

    def _spawn_work(self, works: list[inline.Work]) -> None:
        """Inline work this reader cannot run after all: each in a task of its own."""
        nursery = self._nursery
        for work in works:
            if nursery is None:
                logger.error("inline work dropped: the connection's tasks have ended")
                return
            try:
                nursery.start_soon(work)
            except RuntimeError:
                nursery = None

    def _uncork(self) -> None:
        """The end of the reader's batch: what it queued goes out now (``_flush``)."""
        self._corked = False
        self._flush()

    def _flush(self) -> None:
        """Write what is queued in one write from this task when the socket takes it all
        (no writer wake-up), else through the writer; after the ticker when this
        connection already wrote directly in this batch."""
        outbox = self._outbox
        if not outbox:
            return
        if self._wrote_this_batch():
            self._defer()
            return
        if self._may_write_queue():
            data = outbox[0] if len(outbox) == 1 else b"".join(outbox)
            self._outbox = []
            self._outbox_bytes = 0
            if self._write_first(data):
                if self._space is not None:
                    self._space.unpark_all()
            else:
                self._requeue(data)
            return
        self._wake_writer()

    def _may_write_queue(self) -> bool:
        """What is queued may be written directly, in one write, now: a plain socket, open,
        no more than ``_JOIN_LIMIT`` bytes, and no write in flight (``_flush``,
        ``_write_queued``)."""
        return (
            self._sock is not None
            and self._conn.state is _OPEN
            and self._outbox_bytes <= _JOIN_LIMIT
            and (self._writer is not None or self._writer_idle())
        )

    def _requeue(self, data: bytes) -> None:
        """A direct write of the whole queue (``data``) wrote nothing: it is queued again,
        and the writer meets the problem (no room: it waits; a broken socket: it closes)."""
        self._outbox = [data]
        self._outbox_bytes = len(data)
        self._wake_writer()

    async def _drain(self) -> None:
        """After failing the connection: read and drop what the peer still sends (its
        decoder is dead) until it closes, so closing our socket does not reset the
        connection and destroy the Close frame we sent before the peer reads it."""
        receive_some = self._stream.receive_some
        with trio.move_on_after(self._conn.close_timeout):
            while await receive_some(65536):
                pass

    async def _write(self, data: bytes | memoryview) -> None:
        """Write all of ``data`` (only ever called by the writer, or by ``run`` once every
        other task of the connection has ended)."""
        sock = self._sock
        if sock is None:
            await self._stream.send_all(data)
            return
        view: memoryview | None = None
        while True:
            fd = sock.fileno()
            if fd < 0:
                raise trio.ClosedResourceError
            try:
                sent = _os_write(fd, data if view is None else view)
            except BlockingIOError:
                sent = 0
            if view is None:
                if sent == len(data):
                    return
                view = memoryview(data)[sent:]
            else:
                if sent == len(view):
                    return
                view = view[sent:]
            await _wait_writable(sock)

    async def _writer_task(self) -> None:
        conn = self._conn
        sock = self._sock
        writing = False
        sweeper = _sweeper()
        sweeper.add(self)
        me = _current_task()
        abort = self._abort_writer
        ended = False  # the connection is done (closed and flushed, or its stream broke)
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
                    if size > _JOIN_LIMIT and len(batch) > 1:
                        await self._write_large_batch(batch)
                    else:
                        data = batch[0] if len(batch) == 1 else b"".join(batch)
                        # the usual case, without a coroutine: the kernel takes it all now
                        sent = -1
                        if sock is not None:
                            fd = sock.fileno()
                            if fd >= 0:
                                try:
                                    sent = _os_write(fd, data)
                                except BlockingIOError:
                                    sent = 0
                        if sent != len(data):
                            await self._write(data if sent <= 0 else memoryview(data)[sent:])
                    writing = False
                elif conn.state is _CLOSED:
                    if conn.failure is not None and not self._reader_finished:
                        await self._linger()
                    ended = True
                    break
                elif self._writer_state is _W_RETIRING:
                    return  # idle: the next frame queued starts a new writer
                else:
                    self._writer = me  # parked inline: one coroutine frame less
                    await _wait_rescheduled(abort)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            ended = True
            conn.abort()
            self._sync()
        finally:
            sweeper.discard(self)
            self._writer = None
            self._writer_state = _W_NONE
            if not ended:
                # retired while idle (open, nothing torn), or cancelled from outside: then
                # run() says goodbye on the stream once every task has ended
                self._torn = writing
            else:
                self._finish()
                self._update_timer()
                # closing the stream also ends a reader blocked on it
                await trio.aclose_forcefully(self._stream)

    async def _write_large_batch(self, batch: list[bytes]) -> None:
        """A batch over ``_JOIN_LIMIT``: small frames joined up to it, large ones on their
        own, so echoing large messages does not build a multi-megabyte buffer per batch."""
        group: list[bytes] = []
        group_size = 0
        for frame in batch:
            if len(frame) >= _JOIN_LIMIT:
                if group:
                    await self._write(group[0] if len(group) == 1 else b"".join(group))
                    group = []
                    group_size = 0
                await self._write(frame)
                continue
            group.append(frame)
            group_size += len(frame)
            if group_size >= _JOIN_LIMIT:
                await self._write(group[0] if len(group) == 1 else b"".join(group))
                group = []
                group_size = 0
        if group:
            await self._write(group[0] if len(group) == 1 else b"".join(group))

    async def _linger(self) -> None:
        """Half-close after our failure Close, then wait (bounded) for the reader to drain
        the peer's remaining bytes up to its end of stream."""
        stream = self._stream
        with trio.move_on_after(self._conn.close_timeout):
            if isinstance(stream, trio.abc.HalfCloseableStream):
                try:
                    await stream.send_eof()
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
            while not self._reader_finished:
                self._writer = _current_task()
                await _wait_rescheduled(self._abort_writer)

    def _finish(self) -> None:
        if not self._done:
            self._done = True
            self._conn.abort()
            self._sync()
            self._leave_reactor()  # (before the stream closes: see _leave_reactor)
            if self._done_event is not None:
                self._done_event.set()


#: Frames are joined into one write up to this many bytes; a larger batch is written in
#: pieces (a big frame on its own), so echoing large messages does not build (and page-fault)
#: a fresh multi-megabyte buffer per batch.
_JOIN_LIMIT = 65536


class _IdleSweeper:
    """Ends the writer tasks of idle connections, for one Trio run.

    Every ``WRITER_IDLE_SECONDS`` it looks at each connection with a writer task: one not
    woken since the previous look, parked with an empty outbox, is asked to end. It runs as
    a system task only while some connection has a writer, and costs a dict entry per
    connection."""

    __slots__ = ("running", "writers")

    def __init__(self) -> None:
        self.writers: dict[WebSocket, None] = {}
        self.running = False

    def add(self, ws: WebSocket) -> None:
        self.writers[ws] = None
        if not self.running:
            self.running = True
            trio.lowlevel.spawn_system_task(self._run, name="pyserver WebSocket idle sweeper")

    def discard(self, ws: WebSocket) -> None:
        self.writers.pop(ws, None)

    async def _run(self) -> None:
        try:
            while self.writers:
                await trio.sleep(WRITER_IDLE_SECONDS)
                for ws in list(self.writers):
                    try:
                        ws._retire_writer()
                    except Exception:  # a system task must never raise
                        logger.exception(
                            "WebSocket idle sweeper failed for %s", shown(ws.request.path)
                        )
                        self.writers.pop(ws, None)
        finally:
            self.running = False


_SWEEPER: trio.lowlevel.RunVar[_IdleSweeper] = trio.lowlevel.RunVar("pyserver_ws_sweeper")


_T = TypeVar("_T")


def _per_run(var: trio.lowlevel.RunVar[_T], make: Callable[[], _T]) -> _T:
    """The value of ``var`` in this Trio run, made on first use."""
    try:
        return var.get()
    except LookupError:
        value = make()
        var.set(value)
        return value


def _sweeper() -> _IdleSweeper:
    return _per_run(_SWEEPER, _IdleSweeper)


class _Keepalive:
    """The keepalive deadlines of every open connection of one Trio run: a
    :class:`~pyserver.trio.timers.DeadlineTimer` (one heap, one task), whose task is a
    system task started by the first connection with a deadline (as the ticker's is: it
    serves every connection, so no connection's nursery can hold it). It calls each due
    connection's ``_keepalive_due``, which runs no user code. A connection that is no longer
    open unschedules itself (``_update_timer``); an entry left behind is skipped."""

    __slots__ = ("running", "timer")

    def __init__(self) -> None:
        self.timer: DeadlineTimer[WebSocket] = DeadlineTimer(_keepalive_due)
        self.running = False

    def schedule(self, ws: WebSocket, deadline: float) -> None:
        self.timer.schedule(ws, deadline)
        if not self.running:
            self.running = True
            trio.lowlevel.spawn_system_task(self._run, name="pyserver WebSocket keepalive timer")

    def unschedule(self, ws: WebSocket) -> None:
        self.timer.unschedule(ws)

    async def _run(self) -> None:
        try:
            await self.timer.run()
        finally:
            self.running = False


def _keepalive_due(ws: WebSocket, now: float) -> None:
    try:
        context = ws._context
        if context is _NO_CONTEXT:
            ws._keepalive_due(now)
        else:
            # messages go to callbacks: a writer started here (which may hand the reading
            # to a task that calls on_end) gets the connection's context, not the timer's
            context.run(ws._keepalive_due, now)
    except Exception:  # a system task must never raise
        logger.exception("WebSocket keepalive failed for %s", shown(ws.request.path))


_KEEPALIVE: trio.lowlevel.RunVar[_Keepalive] = trio.lowlevel.RunVar("pyserver_ws_keepalive")


def _keepalive() -> _Keepalive:
    return _per_run(_KEEPALIVE, _Keepalive)


def _keepalive_if_any() -> _Keepalive | None:
    """This run's keepalive timer if a connection made it (nothing is made to unschedule)."""
    try:
        return _KEEPALIVE.get()
    except LookupError:
        return None


class _Ticker:
    """Counts scheduler batches in which some connection wrote directly, for one Trio run:
    a system task woken (once per batch, whatever the number of writes) by the first
    direct write, which bumps ``generation`` when it runs, that is in a later batch."""

    __slots__ = ("deferred", "first", "generation", "parked", "running", "step")

    def __init__(self) -> None:
        self.generation = 0
        self.parked: trio.lowlevel.Task | None = None
        self.running = False
        self.deferred: list[WebSocket] = []
        # during a step of the reactor: the connections whose queued frames its end writes,
        # and the step's first broadcast while nothing else was sent (sockets, frames)
        self.step: list[WebSocket] | None = None
        self.first: tuple[list[WebSocket], list[bytes]] | None = None

    def touch(self) -> int:
        """The current generation; it changes once the scheduler has gone round."""
        task = self.parked
        if task is not None:
            self.parked = None
            _reschedule(task)
        elif not self.running:
            self.running = True
            trio.lowlevel.spawn_system_task(self._run, name="pyserver WebSocket ticker")
        return self.generation

    def _abort(self, _: Any) -> trio.lowlevel.Abort:
        self.parked = None
        return _SUCCEEDED

    def defer(self, ws: WebSocket) -> None:
        """Flush ``ws`` when the loop has gone round (it wrote directly in this batch)."""
        self.deferred.append(ws)
        self.touch()

    async def _run(self) -> None:
        try:
            while True:
                self.generation += 1
                deferred = self.deferred
                if deferred:
                    self.deferred = []
                    for ws in deferred:
                        ws._deferred = False
                    try:
                        _write_queued(deferred)
                    except Exception:  # a system task must never raise
                        logger.exception("WebSocket flush failed")
                    # those writes count as busy until the loop has gone round once more
                    await trio.lowlevel.cancel_shielded_checkpoint()
                    continue
                self.parked = _current_task()
                await _wait_rescheduled(self._abort)
        finally:
            self.running = False


_TICKER: trio.lowlevel.RunVar[_Ticker] = trio.lowlevel.RunVar("pyserver_ws_ticker")


def _ticker() -> _Ticker:
    return _per_run(_TICKER, _Ticker)


def send_frames_to_many(sockets: Iterable[WebSocket], frames: list[bytes]) -> None:
    """``ws.send_frames_nowait(frames)`` for every one of ``sockets`` (the broadcast path),
    with all the direct writes (try-write-first, same rules) made by one Rust call,
    ``_frames.write_many``: one ``write(2)`` per recipient and no interpreter work per
    write. A recipient whose socket did not take everything gets the rest queued, as after
    ``_write_first``; one that is not open is skipped. In a reactor step, nothing is written
    before the step's end: a step's only broadcast is kept whole and then written so, and
    anything more sent in the step queues it on each recipient (``_unfold``), so that the
    end writes each connection once, in order (``_write_queued``)."""
    ticker = _ticker()
    step = ticker.step
    if step is not None:  # in a reactor step: written at its end
        if ticker.first is None and not step:
            # the step's first send: kept whole, and written as a whole at its end unless
            # anything else is sent in the step (_unfold)
            ticker.first = (sockets if isinstance(sockets, list) else list(sockets), frames)
            return
        _unfold(ticker)
        _queue_for_step(sockets, frames, step)
        return
    _write_to_many(sockets, frames, ticker)


def _write_to_many(sockets: Iterable[WebSocket], frames: list[bytes], ticker: _Ticker) -> None:
    """``send_frames_to_many`` outside reactor steps."""
    if _write_many is None:
        for ws in sockets:
            ws.send_frames_nowait(frames)
        return
    direct: list[WebSocket] = []
    fds: list[int] = []
    generation = ticker.generation
    for ws in sockets:
        if ws._conn.state is not _OPEN:
            continue
        sock = ws._sock
        if (  # ws._may_write_first(), inline (never in a step here; one ticker per run)
            sock is not None
            and not ws._outbox
            and not ws._corked
            and ws._direct_gen != generation
            and (
                ws._writer is not None
                or (  # ws._writer_idle(), inline
                    ws._writer_state is not _W_RUNNING
                    and ws._nursery is not None
                    and not ws._done
                    and not ws._torn
                )
            )
        ):
            fd = sock.fileno()
            if fd >= 0:
                direct.append(ws)
                fds.append(fd)
                continue
        for frame in frames:
            ws._enqueue(frame)
    if not direct:
        return
    data = frames[0] if len(frames) == 1 else b"".join(frames)
    short = _write_many(fds, data)
    generation = ticker.touch()
    if not short:
        for ws in direct:
            ws._direct_gen = generation
            ws._ticker = ticker
        return
    incomplete = dict(short)
    for index, ws in enumerate(direct):
        written = incomplete.get(index)
        if written is None:
            ws._direct_gen = generation
            ws._ticker = ticker
        elif not ws._written(data, written):
            for frame in frames:  # nothing went out: the writer meets the problem
                ws._enqueue(frame)


def _unfold(ticker: _Ticker) -> None:
    """Something more is sent in this reactor step than its first broadcast: queue that
    broadcast on each of its recipients now, so that it goes before what follows."""
    first = ticker.first
    if first is not None:
        ticker.first = None
        _queue_for_step(first[0], first[1], ticker.step)  # type: ignore[arg-type]  # (a step)


def _queue_for_step(
    sockets: Iterable[WebSocket], frames: list[bytes], step: list[WebSocket]
) -> None:
    """``send_frames_to_many`` during a reactor step: ``ws._enqueue(frame)`` for each frame
    and open recipient (the step's end then writes each recipient once), in one loop."""
    size = 0
    for frame in frames:
        size += len(frame)
    for ws in sockets:
        if ws._conn.state is not _OPEN:
            continue
        outbox = ws._outbox
        outbox.extend(frames)
        queued = ws._outbox_bytes + size
        ws._outbox_bytes = queued
        # (ws._no_room, checked after the append, inline: the frames did not fit)
        if len(outbox) > ws._max_outbox or (queued > ws._max_outbox_bytes and len(outbox) > 1):
            ws._slow_consumer()
        elif ws._stepped or ws._corked:
            pass  # written at the end of the step, or of its reader's batch
        elif ws._writer is None and ws._writer_state is _W_RUNNING:
            ws._writer_busy = True  # a write is in flight: the writer comes back for it
        else:
            ws._stepped = True
            step.append(ws)


def _step_started() -> None:
    """The reactor starts a step, so the scheduler has gone round since its previous one:
    the connections it wrote to then may be written to directly again (see
    ``_wrote_this_batch``), whether or not the ticker has run yet in this batch. What the
    step sends to other connections waits for its end (``_step_ended``)."""
    ticker = _ticker()
    ticker.generation += 1
    ticker.step = []


def _step_ended() -> None:
    """The reactor's step has ended: write what it queued (one write per connection), or
    its one broadcast as ``send_frames_to_many`` does outside steps."""
    ticker = _ticker()
    step = ticker.step
    first = ticker.first
    ticker.step = ticker.first = None
    if first is not None:  # (then nothing else was sent in the step: that unfolds it)
        _write_to_many(first[0], first[1], ticker)
    elif step:
        for ws in step:
            ws._stepped = False
        _write_queued(step)


def _write_queued(connections: list[WebSocket]) -> None:
    """Write what each of ``connections`` has queued, in one write each (``_flush``'s rule
    for each connection, without its one-direct-write-per-batch check: the caller is the
    end of a reactor step or the ticker), with every direct write made by one Rust call
    (``_frames.write_each``). A connection that cannot be written to directly (a write in
    flight, not open, a large queue) gets its writer woken instead."""
    if _write_each is None:
        for ws in connections:
            ws._flush()
        return
    direct: list[WebSocket] = []
    fds: list[int] = []
    datas: list[bytes] = []
    for ws in connections:
        outbox = ws._outbox
        if not outbox or ws._corked:
            continue  # (a corked reader writes its queue at the end of its batch)
        if ws._may_write_queue():
            fd = ws._sock.fileno()  # type: ignore[union-attr]  # (_may_write_queue)
            if fd >= 0:
                direct.append(ws)
                fds.append(fd)
                datas.append(outbox[0] if len(outbox) == 1 else b"".join(outbox))
                continue
        ws._wake_writer()
    if not direct:
        return
    short = dict(_write_each(fds, datas))
    ticker = _ticker()
    generation = ticker.touch()
    for index, ws in enumerate(direct):
        ws._outbox = []
        ws._outbox_bytes = 0
        written = short.get(index)
        if written is None:
            ws._direct_gen = generation
            ws._ticker = ticker
        elif not ws._written(datas[index], written):
            ws._requeue(datas[index])
            continue
        if ws._space is not None:
            ws._space.unpark_all()


def _peer(address: tuple[str, int]) -> str:
    host, port = address[0], address[1]
    return f"{host}:{port}" if host else "?"

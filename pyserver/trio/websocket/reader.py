"""The reader part of a WebSocket: the reading of the socket and the delivery of messages.

The **reader** reads the socket and feeds every chunk to the sans-IO core in one call (one
Rust crossing per read). Messages go one of two ways (:class:`Delivery`):

* ``INBOX`` (``async for``/``receive``): to the inbox (a list: the decoder's own result
  list, adopted whole when the previous one is consumed), the consumer woken only when it
  is parked; the reader pauses while the inbox holds ``max_inbox`` messages.
* ``CALLBACK`` (:meth:`Reader.serve_messages`, what Engine.IO does): straight from the
  reader to the callback. When the callback is set before the reader task has started, the
  calling task does the reading itself: one task fewer per connection. Work the callback
  returns (:mod:`.inline`: Socket.IO handlers) runs in the reading task right after the batch
  it came in, and what the batch queued on this connection goes out in one write from the
  reader (the ``READER`` route of :mod:`.sending`); work that blocks keeps the task, and a
  new reader task goes on reading (``_hand_off``). On Linux, a reader that would wait for
  the socket hands the reading to the reactor instead (:mod:`.reactive`).
* ``DISCARD``: nobody will read the inbox again (the handler is done, or the callback
  failed): what the peer still sends is dropped.

Who reads is :class:`Reading` (``PENDING``, ``TASK``, ``INLINE``, ``REACTOR``, ``ENDED``);
``_reader_generation`` changes with every hand-off, so a task that handed the reading off
knows it is no longer the reader.

I/O: on a plain ``trio.SocketStream`` it reads the socket's descriptor directly
(``os.read``, and ``trio.lowlevel.wait_readable`` when the kernel has nothing): a reader
parked there holds a much smaller stack than one parked in ``receive_some``. Waking uses
``wait_task_rescheduled``/``reschedule`` directly: no channel, Event or task per message,
and no checkpoint per message while messages are ready (a full checkpoint every 32
consecutive ready messages or reads keeps the scheduler fair).

Contexts: every callback, and every step of the work it returns, runs in the context of the
task that called ``serve_messages`` (``_context``), whichever task reads: a ``ContextVar``
that work sets (also after it blocked) is seen by this connection's later work, and never by
another connection's.
"""

from __future__ import annotations

import contextvars
import enum
import os
from collections.abc import Callable
from typing import Any

import trio

from pyserver.logtext import shown
from pyserver.trio.websocket import inline
from pyserver.trio.websocket.work import NO_CONTEXT, Worker
from pyserver.ws.connection import ConnectionState

__all__ = ["Delivery", "MessageCallback", "Reader", "Reading"]

_OPEN = ConnectionState.OPEN
_CLOSED = ConnectionState.CLOSED
_reschedule = trio.lowlevel.reschedule
_current_task = trio.lowlevel.current_task
_wait_rescheduled = trio.lowlevel.wait_task_rescheduled
_wait_readable = trio.lowlevel.wait_readable
_SUCCEEDED = trio.lowlevel.Abort.SUCCEEDED
_os_read = os.read
_FAIR_STREAK = 32
_DRAINED: list[str | bytes] = []  # never appended to

MessageCallback = Callable[[str | bytes], "inline.Work | None"]
"""``serve_messages``' callback: takes a message, returns work to run for it, or None."""


class Reading(enum.Enum):
    """Who reads the socket."""

    PENDING = "pending"  # the reader task is started but has not run yet
    TASK = "task"  # the reader task
    INLINE = "inline"  # the task in serve_messages(); the reader task found it so and left
    REACTOR = "reactor"  # this run's reactor (pyserver.trio.websocket.reactor)
    ENDED = "ended"  # nobody: the end of the stream, an error, or the connection is done


class Delivery(enum.Enum):
    """Where received messages go (module docstring)."""

    INBOX = "inbox"
    CALLBACK = "callback"
    DISCARD = "discard"


_PENDING = Reading.PENDING
_ENDED = Reading.ENDED
_INBOX = Delivery.INBOX
_CALLBACK = Delivery.CALLBACK
_DISCARD = Delivery.DISCARD


class Reader(Worker):
    """The reader part (module docstring)."""

    __slots__ = (
        "_consumer",
        "_delivery",
        "_head",
        "_inbox",
        "_inbox_low",
        "_max_inbox",
        "_on_end",
        "_on_message",
        "_paused_reader",
        "_reader_generation",
        "_reading",
        "_streak",
        "_trailing",
    )

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        options = args[3]
        self._trailing: bytes = options.trailing_data
        # the inbox is the decoder's own result list, adopted whole when the previous one
        # is consumed (no copy), read from ``_head``; the shared empty list marks "drained"
        self._inbox: list[str | bytes] = _DRAINED
        self._head = 0
        self._max_inbox: int = options.max_inbox
        self._inbox_low = self._max_inbox // 2
        self._delivery = _INBOX
        self._on_message: MessageCallback | None = None
        self._on_end: Callable[[], None] | None = None
        self._reading = _PENDING
        self._reader_generation = 0  # bumped by each hand-off of the reading
        # parked tasks (each woken by one ``reschedule``): the consumer, and the reader
        # while the inbox is full
        self._consumer: trio.lowlevel.Task | None = None
        self._paused_reader: trio.lowlevel.Task | None = None
        self._streak = 0

    # -- what the parts above provide ----------------------------------------------------

    def _enter_reactor(self, sock: trio.socket.SocketType) -> bool:
        """Have the reactor read from now on: True when it does (:class:`~.reactive.Reactive`;
        here, never)."""
        return False

    def _reading_ended(self) -> bool:
        return self._reading is _ENDED

    # -- consuming -----------------------------------------------------------------------

    def __aiter__(self) -> Reader:
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
        self,
        on_message: MessageCallback,
        on_end: Callable[[], None] | None = None,
        *,
        context: contextvars.Context | None = None,
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

        Work that ``on_message`` returns (an async function without arguments, or None)
        runs in the reading task right after the batch of messages it came in (see
        :mod:`pyserver.trio.websocket.inline`);
        meanwhile what is sent on this connection is queued and goes out in one write after
        the batch. Work that blocks keeps its task, and a new task goes on reading: so this
        method may return later than the end of the connection (when this task was the one
        keeping it), which is why ``on_end`` is called by the reader as soon as the reading
        ends. Work kept by a reactor task is cancelled if this connection is cancelled (the
        server is stopping); it is not waited for.

        Contexts: every callback, and every step of the work they return, runs in
        ``context`` (by default the calling task's ``contextvars`` context), whichever task
        reads: a ``ContextVar`` that work sets (also after it blocked) is seen by this
        connection's later work, and never by another connection's. ``context`` must not be
        another task's own context while that task runs."""
        if self._on_message is not None or self._consumer is not None:
            raise trio.BusyResourceError("another task is already receiving")
        self._on_message = on_message
        self._on_end = on_end
        self._delivery = _CALLBACK
        # the connection's context from now on: ``context`` (Engine.IO gives its session's,
        # the same over both transports), or this task's own (so this task, as the reader,
        # runs handlers with no Context.run; the tasks after it enter this one)
        self._context = _current_task().context if context is None else context
        early: list[inline.Work] | None = None
        if self._head < len(self._inbox):
            inbox, head = self._inbox, self._head
            self._inbox = _DRAINED
            self._head = 0
            early = self._deliver(inbox[head:] if head else inbox)
            self._unpark_reader()
        try:
            if self._reading is _PENDING:
                # the reader task is started but has not run: it will see this and leave
                self._reading = Reading.INLINE
                await self._read_loop(early)  # (which first runs the work of those messages)
            elif early:
                self._spawn_work(early)  # (this task does not read: it cannot run them)
            while self._reading is not _ENDED:  # (the reading went to another task, or the
                self._consumer = _current_task()  # reactor)
                await _wait_rescheduled(self._abort_consumer)
        except BaseException:
            # cancelled (the server is stopping, and says so itself): no more callbacks
            self._on_message = None
            self._on_end = None
            self._delivery = _DISCARD
            raise

    def _deliver(self, messages: list[str | bytes]) -> list[inline.Work]:
        """Hand messages to the ``serve_messages`` callback; the work the callback
        returned for them, in order (for the caller to run)."""
        on_message = self._on_message
        assert on_message is not None
        works: list[inline.Work] = []
        for message in messages:
            try:
                work = on_message(message)
            except Exception:
                self._log_failure("message callback")
                self._on_message = None
                self._delivery = _DISCARD
                self.close_nowait(1011, "internal error")
                return works
            if work is not None:
                works.append(work)
            if self._on_message is None:
                return works
        return works

    def _deliver_batch(self, messages: list[str | bytes]) -> list[inline.Work]:
        """Deliver one read's messages corked (the replies wait for the reader's one write
        after the batch); returns the work they returned."""
        self._corked = True
        return self._deliver(messages)

    async def _reader(self) -> None:
        if self._reading is _PENDING:
            self._reading = Reading.TASK
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
                    delivery = self._delivery
                    if messages and delivery is not _DISCARD:
                        if delivery is _CALLBACK:
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
                            self._delivery is _CALLBACK
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
                if context is own or context is NO_CONTEXT:
                    self._end_reading()
                else:  # (on_end, and what it starts, in the connection's context)
                    context.run(self._end_reading)

    def _end_reading(self) -> None:
        """The reading has ended (the end of the stream, an error, or the connection is
        done): say so to whoever waits for it, and call ``on_end``."""
        self._reading = _ENDED
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
        self._reading = Reading.TASK
        self._reader_generation += 1
        return True

    async def _drain(self) -> None:
        """After failing the connection: read and drop what the peer still sends (its
        decoder is dead) until it closes, so closing our socket does not reset the
        connection and destroy the Close frame we sent before the peer reads it."""
        receive_some = self._stream.receive_some
        with trio.move_on_after(self._conn.close_timeout):
            while await receive_some(65536):
                pass

    def _abort_consumer(self, _: Any) -> trio.lowlevel.Abort:
        self._consumer = None
        return _SUCCEEDED

    def _abort_reader(self, _: Any) -> trio.lowlevel.Abort:
        self._paused_reader = None
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

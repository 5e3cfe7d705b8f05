"""The writer part of a WebSocket: the one task that writes whatever is queued.

The **writer** takes everything queued in the outbox and writes it in one write (a batch
over ``JOIN_LIMIT`` in pieces). It closes the stream once the connection is CLOSED and the
outbox is flushed. A writer with nothing to write for ``WRITER_IDLE_SECONDS`` or more ends
(the run's :class:`~.runtime.IdleSweeper` retires it: an idle connection keeps no writer
task); the next frame queued starts a new one, so there is never more than one. It is the
only task that waits for the socket to take bytes: the direct writes of :mod:`.sending`
happen only while it has nothing in flight (``_writer_idle``).

Its state is :class:`WriterState`, plus the parked task (``_writer``, set while it waits
for work) and ``_writer_busy`` (woken since the sweeper last looked).

I/O: on a plain ``trio.SocketStream`` it writes the socket's descriptor directly
(``os.write``, non-blocking, and ``trio.lowlevel.wait_writable`` when the kernel has no
room), which spares the scheduler pass ``send_all`` takes after every call; the descriptor
is looked up before every call (a closed socket says -1), never cached. Any other stream
(TLS, memory streams in tests) goes through ``send_all``.
"""

from __future__ import annotations

import enum
import os
from typing import Any

import trio

from pyserver.trio.websocket.outbox import Outbox
from pyserver.trio.websocket.runtime import IdleSweeper, per_run
from pyserver.ws.connection import ConnectionState

__all__ = ["Writer", "WriterState"]

_OPEN = ConnectionState.OPEN
_CLOSED = ConnectionState.CLOSED
_reschedule = trio.lowlevel.reschedule
_current_task = trio.lowlevel.current_task
_wait_rescheduled = trio.lowlevel.wait_task_rescheduled
_wait_writable = trio.lowlevel.wait_writable
_SUCCEEDED = trio.lowlevel.Abort.SUCCEEDED
_os_write = os.write

#: Frames are joined into one write up to this many bytes; a larger batch is written in
#: pieces (a big frame on its own), so echoing large messages does not build (and page-fault)
#: a fresh multi-megabyte buffer per batch.
JOIN_LIMIT = 65536


class WriterState(enum.Enum):
    """The writer task's state (besides being parked, which ``_writer`` says)."""

    NONE = "none"  # no writer task (not started yet, or retired while idle)
    RUNNING = "running"  # started; while not parked, a write may be in flight
    RETIRING = "retiring"  # asked to end at its next idle moment
    TORN = "torn"  # cancelled in the middle of a frame: nothing may write the stream again


_W_NONE = WriterState.NONE
_W_RUNNING = WriterState.RUNNING
_W_RETIRING = WriterState.RETIRING
_W_TORN = WriterState.TORN


class Writer(Outbox):
    """The writer part (module docstring)."""

    __slots__ = ("_writer", "_writer_busy", "_writer_state")

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._writer: trio.lowlevel.Task | None = None  # the writer, while parked idle
        self._writer_state = _W_NONE
        self._writer_busy = False  # woken since the idle sweeper last looked

    # -- what the parts above provide ----------------------------------------------------

    def _finish(self) -> None:
        """The connection is done: its stream is about to close (``WebSocket``)."""
        raise NotImplementedError

    def _update_timer(self) -> None:
        """Have the core's next deadline watched (:class:`~.timed.Timed`)."""
        raise NotImplementedError

    # -- the writer task -----------------------------------------------------------------

    def _writer_idle(self) -> bool:
        """No write is in flight: the writer is parked with nothing to do, retiring, or
        there is none (and one could be started: the connection's nursery runs)."""
        if self._writer is not None:
            return True
        state = self._writer_state
        return (
            (state is _W_NONE or state is _W_RETIRING)
            and self._nursery is not None
            and not self._done
        )

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
        state = self._writer_state
        if state is _W_TORN:
            return  # (no task may write the stream again)
        if state is _W_NONE:
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

    def _abort_writer(self, _: Any) -> trio.lowlevel.Abort:
        self._writer = None
        return _SUCCEEDED

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
                    if size > JOIN_LIMIT and len(batch) > 1:
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
                    if conn.failure is not None and not self._reading_ended():
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
            # retired while idle (open, nothing torn), or cancelled from outside: then
            # run() says goodbye on the stream once every task has ended (unless torn)
            self._writer_state = _W_TORN if writing and not ended else _W_NONE
            if ended:
                self._finish()
                self._update_timer()
                # closing the stream also ends a reader blocked on it
                await trio.aclose_forcefully(self._stream)

    async def _write_large_batch(self, batch: list[bytes]) -> None:
        """A batch over ``JOIN_LIMIT``: small frames joined up to it, large ones on their
        own, so echoing large messages does not build a multi-megabyte buffer per batch."""
        group: list[bytes] = []
        group_size = 0
        for frame in batch:
            if len(frame) >= JOIN_LIMIT:
                if group:
                    await self._write(group[0] if len(group) == 1 else b"".join(group))
                    group = []
                    group_size = 0
                await self._write(frame)
                continue
            group.append(frame)
            group_size += len(frame)
            if group_size >= JOIN_LIMIT:
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
            while not self._reading_ended():
                self._writer = _current_task()
                await _wait_rescheduled(self._abort_writer)


_SWEEPER: trio.lowlevel.RunVar[IdleSweeper[Writer]] = trio.lowlevel.RunVar("pyserver_ws_sweeper")


def _sweeper() -> IdleSweeper[Writer]:
    return per_run(_SWEEPER, lambda: IdleSweeper(Writer._retire_writer))

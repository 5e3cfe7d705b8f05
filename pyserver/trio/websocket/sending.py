"""Who writes a connection's bytes: the one rule (:meth:`Sender._route`), and its routes.

Bytes are written by one party at a time, in queue order; which party is decided by
:class:`Route`, from the connection's state, in one method:

* ``READER``: the reader is delivering a batch (*corked*): what its handlers queue goes out
  in one write from the reader after the batch (``_uncork``), not a write per reply;
* ``WRITER``: the writer task has a write in flight (it comes back for what was queued),
  or nothing else may write (the queue is written by the writer, started or woken);
* ``STEP``: a step of the reactor is under way (:mod:`.fanout`): its end writes each
  connection it queued to once, all of them in one Rust call;
* ``TICKER``: this connection was written directly in the current scheduler batch: like a
  Node socket until its write callback, it is busy until the loop has gone round, and the
  run's ticker (:class:`~.runtime.Ticker`) writes what was queued meanwhile, at the start
  of the next batch, in one write (several broadcasts in one batch cost a recipient one
  write, and a server that falls behind writes less often, not more);
* ``DIRECT``: **try-write-first** (as asyncio's and uvloop's transports do): nothing is
  queued, no write is in flight, the socket is a plain one: the caller writes at once,
  with one non-blocking ``os.write`` (no await, so no cancellation point). Nothing is
  queued that could go before those bytes and nobody is mid-frame. What the kernel does not
  take is queued as the first item (the rest of the frame, before anything queued later);
  a failed write queues the whole frame, and the writer meets the error and closes as it
  always does. Never after a Close was queued: control frames go through the outbox.

``send``/``send_nowait`` (replies) always queue, so a handler answering a chunk of
messages still goes out in one write; ``send_frame_nowait`` and the broadcast path try
``DIRECT`` first.

Inline copies: ``_enqueue`` (every frame queued) and :func:`~.fanout._write_to_many` (every
recipient of a broadcast) take the same decision without calling ``_route``: calling it
per recipient costs 15% more instructions per delivery (callgrind, ``bench/sio_bench.py
--callgrind --bcast 500@4``: 3,640 against 3,165, measured in one run). The
tests hold both copies to ``_route`` over every combination of the state it reads
(``tests/test_websocket_sending.py``).
"""

from __future__ import annotations

import enum
import os
from collections.abc import Iterable
from typing import Any

import trio

from pyserver import _frames
from pyserver.trio.websocket.outbox import FD_IO
from pyserver.trio.websocket.runtime import Ticker, per_run
from pyserver.trio.websocket.writer import JOIN_LIMIT, Writer, WriterState
from pyserver.ws.connection import ConnectionState

__all__ = ["Route", "Sender", "queue_for_step", "ticker_of_run", "unfold", "write_queued"]

_OPEN = ConnectionState.OPEN
_W_NONE = WriterState.NONE
_W_RUNNING = WriterState.RUNNING
_W_RETIRING = WriterState.RETIRING
_os_write = os.write
_write_each = getattr(_frames, "write_each", None) if FD_IO else None  # (Unix only)


class Route(enum.Enum):
    """Who writes what is queued on a connection now (module docstring)."""

    DIRECT = "direct"
    READER = "reader"
    WRITER = "writer"
    STEP = "step"
    TICKER = "ticker"


_DIRECT = Route.DIRECT
_READER = Route.READER
_WRITER = Route.WRITER
_STEP = Route.STEP
_TICKER = Route.TICKER


class Sender(Writer):
    """The sending part (module docstring): routes what is queued to the party that
    writes it, and makes the direct writes."""

    __slots__ = ("_deferred", "_direct_gen", "_stepped", "_ticker")

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._direct_gen = -1  # the ticker's generation at the last direct write, or -1
        self._ticker: Ticker[Sender] | None = None  # this run's, looked up when first needed
        # marks of membership, so that a connection is listed once: in the ticker's
        # deferred list (written when the loop has gone round), in the reactor step's list
        self._deferred = False
        self._stepped = False

    # -- the rule ------------------------------------------------------------------------

    def _route(self) -> Route:
        """Who writes this connection's queued bytes now: THE rule (module docstring)."""
        if self._corked:
            return _READER
        state = self._writer_state
        if self._writer is None and state is _W_RUNNING:
            return _WRITER  # a write is in flight: the writer comes back for the queue
        ticker = self._ticker
        if ticker is None:
            ticker = self._ticker = ticker_of_run()
        if ticker.step is not None:
            return _STEP
        if self._direct_gen == ticker.generation:
            return _TICKER
        if (
            self._sock is not None
            and not self._outbox
            and (
                self._writer is not None  # parked with nothing to do
                or (
                    (state is _W_NONE or state is _W_RETIRING)
                    and self._nursery is not None
                    and not self._done
                )
            )
        ):
            return _DIRECT
        return _WRITER

    # -- sending encoded frames (the broadcast path) ----------------------------------------

    def send_frame_nowait(self, frame: bytes) -> None:
        """Queue an already encoded frame (the broadcast path: encode once, send many)."""
        if self._conn.state is not _OPEN:
            raise self._closed_error()
        if self._route() is _DIRECT and self._write_first(frame):
            return
        self._enqueue(frame)

    def send_frames_nowait(self, frames: list[bytes]) -> bool:
        """Queue already encoded frames, in order (a broadcast's parts), when the connection
        is open: True; False (nothing queued) once it is closing. Never waits; a full
        outbox closes the connection as a slow consumer, as for ``send_frame_nowait``."""
        if self._conn.state is not _OPEN:
            return False
        if self._route() is _DIRECT and self._write_first(
            frames[0] if len(frames) == 1 else b"".join(frames)
        ):
            return True
        for frame in frames:
            self._enqueue(frame)
        return True

    def _enqueue(self, frame: bytes) -> None:
        """Queue ``frame`` and have it written by the party ``_route`` names (inline: the
        hot path; ``_route``'s order, with ``DIRECT`` out, as something is queued now)."""
        ticker = self._ticker
        if ticker is None:
            ticker = self._ticker = ticker_of_run()
        if ticker.first is not None:
            unfold(ticker)  # (a reactor step's first broadcast goes before this frame)
        outbox = self._outbox
        outbox.append(frame)
        size = self._outbox_bytes + len(frame)
        self._outbox_bytes = size
        # (_no_room, checked after the append, inline: the frame did not fit)
        if len(outbox) > self._max_outbox or (size > self._max_outbox_bytes and len(outbox) > 1):
            self._slow_consumer()
            return
        if self._corked:  # READER
            return  # the reader writes it after its batch (_uncork)
        task = self._writer
        if task is None and self._writer_state is _W_RUNNING:  # WRITER, in flight
            self._writer_busy = True  # the writer comes back for it
            return
        step = ticker.step
        if step is not None:  # STEP: the reactor's step writes it when it ends
            if not self._stepped:
                self._stepped = True
                step.append(self)
            return
        if self._direct_gen == ticker.generation:  # TICKER
            self._defer()
            return
        self._wake_writer()  # WRITER

    def _wrote_this_batch(self) -> bool:
        """A direct write was made in the current scheduler batch (the ``TICKER`` route)."""
        ticker = self._ticker
        return ticker is not None and self._direct_gen == ticker.generation

    def _defer(self) -> None:
        if not self._deferred:
            self._deferred = True
            self._ticker.defer(self)  # type: ignore[union-attr]  # (_wrote_this_batch)

    def _write_first(self, data: bytes) -> bool:
        """The ``DIRECT`` route (the caller checked it): write ``data`` now, without
        waiting. True when it is dealt with: all written, or the rest queued for the
        writer; False when the kernel took nothing or the write failed (the caller queues
        it: the writer meets the error again and closes as usual)."""
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
        ``_write_first`` returns (also for the broadcast's and the ticker's writes)."""
        if sent == len(data):
            ticker = self._ticker
            if ticker is None:
                ticker = self._ticker = ticker_of_run()
            self._direct_gen = ticker.touch()
            return True
        if sent <= 0:
            return False
        self._enqueue(data[sent:])  # the rest of a frame: queued first, nothing interleaves
        return True

    def _uncork(self) -> None:
        """The end of the reader's batch (the ``READER`` route): what it queued goes out
        now (``_flush``)."""
        self._corked = False
        self._flush()

    def _flush(self) -> None:
        """The party holding the write (a reader after its batch, the keepalive timer, the
        ticker) writes what is queued: in one write from this task when the socket takes
        it all (no writer wake-up), else through the writer; after the ticker when this
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
        no more than ``JOIN_LIMIT`` bytes, and no write in flight (``_flush``,
        ``write_queued``)."""
        return (
            self._sock is not None
            and self._conn.state is _OPEN
            and self._outbox_bytes <= JOIN_LIMIT
            and (self._writer is not None or self._writer_idle())
        )

    def _requeue(self, data: bytes) -> None:
        """A direct write of the whole queue (``data``) wrote nothing: it is queued again,
        and the writer meets the problem (no room: it waits; a broken socket: it closes)."""
        self._outbox = [data]
        self._outbox_bytes = len(data)
        self._wake_writer()


def unfold(ticker: Ticker[Sender]) -> None:
    """Something more is sent in this reactor step than its first broadcast: queue that
    broadcast on each of its recipients now, so that it goes before what follows."""
    first = ticker.first
    if first is not None:
        ticker.first = None
        queue_for_step(first[0], first[1], ticker.step)  # type: ignore[arg-type]  # (a step)


def queue_for_step(sockets: Iterable[Sender], frames: list[bytes], step: list[Sender]) -> None:
    """A broadcast during a reactor step: ``ws._enqueue(frame)`` for each frame and open
    recipient (the step's end then writes each recipient once), in one loop (inline: the
    ``STEP`` route for every recipient; ``READER`` and in-flight ``WRITER`` as in
    ``_enqueue``)."""
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


def write_queued(connections: list[Sender]) -> None:
    """Write what each of ``connections`` has queued, in one write each (``_flush``'s rule
    for each connection, without its one-direct-write-per-batch check: the caller is the
    end of a reactor step or the ticker), with every direct write made by one Rust call
    (``_frames.write_each``). A connection that cannot be written to directly (a write in
    flight, not open, a large queue) gets its writer woken instead."""
    if _write_each is None:
        for ws in connections:
            ws._flush()
        return
    direct: list[Sender] = []
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
    ticker = ticker_of_run()
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


def _flush_deferred(connections: list[Sender]) -> None:
    """The ticker's flush: the loop has gone round since these connections wrote."""
    for ws in connections:
        ws._deferred = False
    write_queued(connections)


_TICKER_OF_RUN: trio.lowlevel.RunVar[Ticker[Sender]] = trio.lowlevel.RunVar("pyserver_ws_ticker")


def ticker_of_run() -> Ticker[Sender]:
    """This Trio run's ticker (:class:`~.runtime.Ticker`), made on first use."""
    return per_run(_TICKER_OF_RUN, lambda: Ticker(_flush_deferred))

"""The bounded outbox of one WebSocket: the first part of the shell's class.

The shell's :class:`~pyserver.trio.websocket.connection.WebSocket` is made of parts, one per
module, stacked in one line of inheritance (each part adds its own ``__slots__`` and its
own methods and uses those of the parts below it)::

    Outbox -> Writer -> Sender -> Worker -> Reader -> Reactive -> Timed -> WebSocket
    outbox    writer    sending   work      reader    reactive    timed    connection

Why a line of classes rather than separate objects that hold each other: the parts read
each other's state on the per-message path (the outbox, the writer's state, the route), and
the broadcast loop reads it for every recipient; on one object each read is one attribute
load, across objects it is two. The parts stay apart in the code: each module says what
state it owns, the import graph is a line, and a part calls a part above it only through
the few methods declared (and documented) where they are first needed: ``_enqueue``,
``_sync``, ``close_nowait`` and ``_reading_ended`` here, ``_finish`` and ``_update_timer``
in the writer, ``_hand_off`` in the work part, ``_enter_reactor`` in the reader.

This part owns what every other part shares (the sans-IO core ``_conn``, the stream and,
on a plain socket, ``_sock``, the request) and the outbox itself: the frames queued for the
writer (``_outbox``, a list, and its size in bytes), its limit (``_no_room``, the one rule
for every frame queued), and what happens when a frame does not fit: ``send`` waits, the
reading waits with a Pong (``_queue_controls``), anything else closes the connection as a
slow consumer (1008, one log line): one slow peer never holds up anyone else.
"""

from __future__ import annotations

import logging
import sys
from typing import NamedTuple

import trio

from pyserver.errors import ConnectionClosed
from pyserver.http import Request
from pyserver.logtext import shown
from pyserver.ws.connection import PONG_HEAD, ConnectionState, WebSocketConnection

__all__ = ["Options", "Outbox", "peer"]

logger = logging.getLogger("pyserver.ws")

_OPEN = ConnectionState.OPEN
FD_IO = sys.platform != "win32"  # os.read/os.write work on socket descriptors


class Options(NamedTuple):
    """What a connection is made with, besides its stream, request and core."""

    subprotocol: str | None
    trailing_data: bytes
    max_inbox: int
    max_outbox: int
    max_outbox_bytes: int


def socket_of(stream: trio.abc.Stream) -> trio.socket.SocketType | None:
    """The socket whose descriptor the shell reads and writes directly, or None (any other
    stream: TLS, memory streams; those go through ``receive_some``/``send_all``)."""
    # the exact type: a subclass may wrap its I/O, and TLS streams are not SocketStreams
    if FD_IO and type(stream) is trio.SocketStream:
        return stream.socket
    return None


def peer(address: tuple[str, int]) -> str:
    host, port = address[0], address[1]
    return f"{host}:{port}" if host else "?"


class Outbox:
    """The outbox part (module docstring)."""

    __slots__ = (
        "__weakref__",
        "_conn",
        "_corked",
        "_done",
        "_encoder",
        "_max_outbox",
        "_max_outbox_bytes",
        "_nursery",
        "_outbox",
        "_outbox_bytes",
        "_pong",
        "_seen_state",
        "_sock",
        "_space",
        "_stream",
        "deflate_window_bits",
        "remote_address",
        "request",
        "subprotocol",
    )

    def __init__(
        self, stream: trio.abc.Stream, request: Request, conn: WebSocketConnection, options: Options
    ) -> None:
        self.request = request
        self.remote_address = request.remote_address
        self.subprotocol = options.subprotocol
        deflate = conn.deflate
        #: The window a shared compressed broadcast frame must use for this peer, or None
        #: (no permessage-deflate, or a stateful server context): see ``pyserver.ws.broadcast``.
        self.deflate_window_bits: int | None = (
            deflate.server_max_window_bits
            if deflate is not None and deflate.server_no_context_takeover
            else None
        )
        self._stream = stream
        self._sock = socket_of(stream)
        self._conn = conn
        self._encoder = conn.encoder  # shared by connections without deflate
        self._seen_state = conn.state  # the core's state when _sync last looked
        # the connection's tasks run in this nursery (None before run() and once its tasks
        # are ending: nothing starts a task then); _done: the stream is being closed
        self._nursery: trio.Nursery | None = None
        self._done = False
        self._outbox: list[bytes] = []
        self._outbox_bytes = 0
        self._max_outbox = options.max_outbox
        self._max_outbox_bytes = options.max_outbox_bytes
        # True only while a reader delivers a batch and runs its inline work (never across
        # a yield): what is queued meanwhile waits for the reader's one write after it
        self._corked = False
        # a Pong that did not fit in the outbox: the reading waits with it (_queue_controls)
        self._pong: bytes | None = None
        # senders waiting for room (send), and a reader waiting with a Pong
        self._space: trio.lowlevel.ParkingLot | None = None

    # -- what the parts above provide ----------------------------------------------------

    def _enqueue(self, frame: bytes) -> None:
        """Queue ``frame`` and see that it is written (:class:`~.writer.Writer`)."""
        raise NotImplementedError

    def _sync(self) -> None:
        """Move the core's control frames to the outbox and react to state changes
        (:class:`~.connection.WebSocket`)."""
        raise NotImplementedError

    def close_nowait(self, code: int = 1000, reason: str = "") -> None:
        """Start the close handshake (:class:`~.connection.WebSocket`)."""
        raise NotImplementedError

    def _reading_ended(self) -> bool:
        """Nobody reads the socket any more (:class:`~.reader.Reader`)."""
        raise NotImplementedError

    # -- the outbox ----------------------------------------------------------------------

    def _no_room(self, size: int) -> bool:
        """The outbox's limit, the one rule for every frame queued: a frame of ``size``
        bytes does not fit. An empty outbox takes any frame; otherwise the outbox stays
        within ``max_outbox`` frames and ``max_outbox_bytes`` bytes. ``send`` waits while
        its frame does not fit, and so does the reading while a Pong does not
        (``_queue_controls``); a frame queued without waiting that does not fit closes the
        connection as a slow consumer. ``Writer._enqueue`` and ``fanout._queue_for_step``
        have the check inline, after the append (they are the hot path); a test holds them
        to this method."""
        outbox = self._outbox
        return bool(outbox) and (
            len(outbox) >= self._max_outbox or self._outbox_bytes + size > self._max_outbox_bytes
        )

    def _slow_consumer(self) -> None:
        """A frame queued without waiting did not fit: drop the queue, close 1008."""
        logger.warning(
            "closing WebSocket %s (peer %s): slow consumer, %d frames / %d bytes queued",
            shown(self.request.path),
            peer(self.remote_address),
            len(self._outbox),
            self._outbox_bytes,
        )
        self._outbox = []
        self._outbox_bytes = 0
        self._conn.close(1008, "slow consumer", now=trio.current_time())
        self._sync()

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

    def _closed_error(self) -> ConnectionClosed:
        conn = self._conn
        return ConnectionClosed(conn.close_code or 1006, conn.close_reason)

    def _log_failure(self, what: str, error: BaseException | None = None) -> None:
        """One log line, with the traceback, for an exception from user code: ``error``,
        or the one being handled (called from its ``except``)."""
        logger.error(
            "WebSocket %s failed (%s, peer %s)",
            what,
            shown(self.request.path),
            peer(self.remote_address),
            exc_info=True if error is None else error,
        )

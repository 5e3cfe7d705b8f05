"""The Trio shell for one accepted WebSocket: :class:`WebSocket`, made of parts.

Tasks per connection, all in one nursery (``run``), ended together:

* the **reader** (:mod:`.reader`) reads the socket and feeds every chunk to the sans-IO
  core in one call; messages go to the inbox (``async for``) or straight to a callback
  (``serve_messages``, what Engine.IO does), and the work those callbacks return runs in the
  reading task right after its batch (:mod:`.work`, :mod:`.inline`). On Linux, a reader
  that would wait for the socket hands it to the **reactor** (:mod:`.reactor`,
  :mod:`.reactive`), which reads every such connection in one task;
* the **writer** (:mod:`.writer`) is the one task that waits for the socket to take
  bytes; it exists only while there is something to write;
* a **timer** task only while a close handshake is under way (:mod:`.timed`); keepalive
  pings are the run's one timer's business;
* the **handler** runs in the task that called :meth:`WebSocket.run`.

Who writes a connection's bytes is one rule, ``Sender._route`` (:mod:`.sending`): the
reader after its batch, the writer, the end of a reactor step, the run's ticker, or the
caller at once (try-write-first); broadcasts go through :mod:`.fanout`. The outbox is
bounded by frame count and bytes (:mod:`.outbox`): ``send`` waits for room, anything queued
without waiting that does not fit closes the connection as a slow consumer (1008).

The parts are classes in one line of inheritance, each in its module with its own slots
(:mod:`.outbox` says why): ``Outbox -> Writer -> Sender -> Worker -> Reader -> Reactive ->
Timed -> WebSocket``. This module holds the public API and the lifecycle: the core's state
changes (``_sync``), the handler's run, and the end (``_finish``).

Error handling: a peer's protocol error is answered with its close code by the core and
logged once (``pyserver.ws``); a handler (or message callback) exception is logged once with
its traceback and closes with 1011. Cancelled from outside while open (the server is
shutting down), the connection says 1001 "server shutting down" if the socket takes it at
once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from pyserver.errors import ConnectionClosed
from pyserver.http import Request
from pyserver.logtext import shown
from pyserver.trio.websocket.fanout import send_frames_to_many
from pyserver.trio.websocket.outbox import Options, logger, peer
from pyserver.trio.websocket.reader import Delivery
from pyserver.trio.websocket.runtime import WRITER_IDLE_SECONDS
from pyserver.trio.websocket.timed import Timed
from pyserver.trio.websocket.writer import WriterState
from pyserver.ws.connection import ConnectionState, WebSocketConnection

__all__ = ["WRITER_IDLE_SECONDS", "DeflateWebSocket", "WebSocket", "send_frames_to_many"]

_OPEN = ConnectionState.OPEN
_CLOSING = ConnectionState.CLOSING
_CLOSED = ConnectionState.CLOSED
_DRAINED: list[str | bytes] = []  # (an empty inbox; never appended to)
_FAIR_STREAK = 32


class WebSocket(Timed):
    """An accepted WebSocket (implements ``pyserver.http.WebSocket``)."""

    __slots__ = ("_done_event",)

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
        super().__init__(
            stream,
            request,
            conn,
            Options(subprotocol, trailing_data, max_inbox, max_outbox, max_outbox_bytes),
        )
        self._done_event: trio.Event | None = None

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

    def send_nowait(self, message: str | bytes) -> None:
        """Queue one message without waiting. Raises ConnectionClosed if the connection is
        already closing; a full outbox closes it as a slow consumer (the message is lost)."""
        if self._conn.state is not _OPEN:
            raise self._closed_error()
        encoder = self._encoder
        frame = encoder.text(message) if message.__class__ is str else encoder.binary(message)  # type: ignore[arg-type]
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
                self._delivery = Delivery.DISCARD
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
            if last and self._writer_state is not WriterState.TORN:
                with trio.CancelScope(shield=True, deadline=trio.current_time() + 0.5):
                    try:
                        await self._write(b"".join(last))
                    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                        pass
            self._finish()
            await trio.aclose_forcefully(self._stream)

    # -- internals ---------------------------------------------------------------------

    # -- the core's state changes and the end -------------------------------------------

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
                peer(self.remote_address),
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

    def _finish(self) -> None:
        if not self._done:
            self._done = True
            self._conn.abort()
            self._sync()
            self._leave_reactor()  # (before the stream closes: see _leave_reactor)
            if self._done_event is not None:
                self._done_event.set()


class DeflateWebSocket(WebSocket):
    """A WebSocket that agreed on permessage-deflate (``App(compression=...)``).

    A class of its own so that a broadcast tells it from the others by its class alone
    (``ws.__class__ is WebSocket`` for the plain ones: no attribute test per recipient when
    nobody compresses). ``deflate_key`` is what a shared compressed broadcast frame for it
    depends on, ``(window bits, zlib level, threshold)``, or None when its server context is
    stateful (not ``server_no_context_takeover``: broadcasts then reach it uncompressed).
    Its own messages (``send``) go through its core's encoder with the same level and
    threshold."""

    __slots__ = ("deflate_key",)

    def __init__(
        self,
        stream: trio.abc.Stream,
        request: Request,
        conn: WebSocketConnection,
        *,
        compression_level: int,
        compress_threshold: int,
        **options: Any,
    ) -> None:
        super().__init__(stream, request, conn, **options)
        bits = self.deflate_window_bits
        self.deflate_key: tuple[int, int, int] | None = (
            (bits, compression_level, compress_threshold) if bits is not None else None
        )


#: Frames are joined into one write up to this many bytes; a larger batch is written in
#: pieces (a big frame on its own), so echoing large messages does not build (and page-fault)
#: a fresh multi-megabyte buffer per batch.

"""The reactive part of a WebSocket: its side of the reactor (:mod:`.reactor`, Linux).

A reader that would wait for the socket while callbacks take the messages and the
connection is open registers the socket with the reactor instead, and its task ends
(``_enter_reactor``); the reactor's driver then reads every such connection in one scheduler
step per batch, calling ``_react`` (the read loop's body for one read: delivery, the batch's
inline work, one write). The end of the stream and a completed close end the reading there;
a failure (whose draining needs a task), a Pong waiting for room in the outbox (a task waits
for it) or an unexpected error gives the reading back to a new reader task
(``_leave_reactor``). The socket always leaves the reactor before the stream is closed (its
descriptor can be reused at once).

Inline work that blocks in a driver is kept by that driver (``_keep``/``_kept``): its cancel
scope is held here and cancelled when the connection is cancelled, so blocked work never
outlives its connection's server.
"""

from __future__ import annotations

import os
from contextlib import AbstractAsyncContextManager
from typing import Any

import trio

from pyserver.trio.websocket import inline
from pyserver.trio.websocket import reactor as _reactor_module
from pyserver.trio.websocket.fanout import step_ended, step_started
from pyserver.trio.websocket.reactor import Blocked, Reactor
from pyserver.trio.websocket.reader import Delivery, Reader, Reading
from pyserver.ws.connection import ConnectionState

__all__ = ["Reactive", "serving_reactor"]

_OPEN = ConnectionState.OPEN
_CLOSED = ConnectionState.CLOSED
_CALLBACK = Delivery.CALLBACK
_os_read = os.read


class Reactive(Reader):
    """The reactive part (module docstring): implements ``reactor.Reactive``."""

    __slots__ = ("_keepers", "_reactor", "_reactor_fd")

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        # read by a reactor (see pyserver.trio.websocket.reactor) instead of a task
        self._reactor: Reactor | None = None
        self._reactor_fd = -1
        # the outermost cancel scopes of reactor tasks finishing blocked work of ours
        self._keepers: list[trio.CancelScope] | None = None

    # -- read by the reactor --------------------------------------------------------------

    def _enter_reactor(self, sock: trio.socket.SocketType) -> bool:
        """Have this run's reactor read the socket from now on: True when it does (the
        calling reader task then leaves: it is no longer the reader)."""
        if self._nursery is None or self._done:
            return False  # (no task could take the reading back)
        reactor = _reactor_module.current()
        if reactor is None:
            return False
        fd = sock.fileno()
        if fd < 0 or not reactor.add(fd, self):
            return False
        self._reactor = reactor
        self._reactor_fd = fd
        self._reader_generation += 1
        self._reading = Reading.REACTOR
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
        if messages and self._delivery is _CALLBACK:  # (registered: callbacks are set)
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

    def _release(self) -> None:
        """The reactor stops (its serving call ends): a task of ours reads from now on."""
        self._leave_reactor()

    def _lost(self) -> None:
        self._corked = False
        self._leave_reactor()
        if self._conn.state is _OPEN:
            self.close_nowait(1011, "internal error")


def serving_reactor() -> AbstractAsyncContextManager[Reactor | None]:
    """``async with serving_reactor():`` around the serving of connections (what
    ``App.serve_listeners`` does): the connections served inside are read by one reactor
    whose drivers live in the calling task's nursery (:func:`.reactor.serving`)."""
    return _reactor_module.serving(step_started, step_ended)

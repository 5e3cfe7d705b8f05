"""The timed part of a WebSocket: keepalive pings and the close handshake's deadline.

While the connection is open, the core's ``next_deadline()`` (keepalive pings) is watched by
the run's one keepalive timer (:class:`~.runtime.Keepalive`: one heap and one system task for
every connection), so an idle connection with keepalive costs a heap entry, not a sleeping
task; when a deadline comes, ``_keepalive_due`` feeds ``now`` to the core and sends what the
core queued (a Ping goes out in one direct write when the socket takes it, as a reader's
batch does; a 1011 Close wakes the writer); it runs no user code. Once a close is under way,
a **timer** task of the connection sleeps until the close deadline and then drops the
stream (which needs an ``await``, and may hand the reading to a new task of the connection):
the close handshake is short and happens once per connection, so that task costs no idle
memory.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import trio

from pyserver.logtext import shown
from pyserver.trio.websocket.reactive import Reactive
from pyserver.trio.websocket.runtime import Keepalive, per_run
from pyserver.trio.websocket.work import NO_CONTEXT
from pyserver.ws.connection import ConnectionState

__all__ = ["Timed"]

logger = logging.getLogger("pyserver.ws")

_OPEN = ConnectionState.OPEN
_CLOSING = ConnectionState.CLOSING
_CLOSED = ConnectionState.CLOSED


class Timed(Reactive):
    """The timed part (module docstring)."""

    __slots__ = ("_timer_running", "_timer_sleep")

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._timer_sleep: trio.CancelScope | None = None  # the timer task's sleep
        self._timer_running = False  # a timer task is started

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


def _keepalive_due(ws: Timed, now: float) -> None:
    try:
        context = ws._context
        if context is NO_CONTEXT:
            ws._keepalive_due(now)
        else:
            # messages go to callbacks: a writer started here (which may hand the reading
            # to a task that calls on_end) gets the connection's context, not the timer's
            context.run(ws._keepalive_due, now)
    except Exception:  # a system task must never raise
        logger.exception("WebSocket keepalive failed for %s", shown(ws.request.path))


def _keepalive() -> Keepalive[Timed]:
    return per_run(_KEEPALIVE, lambda: Keepalive(_keepalive_due))


def _keepalive_if_any() -> Keepalive[Timed] | None:
    """This run's keepalive timer if a connection made it (nothing is made to unschedule)."""
    try:
        return _KEEPALIVE.get()
    except LookupError:
        return None


_KEEPALIVE: trio.lowlevel.RunVar[Keepalive[Timed]] = trio.lowlevel.RunVar("pyserver_ws_keepalive")

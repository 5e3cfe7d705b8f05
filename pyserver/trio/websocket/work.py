"""The work part of a WebSocket: running what the callbacks returned for a batch.

A message callback may return async work for its message (the Socket.IO layer: a socket's
handler queue that no task runs yet; :mod:`.inline`). After the batch, the reading
task runs each work's first step itself, in order (``_first_steps``): most handlers finish
without blocking, so a message costs no task spawn and no task switch, as in Node. Work
that blocks cannot leave the task that started it, so that task keeps it: the reading goes
on in a new task (``_hand_off``), which first runs the rest of the batch, and this one
finishes the work (``_run_inline``); in the reactor, a new driver goes on (:mod:`.reactor`).
A failing work is logged once with its traceback and closes the connection with 1011.

Every step runs in the connection's context (``_context``: that of the task that called
``serve_messages``), whichever task runs it.
"""

from __future__ import annotations

import contextvars
from typing import Any

from pyserver.trio.websocket import inline
from pyserver.trio.websocket.outbox import logger
from pyserver.trio.websocket.reactor import Blocked
from pyserver.trio.websocket.sending import Sender
from pyserver.ws.connection import ConnectionState

__all__ = ["NO_CONTEXT", "Worker"]

_OPEN = ConnectionState.OPEN
NO_CONTEXT = contextvars.Context()  # (never run in: serve_messages gives the connection its own)


class Worker(Sender):
    """The work part (module docstring)."""

    __slots__ = ("_context",)

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        # where messages go to callbacks: the context every delivery, every first step of
        # inline work and every step of blocked work runs in, whichever task runs them
        self._context: contextvars.Context = NO_CONTEXT

    def _hand_off(self, rest: list[inline.Work] | None) -> bool:
        """Start a new reader task that runs ``rest`` (if any) and goes on reading: False
        when none can start (:class:`~.reader.Reader`)."""
        raise NotImplementedError

    async def _run_inline(self, pending: list[inline.Work], own: contextvars.Context) -> bool:
        """Run the work returned during a batch (:mod:`pyserver.trio.websocket.inline`), in order,
        in this task (whose context is ``own``) and in the connection's context. Work that
        blocks stays here: the reading goes on in a new task, which first runs the rest of
        ``pending``; this one flushes what is queued, finishes that work, and returns True
        (the caller leaves the read loop)."""
        context: contextvars.Context | None = self._context
        if context is own or context is NO_CONTEXT:
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

    def _work_failed(self, error: BaseException | None = None) -> None:
        """Inline work raised (``error``, or the exception being handled): like a failing
        message callback, 1011 (logged once, with the traceback)."""
        self._log_failure("inline work", error)
        if self._conn.state is _OPEN:
            self.close_nowait(1011, "internal error")

    def _spawn_work(self, works: list[inline.Work]) -> None:
        """Inline work this reader cannot run after all: each in a task of its own, every
        step in the connection's context (as if the reader ran it)."""
        nursery = self._nursery
        context = self._context
        for work in works:
            if nursery is None:
                logger.error("inline work dropped: the connection's tasks have ended")
                return
            try:
                if context is NO_CONTEXT:
                    nursery.start_soon(work)
                else:
                    nursery.start_soon(inline.run_in, context, work)
            except RuntimeError:
                nursery = None

"""Inline work: running a handler in the task that read its message, without a task switch.

A reader that hands messages to synchronous callbacks (``WebSocket.serve_messages``) opens a
*slot* around each batch it delivers. Code below the callbacks that has async work to start
(the Socket.IO layer: a socket's handler queue) puts the work in the slot with :func:`offer`
instead of spawning a task; after the batch the reader runs it itself (:func:`run_first_step`).
Most handlers finish without blocking (they emit, join rooms, return an ack), so a message
then costs no task spawn and no task switch at all, as in Node, where a handler is a callback
run by the read.

A handler that does block (awaits an ack, a sleep, a lock) cannot be moved to another task
once it has started: its first step may already have registered the current task somewhere
(a parking lot, a cancel scope). So the reader keeps it: it starts a new task that goes on
reading (the reactor's drivers do the same, :mod:`pyserver.trio.websocket.reactor`), and
finishes the blocked work with :func:`resume` (which is ``await`` on a coroutine
whose first step has already run). The slot is only ever open during one synchronous
stretch of one task (thread-local, cleared before anything can yield), so no other task can
see it.
"""

from __future__ import annotations

import contextvars
import threading
import types
from collections.abc import Callable, Coroutine, Generator
from typing import Any

__all__ = ["FINISHED", "Work", "close_slot", "offer", "open_slot", "resume", "run_first_step"]

Work = Callable[[], Coroutine[Any, Any, Any]]
"""A coroutine function without arguments (a bound method, typically)."""


class _Slot(threading.local):
    pending: list[Work] | None = None


_slot = _Slot()


def open_slot() -> list[Work]:
    """Start collecting offered work (the caller is a reader about to deliver a batch)."""
    pending: list[Work] = []
    _slot.pending = pending
    return pending


def close_slot() -> None:
    """Stop collecting (before the caller can yield to the scheduler)."""
    _slot.pending = None


def offer(work: Work) -> bool:
    """Hand ``work`` to the reader delivering the current message: True when taken (it will
    run, in order with other work taken in this batch), False when no reader takes work now
    (the caller starts a task for it)."""
    pending = _slot.pending
    if pending is None:
        return False
    pending.append(work)
    return True


FINISHED: Any = object()
"""What :func:`run_first_step` returns for a coroutine that did not block."""


def run_first_step(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coro`` up to its first suspension: :data:`FINISHED` when it finished (its
    result is dropped), else the value it yielded to the scheduler, to be passed to
    :func:`resume`. Its exceptions propagate."""
    try:
        return coro.send(None)
    except StopIteration:
        return FINISHED


@types.coroutine
def resume(
    coro: Coroutine[Any, Any, Any], yielded: Any, context: contextvars.Context | None = None
) -> Generator[Any, Any, Any]:
    """``await resume(coro, yielded)``: go on with ``coro`` after :func:`run_first_step`
    returned ``yielded``, exactly as if it had been awaited from the start (what the
    scheduler sends or throws in goes to ``coro``; its result or exception comes out).
    With ``context``, every step of ``coro`` runs in it (the context its first step ran
    in, when that was not the current task's)."""
    while True:
        try:
            sent = yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:
            try:
                yielded = coro.throw(exc) if context is None else context.run(coro.throw, exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                yielded = coro.send(sent) if context is None else context.run(coro.send, sent)
            except StopIteration as stop:
                return stop.value

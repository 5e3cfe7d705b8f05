"""Inline work: running a handler in the task that read its message, without a task switch.

A reader that hands messages to synchronous callbacks (``WebSocket.serve_messages``) takes
what each callback **returns**: ``None``, or a :data:`Work` (an async function without
arguments) that the layer below the callback wants run for that message (the Socket.IO
layer: a socket's handler queue, when no task runs it). The Engine.IO layer passes it up
as its own return value. After the batch, the reader runs each work's first step itself
(:func:`run_first_step`); most handlers finish without blocking (they emit, join rooms,
return an ack), so a message then costs no task spawn and no task switch at all, as in
Node, where a handler is a callback run by the read.

A handler that does block (awaits an ack, a sleep, a lock) cannot be moved to another task
once it has started: its first step may already have registered the current task somewhere
(a parking lot, a cancel scope). So the reader keeps it: it starts a new task that goes on
reading (the reactor's drivers do the same, :mod:`pyserver.trio.websocket.reactor`), and
finishes the blocked work with :func:`resume` (which is ``await`` on a coroutine whose first
step has already run).

Work returned by a callback must be run: whoever calls a callback that may return work runs
it (the WebSocket reader, inline) or starts a task for it (Engine.IO's long-polling path).
"""

from __future__ import annotations

import contextvars
import types
from collections.abc import Callable, Coroutine, Generator
from typing import Any

__all__ = ["FINISHED", "Work", "resume", "run_first_step", "run_in"]

Work = Callable[[], Coroutine[Any, Any, Any]]
"""A coroutine function without arguments (a bound method, typically)."""


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


async def run_in(context: contextvars.Context, work: Work) -> None:
    """``await work()`` with every step of it run in ``context`` (the connection's), in
    whatever task awaits this: how work started in a task of its own (long-polling, a
    server-side disconnect, an admission) shares its connection's context with the work the
    reader runs inline. ``context`` must not be the current task's own (whose steps are
    already run in it)."""
    coro = context.run(work)
    try:
        yielded = context.run(coro.send, None)
    except StopIteration:
        return
    except BaseException:
        coro.close()
        raise
    await resume(coro, yielded, context)

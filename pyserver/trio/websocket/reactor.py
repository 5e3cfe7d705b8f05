"""The reactor: one task reads every ready WebSocket of a Trio run (Linux).

Why: a task per connection parked in ``trio.lowlevel.wait_readable`` costs, per message,
a wake-up (Trio's epoll reports the descriptor, the task is rescheduled and stepped) and an
``epoll_ctl`` to re-arm its one-shot registration. With many connections ready in the same
scheduler batch (50 echo clients with one message in flight each: about 46 per batch here)
that is most of the per-message cost left in the Trio shell. Node pays neither: libuv's
registrations are made once and one callback per ready socket runs in the loop's own stack.

How: the reactor owns a private ``select.epoll``. A connection whose messages go to
synchronous callbacks (``WebSocket.serve_messages``) and that is open registers its socket
once, level-triggered, when its reader would otherwise wait; its reader task then ends. The
reactor's *driver* task waits for the epoll's own descriptor through Trio (one wait per
batch), takes every ready socket with one ``epoll.poll(0)``, and calls the connection's
``_react(fd)``: one read, delivery, the batch's inline work
(:mod:`pyserver.trio.websocket.inline`), one write. Level-triggered, so a socket left unread (the
driver stopped early) is simply reported again. Anything off that path (the end of the stream, a
read error, a close under way, the callbacks gone, a Pong waiting for room in a full outbox) makes
the connection leave: it unregisters and a reader task of its own takes over the reading, with all
the general machinery (that task waits for the room before it reads on).

Blocked work: inline work that blocks cannot leave the task that started it (see
:mod:`pyserver.trio.websocket.inline`), so the driver keeps it: it starts a new driver, which first
runs the rest of that connection's batch, then finishes the work and ends. The connection holds the
kept work's cancel scope (the driver's outermost one, entered before any of it ran) and
cancels it when it is itself cancelled, so blocked work never outlives its connection.

Where the drivers live: drivers run user code (handlers, middleware, ack callbacks), so they
are ordinary tasks of the **serving call's nursery**, never system tasks: a reactor is made
by :func:`serving` (``App.serve_listeners`` enters it around its accept loop), published to
the connections served inside through a ``ContextVar`` (:func:`current`: a connection task
inherits the context of the serving call), and its drivers are started in that nursery, in
the serving call's context. So cancellation, ``KeyboardInterrupt`` and exceptions behave as
in any Trio program: cancelling the serving call cancels the drivers and the work they keep;
a ``KeyboardInterrupt`` raised in a handler unwinds the serving call. When the reactor stops
(its serving call ends, or its driver is cancelled) it hands every connection it still reads
back to a reader task of the connection's own (``Reactive._release``), so a connection that
outlives it (served in a nursery of its own) goes on being read. Connections served outside
any :func:`serving` (``App.serve_stream`` called directly) keep a reader task each.

Contexts: each connection has its own (``_context``: that of the task that called
``serve_messages``, so handlers see what the server's caller set), the one its reader tasks
run its handlers in too. The reactor runs that connection's reads, and so its handlers, in
it, and blocked work goes on in it (``inline.resume(..., context)``). So a ``ContextVar`` a
handler sets, also after it blocked, is seen by later handlers of the same connection and
never by another connection's, with or without the reactor. The drivers' own contexts hold
nothing of any connection.

Steps: each wake-up of the driver is a *step* (one ``poll(0)`` and the connections it
reports). The shell is told when a step starts and when it ends (``on_step``,
``after_step``): what the step's work sends to connections other than the one being read
(a room broadcast) is queued during the step and written at its end, one write per
connection for everything the step sent it.

Only on Linux with Trio's epoll backend; elsewhere every connection keeps its reader task.
``PYSERVER_REACTOR=0`` in the environment turns it off (:data:`ENABLED`).
"""

from __future__ import annotations

import contextvars
import logging
import os
import select
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, Protocol

import trio

from pyserver.trio.websocket import inline

__all__ = ["ENABLED", "Blocked", "Reactive", "Reactor", "current", "serving"]

logger = logging.getLogger("pyserver.ws")

ENABLED: bool = hasattr(select, "epoll") and os.environ.get("PYSERVER_REACTOR", "1") != "0"
"""Whether connections use the reactor (tests flip it to run both ways)."""


class Blocked:
    """Inline work that blocked during a connection's batch: the coroutine, what its first
    step yielded to the scheduler, and the rest of the batch's work (not started)."""

    __slots__ = ("coro", "rest", "yielded")

    def __init__(self, coro: Coroutine[Any, Any, Any], yielded: Any, rest: list[inline.Work]):
        self.coro = coro
        self.yielded = yielded
        self.rest = rest


class Reactive(Protocol):
    """What the reactor needs of a connection (``WebSocket`` implements it)."""

    #: The connection's own context: its reads, and so its handlers, run in it.
    _context: contextvars.Context

    def _react(self, fd: int) -> Blocked | None:
        """The socket is readable: read once and deal with it. Returns the work that
        blocked, if any (the rest of the batch is then run with ``_go_on``)."""

    def _go_on(self, works: list[inline.Work]) -> Blocked | None:
        """Run the rest of a batch whose earlier work blocked, and end the batch."""

    def _keep(self, scope: trio.CancelScope) -> None:
        """Blocked work of this connection is about to be finished in the task whose
        outermost scope is ``scope``."""

    def _kept(self, scope: trio.CancelScope, error: Exception | None) -> None:
        """That work has ended (``error``: what it raised, to be logged with its
        traceback)."""

    def _lost(self) -> None:
        """An unexpected error (logged) came out of ``_react`` or ``_go_on``: the
        connection leaves the reactor (and is closed with 1011)."""

    def _release(self) -> None:
        """The reactor stops: the connection leaves it, and reads in a task of its own."""


class Reactor:
    """The reactor of one serving call (:func:`serving`)."""

    __slots__ = (
        "_after_step",
        "_context",
        "_epoll",
        "_nursery",
        "_on_step",
        "_readers",
        "_running",
        "closed",
    )

    def __init__(
        self,
        nursery: trio.Nursery,
        on_step: Callable[[], None],
        after_step: Callable[[], None],
    ) -> None:
        self._nursery = nursery
        self._context = contextvars.copy_context()  # the serving call's: drivers start in it
        self._on_step = on_step
        self._after_step = after_step
        self._epoll = select.epoll()
        self._readers: dict[int, Reactive] = {}
        self._running = False  # a driver task is driving (one at a time drives)
        self.closed = False  # stopped: nothing registers any more

    def add(self, fd: int, reader: Reactive) -> bool:
        """Read ``fd`` for ``reader`` from now on: True, or False when it cannot be (the
        caller keeps reading it itself)."""
        if self.closed:
            return False
        try:
            self._epoll.register(fd, select.EPOLLIN)
        except OSError:  # a stale registration (an fd closed behind our back, reused)
            return False
        self._readers[fd] = reader
        if not self._running:
            try:
                self._spawn(None)
            except RuntimeError:  # (the serving call's nursery has closed)
                self.stop()
                return False
        return True

    def remove(self, fd: int, reader: Reactive) -> None:
        """Stop reading ``fd`` for ``reader`` (a no-op if it is not registered)."""
        if self._readers.get(fd) is reader:
            del self._readers[fd]
            try:
                self._epoll.unregister(fd)
            except (OSError, ValueError):  # closed already: the kernel dropped it
                pass

    def __len__(self) -> int:
        return len(self._readers)

    def stop(self) -> None:
        """Stop: nothing registers any more, and every connection still registered reads
        in a task of its own from now on (``_release``). Idempotent."""
        if self.closed:
            return
        self.closed = True
        self._running = False
        for reader in list(self._readers.values()):
            self._call(reader._release)  # (which unregisters it)
        self._readers.clear()
        self._epoll.close()

    def _spawn(self, carry: tuple[Reactive, list[inline.Work]] | None) -> None:
        """Start a driver in the serving call's nursery, in its context (``start_soon``
        copies the current context: inside ``Context.run``, the serving call's)."""
        self._running = True
        self._context.run(self._start_driver, carry)

    def _start_driver(self, carry: tuple[Reactive, list[inline.Work]] | None) -> None:
        self._nursery.start_soon(self._drive, carry, name="pyserver WebSocket reactor")

    async def _drive(self, carry: tuple[Reactive, list[inline.Work]] | None) -> None:
        with trio.CancelScope() as scope:  # (entered before any work runs here: see _keep)
            try:
                kept = await self._loop(carry)
            except BaseException:
                # cancelled while driving (the serving call is ending), or a
                # BaseException (KeyboardInterrupt) from a handler: it goes on up
                self.stop()
                raise
            if kept is not None:
                reader, blocked = kept
                self._spawn((reader, blocked.rest))  # the driving goes on in a new task
                self._call(reader._keep, scope)
                error: Exception | None = None
                try:
                    await inline.resume(blocked.coro, blocked.yielded, reader._context)
                except Exception as exc:
                    error = exc  # (logged by _kept, with its traceback, after the except)
                finally:
                    self._call(reader._kept, scope, error)

    async def _loop(
        self, carry: tuple[Reactive, list[inline.Work]] | None
    ) -> tuple[Reactive, Blocked] | None:
        """Drive until no connection is registered (None), or until inline work blocks:
        then that work and its connection, for this task to finish."""
        epoll = self._epoll
        readers = self._readers
        on_step = self._on_step
        after_step = self._after_step
        fd_of_epoll = -1 if self.closed else epoll.fileno()
        if carry is not None:
            carrier, works = carry
            blocked = self._guarded(carrier, -1, works)
            if blocked is not None:
                return carrier, blocked
        while readers and not self.closed:
            await trio.lowlevel.wait_readable(fd_of_epoll)
            on_step()
            try:
                for fd, _events in epoll.poll(0):
                    reader = readers.get(fd)  # (it may have left meanwhile)
                    if reader is not None:
                        blocked = self._guarded(reader, fd, None)
                        if blocked is not None:
                            return reader, blocked
            finally:
                self._call(after_step)
        self._running = False  # (no await since the check: nothing is registered)
        return None

    def _guarded(
        self, reader: Reactive, fd: int, works: list[inline.Work] | None
    ) -> Blocked | None:
        try:
            if works is None:
                return reader._context.run(reader._react, fd)
            return reader._context.run(reader._go_on, works)
        except Exception:  # a system task must never raise
            logger.exception("WebSocket reactor failed")
            self._call(reader._lost)
            return None

    @staticmethod
    def _call(method: Callable[..., None], *args: Any) -> None:
        try:
            method(*args)
        except Exception:  # a system task must never raise
            logger.exception("WebSocket reactor failed (%s)", method.__name__)


_CURRENT: contextvars.ContextVar[Reactor | None] = contextvars.ContextVar(
    "pyserver_ws_reactor", default=None
)


def current() -> Reactor | None:
    """The reactor of the serving call this code runs under, if any (and not stopped)."""
    reactor = _CURRENT.get()
    return None if reactor is None or reactor.closed else reactor


@asynccontextmanager
async def serving(
    on_step: Callable[[], None], after_step: Callable[[], None]
) -> AsyncIterator[Reactor | None]:
    """A reactor for the connections served inside the block (they see it through
    :func:`current`), its drivers in a nursery of the calling task; None where there is none
    (no epoll, that is not Linux, where Trio uses epoll too; or turned off). ``on_step`` and
    ``after_step`` are called at the start and at the end of every step of the reactor (see
    the module docstring); at a step's start, the scheduler has gone round since the
    previous one. ``after_step`` must not raise (it is logged if it does). When the block
    ends, the reactor stops (its connections go back to reader tasks) and its drivers are
    cancelled."""
    if not ENABLED:
        yield None
        return
    async with trio.open_nursery() as nursery:
        reactor = Reactor(nursery, on_step, after_step)
        token = _CURRENT.set(reactor)
        try:
            yield reactor
        finally:
            _CURRENT.reset(token)
            reactor.stop()
            nursery.cancel_scope.cancel()

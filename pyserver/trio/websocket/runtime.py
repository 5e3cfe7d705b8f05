"""The per-run services the WebSocket shell shares between connections.

Three small system tasks, each started by the first connection that needs it and ended
when nothing is left for it to do, for every connection of a Trio run (so no connection's
nursery can hold them):

* :class:`Ticker`: counts the scheduler batches in which some connection wrote directly
  (try-write-first, :mod:`.writer`), and writes, at the start of the next batch, what was
  sent to such connections meanwhile (one write each);
* :class:`IdleSweeper`: ends the writer tasks of idle connections;
* :class:`Keepalive`: the keepalive deadlines of every open connection, one
  :class:`~pyserver.trio.timers.DeadlineTimer` (one heap, one task) rather than a sleeping
  task per connection.

They run **no user code**: they move bytes and wake tasks, through the callbacks their
maker gives (the writer's ``write_queued`` and ``_retire_writer``, the core's
``handle_timeout``). That is why they may be system tasks, unlike the reactor's drivers,
which run handlers and live in the serving call's nursery (:mod:`.reactor`). A callback that
raises is logged; a system task never raises.

This module knows nothing of the connection class: the services are generic over the item
they serve, which keeps the import graph of the package a tree.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

import trio

from pyserver.trio.timers import DeadlineTimer

__all__ = ["WRITER_IDLE_SECONDS", "IdleSweeper", "Keepalive", "Ticker", "per_run"]

logger = logging.getLogger("pyserver.ws")

WRITER_IDLE_SECONDS = 0.5
"""A writer task that wrote nothing for this long (up to twice as long) ends."""

_T = TypeVar("_T")
_W = TypeVar("_W", bound=Hashable)
_reschedule = trio.lowlevel.reschedule
_SUCCEEDED = trio.lowlevel.Abort.SUCCEEDED


def per_run(var: trio.lowlevel.RunVar[_T], make: Callable[[], _T]) -> _T:
    """The value of ``var`` in this Trio run, made on first use."""
    try:
        return var.get()
    except LookupError:
        value = make()
        var.set(value)
        return value


class Ticker(Generic[_W]):
    """Counts scheduler batches in which some connection wrote directly, for one Trio run:
    a system task woken (once per batch, whatever the number of writes) by the first
    direct write, which bumps ``generation`` when it runs, that is in a later batch.

    ``defer(ws)`` lists a connection that wrote directly in this batch and has more queued:
    when the loop has gone round, ``flush(listed)`` writes every listed connection (one
    write each, one Rust call for all). ``step`` and ``first`` belong to the reactor's steps
    (:mod:`.fanout`)."""

    __slots__ = ("deferred", "first", "flush", "generation", "parked", "running", "step")

    def __init__(self, flush: Callable[[list[_W]], None]) -> None:
        self.flush = flush
        self.generation = 0
        self.parked: trio.lowlevel.Task | None = None
        self.running = False
        self.deferred: list[_W] = []
        # during a step of the reactor: the connections whose queued frames its end writes,
        # and the step's first broadcast while nothing else was sent (sockets, frames)
        self.step: list[_W] | None = None
        self.first: tuple[list[_W], list[bytes]] | None = None

    def touch(self) -> int:
        """The current generation; it changes once the scheduler has gone round."""
        task = self.parked
        if task is not None:
            self.parked = None
            _reschedule(task)
        elif not self.running:
            self.running = True
            trio.lowlevel.spawn_system_task(self._run, name="pyserver WebSocket ticker")
        return self.generation

    def _abort(self, _: Any) -> trio.lowlevel.Abort:
        self.parked = None
        return _SUCCEEDED

    def defer(self, ws: _W) -> None:
        """Flush ``ws`` when the loop has gone round (it wrote directly in this batch)."""
        self.deferred.append(ws)
        self.touch()

    async def _run(self) -> None:
        try:
            while True:
                self.generation += 1
                deferred = self.deferred
                if deferred:
                    self.deferred = []
                    try:
                        self.flush(deferred)
                    except Exception:  # a system task must never raise
                        logger.exception("WebSocket flush failed")
                    # those writes count as busy until the loop has gone round once more
                    await trio.lowlevel.cancel_shielded_checkpoint()
                    continue
                self.parked = trio.lowlevel.current_task()
                await trio.lowlevel.wait_task_rescheduled(self._abort)
        finally:
            self.running = False


class IdleSweeper(Generic[_W]):
    """Ends the writer tasks of idle connections, for one Trio run.

    Every ``WRITER_IDLE_SECONDS`` it calls ``retire(ws)`` for each connection with a writer
    task (the writer ends if it was not woken since the previous look and is parked with an
    empty outbox). It runs as a system task only while some connection has a writer, and
    costs a dict entry per connection."""

    __slots__ = ("retire", "running", "writers")

    def __init__(self, retire: Callable[[_W], object]) -> None:
        self.retire = retire
        self.writers: dict[_W, None] = {}
        self.running = False

    def add(self, ws: _W) -> None:
        self.writers[ws] = None
        if not self.running:
            self.running = True
            trio.lowlevel.spawn_system_task(self._run, name="pyserver WebSocket idle sweeper")

    def discard(self, ws: _W) -> None:
        self.writers.pop(ws, None)

    async def _run(self) -> None:
        try:
            while self.writers:
                await trio.sleep(WRITER_IDLE_SECONDS)
                for ws in list(self.writers):
                    try:
                        self.retire(ws)
                    except Exception:  # a system task must never raise
                        logger.exception("WebSocket idle sweeper failed")
                        self.writers.pop(ws, None)
        finally:
            self.running = False


class Keepalive(Generic[_W]):
    """The keepalive deadlines of every open connection of one Trio run: a
    :class:`~pyserver.trio.timers.DeadlineTimer` (one heap, one task), whose task is a
    system task started by the first connection with a deadline. It calls ``on_due(ws,
    now)`` for each due connection (which feeds ``now`` to its core and sends what the core
    queued). A connection that is no longer open unschedules itself; an entry left behind
    is skipped."""

    __slots__ = ("running", "timer")

    def __init__(self, on_due: Callable[[_W, float], None]) -> None:
        self.timer: DeadlineTimer[_W] = DeadlineTimer(on_due)
        self.running = False

    def schedule(self, ws: _W, deadline: float) -> None:
        self.timer.schedule(ws, deadline)
        if not self.running:
            self.running = True
            trio.lowlevel.spawn_system_task(self._run, name="pyserver WebSocket keepalive timer")

    def unschedule(self, ws: _W) -> None:
        self.timer.unschedule(ws)

    async def _run(self) -> None:
        try:
            await self.timer.run()
        finally:
            self.running = False

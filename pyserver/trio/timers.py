"""One timer task for many sans-IO cores.

A sans-IO core (an Engine.IO session, a Socket.IO connection) says when it next needs the
clock through ``next_deadline()``; the shell owns the clock. ``DeadlineTimer`` keeps one heap
of those deadlines for a whole server and runs one task, so a thousand idle connections cost
one sleeping task, not a thousand.

``schedule(item, deadline)`` is synchronous and cheap: it keeps the earliest deadline per
item (a later one is ignored until the earlier one fired; the core is asked again then), and
wakes the task only when the new deadline is earlier than the one it sleeps until.
``unschedule(item)`` forgets an item (a connection that closed): its heap entry is then stale,
as a superseded one is; stale entries are skipped when they come up, and the heap is rebuilt
without them once they are more than half of it (asyncio's rule for cancelled timer handles),
so an item that is gone is not kept for long, and the heap stays within twice the live items.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Hashable
from typing import Generic, NoReturn, TypeVar

import trio

__all__ = ["DeadlineTimer"]

T = TypeVar("T", bound=Hashable)

_COMPACT_AT = 64
"""Below this many stale entries the heap is never rebuilt (they go as they come up)."""


class DeadlineTimer(Generic[T]):
    """Calls ``on_due(item, now)`` once ``now`` reaches the deadline scheduled for ``item``.

    ``on_due`` runs in the timer task; it must not block, and it usually schedules the item
    again with its core's next deadline.
    """

    def __init__(self, on_due: Callable[[T, float], None]) -> None:
        self._on_due = on_due
        self._heap: list[tuple[float, int, T]] = []
        self._seq = itertools.count()  # ties never compare the items themselves
        self._due: dict[T, float] = {}
        self._wakeup = trio.Event()
        self._sleeping_until = math.inf
        self._stale = 0  # heap entries that will not fire (superseded or unscheduled)

    def schedule(self, item: T, deadline: float | None) -> None:
        if deadline is None:
            return
        current = self._due.get(item)
        if current is not None:
            if current <= deadline:
                return
            self._stale += 1  # the later entry no longer fires
        self._due[item] = deadline
        heapq.heappush(self._heap, (deadline, next(self._seq), item))
        if deadline < self._sleeping_until:
            self._wakeup.set()

    def unschedule(self, item: T) -> None:
        """Forget ``item``'s deadline, if it has one: ``on_due`` is not called for it."""
        if self._due.pop(item, None) is None:
            return
        self._stale += 1
        heap = self._heap
        if self._stale > _COMPACT_AT and self._stale * 2 > len(heap):
            due = self._due
            live: dict[T, tuple[float, int, T]] = {}  # (one entry per item, however many)
            for entry in heap:
                if due.get(entry[2]) == entry[0]:
                    live.setdefault(entry[2], entry)
            heap[:] = live.values()
            heapq.heapify(heap)
            self._stale = 0

    async def run(self) -> NoReturn:
        heap = self._heap
        due = self._due
        while True:
            now = trio.current_time()
            while heap and heap[0][0] <= now:
                deadline, _, item = heapq.heappop(heap)
                if due.get(item) != deadline:
                    self._stale -= self._stale > 0
                    continue  # superseded by an earlier entry that already fired
                del due[item]
                self._on_due(item, now)
            self._sleeping_until = heap[0][0] if heap else math.inf
            self._wakeup = trio.Event()
            with trio.move_on_at(self._sleeping_until):
                await self._wakeup.wait()

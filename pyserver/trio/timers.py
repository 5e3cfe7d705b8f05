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
so the heap stays within twice the live items. A stale entry holds no reference to its item:
``unschedule`` (and a superseding ``schedule``) clears the item out of the entry at once, so a
connection that closed is not kept alive by the timer until its old deadline comes up (a
Socket.IO client's 45 s connect deadline kept every closed connection's objects that long).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Hashable
from typing import Any, Generic, NoReturn, TypeVar

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
        # entries are [deadline, seq, item]; a stale entry's item is None (no reference kept)
        self._heap: list[list[Any]] = []
        self._seq = itertools.count()  # ties never compare the items themselves
        self._due: dict[T, list[Any]] = {}  # item -> its live heap entry
        self._wakeup = trio.Event()
        self._sleeping_until = math.inf
        self._stale = 0  # heap entries that will not fire (superseded or unscheduled)

    def __len__(self) -> int:
        """The items scheduled (live entries)."""
        return len(self._due)

    def schedule(self, item: T, deadline: float | None) -> None:
        if deadline is None:
            return
        current = self._due.get(item)
        if current is not None:
            if current[0] <= deadline:
                return
            current[2] = None  # the later entry no longer fires, nor keeps the item
            self._stale += 1
        entry: list[Any] = [deadline, next(self._seq), item]
        self._due[item] = entry
        heapq.heappush(self._heap, entry)
        if deadline < self._sleeping_until:
            self._wakeup.set()

    def unschedule(self, item: T) -> None:
        """Forget ``item``'s deadline, if it has one: ``on_due`` is not called for it, and
        the timer keeps no reference to it."""
        entry = self._due.pop(item, None)
        if entry is None:
            return
        entry[2] = None
        self._stale += 1
        heap = self._heap
        if self._stale > _COMPACT_AT and self._stale * 2 > len(heap):
            heap[:] = [e for e in heap if e[2] is not None]
            heapq.heapify(heap)
            self._stale = 0

    async def run(self) -> NoReturn:
        heap = self._heap
        due = self._due
        while True:
            now = trio.current_time()
            while heap and heap[0][0] <= now:
                entry = heapq.heappop(heap)
                item: T | None = entry[2]
                if item is None:
                    self._stale -= self._stale > 0
                    continue  # superseded or unscheduled
                del due[item]
                self._on_due(item, now)
            entry = []  # this frame keeps no item while it sleeps
            item = None
            self._sleeping_until = heap[0][0] if heap else math.inf
            self._wakeup = trio.Event()
            with trio.move_on_at(self._sleeping_until):
                await self._wakeup.wait()

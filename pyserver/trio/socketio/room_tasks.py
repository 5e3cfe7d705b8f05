"""Room nurseries: tasks that live as long as a room.

``nsp.room(name).start_soon(fn, *args)`` runs ``fn(*args)`` in the room's nursery. The first
such call opens the nursery, as a task of the Server's nursery (server -> room nursery ->
room tasks). The room's cancel scope is cancelled, ending every task in it, when:

* the room empties (its last member leaves or disconnects) and stays empty for the grace
  period (``nsp.room(name, grace=5.0)``, else the Server's ``room_grace_period``, default 0:
  at once). A member joining during the grace period keeps the room alive. A task started
  for a room that has no member yet starts that grace period at once;
* ``nsp.room(name).close()`` is called;
* the server stops.

Tasks see their room: :func:`current_room` returns its name (a context variable set in each
task). An exception in a room task is logged once (``pyserver.socketio``) and ends only that
task; it never reaches the server. A task that returns simply ends; the nursery stays open
for later tasks until the room closes.

A room nursery reaches its namespace through :class:`RoomOwner` (what it needs of it; the
:class:`~pyserver.trio.socketio.namespace.Namespace` satisfies it), so this module does not
import the namespace that imports it.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import trio

from pyserver.logtext import shown

__all__ = ["RoomHandle", "RoomNursery", "RoomOwner", "current_room"]

logger = logging.getLogger("pyserver.socketio")

_current_room: contextvars.ContextVar[str] = contextvars.ContextVar("pyserver_room")


def current_room() -> str:
    """The name of the room whose nursery runs the calling task (LookupError outside one)."""
    return _current_room.get()


class RoomOwner(Protocol):
    """What room nurseries need of their namespace."""

    @property
    def name(self) -> str: ...

    @property
    def room_nurseries(self) -> dict[str, RoomNursery]:
        """The open room nurseries, by room."""
        ...

    def adapter_has_room(self, name: str) -> bool:
        """Whether the room has a member (on this node)."""
        ...

    def room_nursery(self, name: str, grace: float | None) -> RoomNursery:
        """The room's nursery, opened (in the server's nursery) if it has none."""
        ...

    def room_nursery_done(self, nursery: RoomNursery) -> None:
        """``nursery`` ended: forget it (unless another one took its place)."""
        ...


class RoomNursery:
    """The nursery of one room of one namespace (created on the first ``start_soon``)."""

    __slots__ = ("_grace_scope", "_nursery", "_pending", "grace", "name", "nsp", "scope", "tasks")

    def __init__(self, nsp: RoomOwner, name: str, grace: float) -> None:
        self.nsp = nsp
        self.name = name
        self.grace = grace
        self.scope = trio.CancelScope()
        self.tasks = 0
        self._nursery: trio.Nursery | None = None
        self._pending: list[tuple[Callable[..., Awaitable[Any]], tuple[Any, ...]]] = []
        self._grace_scope: trio.CancelScope | None = None

    def start_soon(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        if self.scope.cancel_called:
            raise RuntimeError(f"room {self.name!r} is closed")
        if self._nursery is None:
            self._pending.append((fn, args))
        else:
            self._nursery.start_soon(self._task, fn, args, name=f"room {self.name}: {fn!r}")

    async def run(self) -> None:
        """The room's life, as a task of the Server's nursery."""
        try:
            with self.scope:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    pending, self._pending = self._pending, []
                    for fn, args in pending:
                        nursery.start_soon(self._task, fn, args, name=f"room {self.name}: {fn!r}")
                    if not self.nsp.adapter_has_room(self.name):
                        self.emptied()
                    await trio.sleep_forever()
        finally:
            self._nursery = None
            self.nsp.room_nursery_done(self)

    async def _task(self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> None:
        _current_room.set(self.name)
        self.tasks += 1
        try:
            await fn(*args)
        except Exception:
            logger.exception(
                "room task %r failed (room %s in %s)", fn, shown(self.name), shown(self.nsp.name)
            )
        finally:
            self.tasks -= 1

    def emptied(self) -> None:
        """The room has no member any more: close it now or after the grace period."""
        if self.grace <= 0:
            self.close()
        elif self._grace_scope is None and self._nursery is not None:
            self._grace_scope = trio.CancelScope()
            self._nursery.start_soon(self._grace_timer, self._grace_scope)

    def populated(self) -> None:
        """Someone joined again: a pending grace period is called off."""
        if self._grace_scope is not None:
            self._grace_scope.cancel()
            self._grace_scope = None

    async def _grace_timer(self, scope: trio.CancelScope) -> None:
        with scope:
            await trio.sleep(self.grace)
            logger.debug(
                "room %s in %s: empty for %ss, closing",
                shown(self.name),
                shown(self.nsp.name),
                self.grace,
            )
            self.close()

    def close(self) -> None:
        self.scope.cancel()
        self._pending.clear()


class RoomHandle:
    """What ``nsp.room(name)`` returns: start tasks in the room's nursery, or close it."""

    __slots__ = ("grace", "name", "nsp")

    def __init__(self, nsp: RoomOwner, name: str, grace: float | None) -> None:
        self.nsp = nsp
        self.name = name
        self.grace = grace

    def start_soon(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run ``fn(*args)`` in the room's nursery (opening it if needed). Never blocks."""
        self.nsp.room_nursery(self.name, self.grace).start_soon(fn, *args)

    def close(self) -> None:
        """Cancel every task of the room now (the room itself, its members, stay)."""
        nursery = self.nsp.room_nurseries.get(self.name)
        if nursery is not None:
            nursery.close()

    @property
    def task_count(self) -> int:
        nursery = self.nsp.room_nurseries.get(self.name)
        return 0 if nursery is None else nursery.tasks

    @property
    def active(self) -> bool:
        """True while the room has a nursery that is not closed."""
        nursery = self.nsp.room_nurseries.get(self.name)
        return nursery is not None and not nursery.scope.cancel_called

    def __repr__(self) -> str:
        return f"<RoomHandle {self.name!r} in {self.nsp.name}>"

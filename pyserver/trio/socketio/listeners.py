"""A socket's catch-all listeners: ``on_any`` and its family for the events the client
sends, ``on_any_outgoing`` and its family for the packets sent to it (Node's ``onAny`` and
``onAnyOutgoing``). :class:`Listeners` is a base class of
:class:`~pyserver.trio.socketio.socket.Socket`, between it and its handler queue
(:mod:`pyserver.trio.socketio.handlers`, which calls the incoming ones); the broadcast path
calls :meth:`Listeners.notify_outgoing` of each recipient only while its adapter counts a
socket with outgoing listeners (``outgoing_watchers``).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

from pyserver.logtext import shown
from pyserver.trio.socketio.handlers import HandlerNamespace, HandlerQueue

__all__ = ["NO_FUNCTIONS", "Listeners"]

logger = logging.getLogger("pyserver.socketio")

F = TypeVar("F", bound=Callable[..., Any])

NO_FUNCTIONS: list[Callable[..., Any]] = []  # never written to
"""The empty list of listeners (or middlewares) every socket starts with, shared."""


class _Watched(Protocol):
    outgoing_watchers: int


class ListenerNamespace(HandlerNamespace, Protocol):
    """What the listeners need of the socket's namespace besides the handler queue's."""

    @property
    def adapter(self) -> _Watched: ...


class Listeners(HandlerQueue):
    """The catch-all listeners of a socket (see the module docstring). The incoming ones
    are the handler queue's ``_any_handlers``."""

    __slots__ = ("_any_outgoing",)

    nsp: ListenerNamespace
    _any_outgoing: list[Callable[..., Any]]

    # Listeners lists are replaced, never changed in place: a listener that removes itself
    # (or another) while they run does not disturb the loop that runs them.

    def on_any(self, handler: F) -> F:
        """``handler(event, *args)`` (sync or async) for every event the client sends, before
        its own handler, after the listeners already registered. Usable as a decorator."""
        self._any_handlers = [*self._any_handlers, handler]
        return handler

    def prepend_any(self, handler: F) -> F:
        """As :meth:`on_any`, but before the listeners already registered."""
        self._any_handlers = [handler, *self._any_handlers]
        return handler

    def off_any(self, handler: Callable[..., Any] | None = None) -> None:
        """Remove ``handler`` from the catch-all listeners (every one of them when None)."""
        self._any_handlers = _without(self._any_handlers, handler)

    def listeners_any(self) -> list[Callable[..., Any]]:
        """The catch-all listeners of incoming events, in calling order (a copy)."""
        return list(self._any_handlers)

    def on_any_outgoing(self, listener: F) -> F:
        """``listener(event, *args)`` for every event sent to this client: by
        :meth:`emit`, :meth:`emit_with_ack` and the broadcasts that reach it (those sent on
        any node), as Node's ``socket.onAnyOutgoing``. Called after the packet is queued,
        synchronously (``emit`` never blocks): a coroutine function is refused with
        ``TypeError``; an exception is logged. Usable as a decorator."""
        self._set_outgoing([*self._any_outgoing, _sync_listener(listener)])
        return listener

    def prepend_any_outgoing(self, listener: F) -> F:
        """As :meth:`on_any_outgoing`, but before the listeners already registered."""
        self._set_outgoing([_sync_listener(listener), *self._any_outgoing])
        return listener

    def off_any_outgoing(self, listener: Callable[..., Any] | None = None) -> None:
        """Remove ``listener`` from the outgoing listeners (every one of them when None)."""
        self._set_outgoing(_without(self._any_outgoing, listener))

    def listeners_any_outgoing(self) -> list[Callable[..., Any]]:
        """The outgoing listeners, in calling order (a copy)."""
        return list(self._any_outgoing)

    def _set_outgoing(self, listeners: list[Callable[..., Any]]) -> None:
        # a connected socket with listeners is counted on its adapter, so a broadcast asks
        # for its recipients' listeners only when one of them may have some
        if self.connected and bool(listeners) != bool(self._any_outgoing):
            self.nsp.adapter.outgoing_watchers += 1 if listeners else -1
        self._any_outgoing = listeners if listeners else NO_FUNCTIONS

    def notify_outgoing(self, event: str, args: Iterable[Any]) -> None:
        """Call the outgoing listeners with ``(event, *args)`` (a packet sent to this
        client)."""
        for listener in self._any_outgoing:
            try:
                listener(event, *args)
            except Exception:
                logger.exception(
                    "on_any_outgoing listener failed (socket %s in %s)",
                    self.id,
                    shown(self.nsp.name),
                )


def _without(
    listeners: list[Callable[..., Any]], listener: Callable[..., Any] | None
) -> list[Callable[..., Any]]:
    """``listeners`` without ``listener`` (its first occurrence; all of them when None)."""
    if listener is None or listener not in listeners:
        return NO_FUNCTIONS if listener is None else listeners
    kept = list(listeners)
    kept.remove(listener)
    return kept if kept else NO_FUNCTIONS


def _sync_listener(listener: F) -> F:
    if inspect.iscoroutinefunction(listener):
        raise TypeError(
            "an outgoing listener is called as the packet is sent (emit never blocks): "
            "give a plain function (start async work from it in a nursery of yours)"
        )
    return listener

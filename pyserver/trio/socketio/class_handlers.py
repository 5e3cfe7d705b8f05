"""Class-based namespaces, in python-socketio's style: a class whose ``on_<event>`` methods
are a namespace's handlers.

::

    class Chat(NamespaceHandlers):
        async def on_connect(self, socket):            # "connection"
            socket.emit("welcome", self.namespace)

        async def on_message(self, socket, text):      # the event "message"; returns the ack
            self.emit("message", text)                 # the whole namespace

        async def on_disconnect(self, socket, reason):
            ...

    sio.register_namespace(Chat("/chat"))

Each method named ``on_<event>`` is registered as the namespace's handler of ``<event>``
(``on_connect``/``on_connection`` for "connection", ``on_disconnecting``, ``on_disconnect``);
its arguments are those of :meth:`~pyserver.trio.socketio.namespace.Namespace.on` handlers
(the socket first, never python-socketio's ``sid``/``environ``: the socket has
``socket.id`` and ``socket.handshake``). ``on_any_event(self, socket, event, *args)`` is the
namespace's catch-all (``"*"``: events with no handler of their own). Events whose names are
not identifiers ("chat message") are registered with ``self.on(...)`` once registered, or on
the namespace directly. The class is named ``NamespaceHandlers`` because ``pyserver``'s
``Namespace`` is the namespace object itself (its ``emit``, ``to``, rooms), which the
instance reaches as ``self.nsp`` once :meth:`Server.register_namespace` bound it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyserver.trio.socketio.namespace import DynamicNamespace, Namespace

__all__ = ["NamespaceHandlers"]

_PREFIX = "on_"
_RENAMED = {"connect": "connection", "any_event": "*"}


class NamespaceHandlers:
    """The handlers of one namespace as methods of a class (module docstring)."""

    def __init__(self, namespace: str = "/") -> None:
        #: The namespace's name (``"/chat"``), as python-socketio's ``Namespace.namespace``.
        self.namespace = namespace if namespace.startswith("/") else "/" + namespace
        self._nsp: Namespace | DynamicNamespace | None = None

    @property
    def nsp(self) -> Namespace | DynamicNamespace:
        """The namespace these handlers serve (once registered)."""
        if self._nsp is None:
            raise RuntimeError(
                f"{type(self).__name__} is not registered: sio.register_namespace(handlers)"
            )
        return self._nsp

    def handlers(self) -> dict[str, Callable[..., Any]]:
        """The event names and bound methods this class handles (``on_<event>`` methods)."""
        found: dict[str, Callable[..., Any]] = {}
        for attr, value in inspect.getmembers(type(self)):
            if attr.startswith(_PREFIX) and len(attr) > len(_PREFIX) and callable(value):
                event = attr[len(_PREFIX) :]
                found[_RENAMED.get(event, event)] = getattr(self, attr)
        return found

    def bind(self, nsp: Namespace | DynamicNamespace) -> None:
        """Register the handlers on ``nsp`` (what ``Server.register_namespace`` does)."""
        if self._nsp is not None:
            raise RuntimeError(f"{type(self).__name__} is already registered")
        self._nsp = nsp
        for event, handler in self.handlers().items():
            nsp.on(event, handler)

    # -- the namespace's API, for the methods --------------------------------------------

    def on(self, event: str, handler: Callable[..., Any] | None = None) -> Any:
        """Register one more handler on the namespace (see ``Namespace.on``)."""
        return self.nsp.on(event, handler)

    def emit(self, event: str, *args: Any) -> int:
        """Send ``event(*args)`` to every socket of the namespace."""
        return self.nsp.emit(event, *args)

    def send(self, *args: Any) -> int:
        return self.nsp.emit("message", *args)

    def to(self, room: str | Iterable[str]) -> Any:
        """Broadcast to ``room`` (see ``Namespace.to``)."""
        return self.nsp.to(room)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.namespace}>"

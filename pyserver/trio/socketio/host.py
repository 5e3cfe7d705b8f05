"""The :class:`Host` protocol: what a namespace, its sockets and its clients need of the server.

The :class:`~pyserver.trio.socketio.server.Server` makes namespaces and clients and hands
itself to them; they call back only through the members written here (the server's
settings, its nursery through ``spawn``, the Socket.IO timer through ``schedule``, the
namespace lookup), all public names. So ``namespace.py`` and ``client.py`` need no import of
``server.py``, which imports them (no import cycle), and nothing reaches into the server's
private attributes. A protocol is only a type: a call through it costs what a call on the
Server costs.

``Host`` is generic in the namespace and client classes, so that what the server hands back
(``namespaces``, ``find_namespace``) keeps its concrete type for the code that uses it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

from pyserver.socketio.parsers import Parser
from pyserver.socketio.ratelimit import RateLimit
from pyserver.socketio.recovery import StateRecovery
from pyserver.socketio.session import SessionConfig
from pyserver.trio.socketio.adapter import AdapterFactory

__all__ = ["Host"]

N = TypeVar("N")
"""The namespace class."""
C = TypeVar("C", contravariant=True)
"""The client class."""


class Host(Protocol[N, C]):
    """What a namespace, its sockets and its clients need of the server."""

    # -- settings (see the Server's docstring) ----------------------------------------------

    @property
    def session_config(self) -> SessionConfig: ...

    def namespace_created(self, nsp: N) -> None:
        """A namespace was made (``of(name)``, a dynamic child): tell the ``new_namespace``
        listeners."""
        ...

    @property
    def parser(self) -> Parser | None:
        """The Socket.IO parser, None for the built-in JSON one."""
        ...

    @property
    def rate_limit(self) -> RateLimit | None: ...

    @property
    def flood_windows(self) -> int: ...

    @property
    def max_pending_events(self) -> int: ...

    @property
    def max_namespaces_per_client(self) -> int | None: ...

    @property
    def room_grace_period(self) -> float: ...

    @property
    def state_recovery(self) -> StateRecovery | None: ...

    @property
    def cleanup_empty_child_namespaces(self) -> bool: ...

    @property
    def adapter_factory(self) -> AdapterFactory: ...

    # -- running -----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True while ``run`` (or ``serve``) is running: ``spawn`` then starts tasks."""
        ...

    @property
    def stopping(self) -> bool:
        """True while ``run`` is shutting down (disconnect handlers are then shielded)."""
        ...

    def spawn(self, fn: Callable[..., Awaitable[Any]], name: str, *args: Any) -> bool:
        """Run ``fn(*args)`` in the server's nursery; False (and a warning, once) when the
        server is not running."""
        ...

    def schedule(self, client: C) -> None:
        """(Re)arm the Socket.IO timer for ``client``'s next deadline."""
        ...

    # -- namespaces --------------------------------------------------------------------------

    @property
    def namespaces(self) -> dict[str, N]:
        """Every namespace by name (dynamic children come and go in it)."""
        ...

    @property
    def dynamic_namespaces(self) -> Sequence[object]:
        """The dynamic parents (``of(pattern)``); empty: an unknown name is refused at once."""
        ...

    async def find_namespace(self, name: str, auth: dict[str, Any] | None) -> N | None:
        """The namespace ``name``, or a new child of the first dynamic parent that accepts
        it; None when none does."""
        ...

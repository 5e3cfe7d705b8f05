"""What the :class:`~pyserver.trio.socketio.server.Server` has beside its core (a base class
of it, kept apart so ``server.py`` stays readable): class-based namespaces
(``register_namespace``), the ``new_namespace`` listeners, and ``close()``.

``close()`` works with ``serve`` and ``run``: ``run`` waits for ``_close_requested`` instead
of sleeping forever, then does what a cancelled ``run`` does (every socket leaves with
"server shutting down", disconnect handlers run shielded, room nurseries close) and cancels
its own nursery (the timers, the adapter's tasks, handler tasks); ``serve`` runs it through
``_run_then_stop``, which then cancels ``serve``'s nursery (the listeners). ``_stopped`` is set
by the outermost of the two as it returns, and ``close()`` waits for it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from pyserver.logtext import shown

if TYPE_CHECKING:
    from pyserver.trio.socketio.class_handlers import NamespaceHandlers
    from pyserver.trio.socketio.namespace import DynamicNamespace, Namespace

__all__ = ["ServerExtras"]

logger = logging.getLogger("pyserver.socketio")

F = TypeVar("F", bound=Callable[..., Any])


class ServerExtras:
    """Class-based namespaces, ``new_namespace`` and ``close()`` (module docstring)."""

    # the Server's (set by Server.__init__ / Server.run)
    _new_namespace_listeners: list[Callable[[Namespace], Any]]
    _nursery: trio.Nursery | None
    _close_requested: trio.Event
    _stopped: trio.Event | None
    of: Callable[..., Namespace | DynamicNamespace]
    run: Callable[..., Awaitable[None]]

    # -- class-based namespaces ------------------------------------------------------------

    def register_namespace(self, handlers: NamespaceHandlers) -> Namespace | DynamicNamespace:
        """Register a class-based namespace (python-socketio's ``register_namespace``): its
        ``on_<event>`` methods become the handlers of ``handlers.namespace`` (see
        :mod:`pyserver.trio.socketio.class_handlers`). Returns the namespace."""
        nsp = self.of(handlers.namespace)
        handlers.bind(nsp)
        return nsp

    # -- new namespaces --------------------------------------------------------------------

    def on_new_namespace(self, listener: F) -> F:
        """``listener(namespace)`` (a plain function) for every namespace made from now on:
        ``of(name)`` the first time, a dynamic parent's child (Node's ``new_namespace``;
        ``sio.on("new_namespace", listener)`` says the same). Usable as a decorator."""
        self._new_namespace_listeners.append(listener)
        return listener

    def namespace_created(self, nsp: Namespace) -> None:
        """A namespace was made: tell the ``new_namespace`` listeners."""
        for listener in list(self._new_namespace_listeners):
            try:
                listener(nsp)
            except Exception:
                logger.exception("new_namespace listener failed (namespace %s)", shown(nsp.name))

    # -- closing ---------------------------------------------------------------------------

    async def _run_then_stop(
        self,
        scope: trio.CancelScope,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        await self.run(task_status=task_status)
        scope.cancel()  # closed (close()): the listeners stop too

    async def close(self) -> None:
        """Stop the server, as Node's ``io.close()``: every socket leaves with "server
        shutting down" (its disconnect handlers run, shielded, up to ``SHUTDOWN_GRACE``
        seconds each), every connection is closed, the listeners of ``serve`` stop (no new
        connection), room tasks and the server's tasks end; returns once ``serve`` (or
        ``run``) has returned. A no-op when the server is not running. Call it from outside
        the server's tasks (not from a handler: the server waits for its handlers). With
        ``run`` alone, the App you serve yourself keeps its listeners: stop it yourself."""
        if self._nursery is None:
            return
        stopped = self._stopped
        self._close_requested.set()
        if stopped is not None:
            await stopped.wait()

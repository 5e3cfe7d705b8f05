"""The :class:`~pyserver.trio.socketio.server.Server`'s shortcuts to its main namespace ("/"),
as Node's ``io.emit``/``io.to``/``io.on`` are to ``io.of("/")``: a base class of ``Server``,
kept apart so ``server.py`` holds only what the server itself does. Each method says what it
is in :class:`~pyserver.trio.socketio.namespace.Namespace`'s terms.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pyserver.trio.socketio.extras import ServerExtras

if TYPE_CHECKING:
    from pyserver.trio.socketio.adapter_base import RemoteSocket
    from pyserver.trio.socketio.admin import AdminUI
    from pyserver.trio.socketio.admin_store import SessionStore
    from pyserver.trio.socketio.broadcast import BroadcastOperator
    from pyserver.trio.socketio.namespace import Namespace
    from pyserver.trio.socketio.room_tasks import RoomHandle
    from pyserver.trio.socketio.socket import Socket

__all__ = ["MainNamespaceApi"]

F = TypeVar("F", bound=Callable[..., Any])


class MainNamespaceApi(ServerExtras):
    """The main namespace's API on the server (module docstring)."""

    #: The Admin UI's instrumentation (:meth:`instrument`), or None.
    admin: AdminUI | None = None
    running: bool  # (the Server's)

    def spawn(self, fn: Callable[..., Awaitable[Any]], name: str, *args: Any) -> bool:
        """Run ``fn(*args)`` in the server's nursery (``Server``)."""
        raise NotImplementedError

    @property
    def main(self) -> Namespace:
        """The main namespace, ``"/"`` (``Server``)."""
        raise NotImplementedError

    def on(self, event: str, handler: F | None = None) -> Any:
        """Register a handler on the main namespace (see :meth:`Namespace.on`);
        ``"new_namespace"`` is the server's event (:meth:`on_new_namespace`), as in Node."""
        if event == "new_namespace":
            return self.on_new_namespace if handler is None else self.on_new_namespace(handler)
        return self.main.on(event, handler)

    def event(self, handler: F) -> F:
        return self.main.event(handler)

    def use(self, middleware: F) -> F:
        """Connection middleware on the main namespace (see :meth:`Namespace.use`)."""
        return self.main.use(middleware)

    def emit(self, event: str, *args: Any) -> int:
        """Send ``event(*args)`` to every socket of the main namespace. Never blocks."""
        return self.main.emit(event, *args)

    def send(self, *args: Any) -> int:
        return self.main.send(*args)

    def to(self, room: str | Iterable[str]) -> BroadcastOperator:
        return self.main.to(room)

    in_ = to

    def except_(self, room: str | Iterable[str]) -> BroadcastOperator:
        return self.main.except_(room)

    @property
    def volatile(self) -> BroadcastOperator:
        return self.main.volatile

    @property
    def local(self) -> BroadcastOperator:
        return self.main.local

    def compress(self, compress: bool) -> BroadcastOperator:
        return self.main.compress(compress)

    def timeout(self, seconds: float) -> BroadcastOperator:
        return self.main.timeout(seconds)

    async def emit_with_ack(self, event: str, *args: Any) -> list[Any]:
        return await self.main.emit_with_ack(event, *args)

    async def fetch_sockets(self) -> list[Socket | RemoteSocket]:
        """The main namespace's sockets, on every node (see :meth:`Namespace.fetch_sockets`)."""
        return await self.main.fetch_sockets()

    def sockets_join(self, room: str | Iterable[str]) -> None:
        self.main.sockets_join(room)

    def sockets_leave(self, room: str | Iterable[str]) -> None:
        self.main.sockets_leave(room)

    def disconnect_sockets(self, close: bool = False) -> None:
        self.main.disconnect_sockets(close)

    def server_side_emit(self, event: str, *args: Any) -> None:
        """Send ``event(*args)`` to the other nodes' :meth:`on_server_event` handlers."""
        self.main.server_side_emit(event, *args)

    async def server_side_emit_with_ack(
        self,
        event: str,
        *args: Any,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> list[Any]:
        """Ask the other nodes; their replies (see :meth:`Namespace.server_side_emit_with_ack`)."""
        return await self.main.server_side_emit_with_ack(event, *args, timeout=timeout)

    def on_server_event(self, event: str, handler: F | None = None) -> Any:
        """A handler for another node's ``server_side_emit`` (see
        :meth:`Namespace.on_server_event`)."""
        return self.main.on_server_event(event, handler)

    def instrument(
        self,
        auth: Any = None,
        mode: Literal["development", "production"] = "development",
        read_only: bool = False,
        namespace: str = "/admin",
        server_id: str | None = None,
        server_stats_interval: float = 2,
        *,
        serve_ui: bool | str = False,
        store: SessionStore | None = None,
    ) -> AdminUI:
        """Speak to the Socket.IO Admin UI (``@socket.io/admin-ui`` 0.5) on ``namespace``
        (python-socketio's signature; see :mod:`pyserver.trio.socketio.admin`). ``auth`` is
        required: False, ``{"username", "password"}``, Node's ``{"type": "basic",
        "username", "password": <bcrypt hash>}``, a list of them, or ``fn(auth) -> bool``.
        ``mode="production"`` sends only the server stats. ``serve_ui=True`` serves the UI
        at ``/admin/`` (or the path given). ``store`` keeps the login session ids: None is
        this process's memory; ``RedisStore(url)`` shares them with every node (Node's
        ``RedisStore`` keys), so the UI reconnecting to another node stays logged in."""
        if auth is None:
            raise ValueError("instrument() needs auth= (False: anyone may log in)")
        from pyserver.trio.socketio.admin import AdminUI  # (only an instrumented server)

        if self.admin is not None:
            raise RuntimeError("this Server is already instrumented")
        admin = self.admin = AdminUI(
            self,  # type: ignore[arg-type]  # (the Server)
            auth=auth,
            mode=mode,
            read_only=read_only,
            namespace=namespace,
            server_id=server_id,
            server_stats_interval=server_stats_interval,
            serve_ui=serve_ui,
            store=store,
        )
        if self.running:
            self.spawn(admin.run, "admin stats")
        return admin

    def room(self, name: str, grace: float | None = None) -> RoomHandle:
        """A room of the main namespace, for room-scoped tasks (see
        :mod:`pyserver.trio.socketio.room_tasks`)."""
        return self.main.room(name, grace)

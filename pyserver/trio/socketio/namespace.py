"""Namespaces: each has its handlers, connection middleware, rate limit, adapter (rooms)
and room nurseries. ``sio.of("/chat")`` makes or returns one; ``sio.of(re.compile(...))`` or
``sio.of(predicate)`` makes a :class:`DynamicNamespace`, a parent whose children are created
on the first connection to a matching name and share its handlers and middleware.

Children come and go (the Node server's ``ParentNamespace``): a child is made once a parent's
matcher accepted a name, for the connection being admitted; it stays only once a socket was
accepted into it (a connection its middleware refused, or that closed while being admitted,
leaves no child behind). With ``Server(cleanup_empty_child_namespaces=True)`` a child whose
last socket left is removed: from its parent and ``server.namespaces``, its adapter closed (a
cluster adapter unsubscribes its channels), its recovery store and room tasks dropped; the
next connection to that name makes a new one. Off by default, as in Node: a child then stays
for the life of the server, so a matcher that accepts names from anywhere should go with the
option on (``max_namespaces_per_client`` only bounds what one connection holds at once).

A namespace reaches its server through the :class:`~pyserver.trio.socketio.host.Host`
protocol, never through ``server.py`` (which imports this module).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar, cast

import trio

from pyserver.logtext import shown
from pyserver.metrics import NamespaceCounters
from pyserver.socketio.packets import encode_event
from pyserver.socketio.ratelimit import RateLimit
from pyserver.socketio.recovery import RecoveryStore
from pyserver.trio.socketio.adapter import Adapter, BroadcastOptions, RemoteSocket
from pyserver.trio.socketio.adapter_base import EncodeEvent
from pyserver.trio.socketio.broadcast import BroadcastOperator
from pyserver.trio.socketio.room_tasks import RoomHandle, RoomNursery

if TYPE_CHECKING:
    from pyserver.trio.socketio.client import Client
    from pyserver.trio.socketio.host import Host
    from pyserver.trio.socketio.socket import Socket

__all__ = ["DynamicNamespace", "Namespace"]

logger = logging.getLogger("pyserver.socketio")

F = TypeVar("F", bound=Callable[..., Any])
Middleware = Callable[["Socket"], Awaitable[None] | None]
NamespaceMatcher = re.Pattern[str] | Callable[[str, dict[str, Any] | None], bool | Awaitable[bool]]


class _Handlers:
    """``on`` and ``use``, shared by namespaces and dynamic parents."""

    handlers: dict[str, Callable[..., Any]]
    middlewares: list[Middleware]
    server_handlers: dict[str, Callable[..., Any]]

    def on(self, event: str, handler: F | None = None) -> Any:
        """Register ``handler`` for ``event`` (decorator or direct call).

        ``"connection"`` (alias ``"connect"``): ``handler(socket)`` once the socket joined;
        ``"disconnecting"`` then ``"disconnect"``: ``handler(socket, reason)`` (``socket.rooms``
        is then the rooms it was in when it left); ``"*"``: the catch-all,
        ``handler(socket, event, *args)`` for the events that have no handler of their own
        (python-socketio's ``@sio.on("*")``); any other name: ``handler(socket, *args)``.
        An event handler's return value is the ack."""

        def register(fn: F) -> F:
            self.handlers[event] = fn
            return fn

        return register if handler is None else register(handler)

    def event(self, handler: F) -> F:
        """Register ``handler`` for the event named after the function."""
        self.handlers[handler.__name__] = handler
        return handler

    def on_server_event(self, event: str, handler: F | None = None) -> Any:
        """Register ``handler(*args)`` (sync or async) for ``event`` sent by another node's
        ``server_side_emit``; its return value is the reply ``server_side_emit_with_ack``
        collects (an exception is logged and answered ``{"error": "internal server
        error"}``). Usable as a decorator."""

        def register(fn: F) -> F:
            self.server_handlers[event] = fn
            return fn

        return register if handler is None else register(handler)

    def use(self, middleware: F) -> F:
        """Connection middleware ``middleware(socket)`` (sync or async), run in order before
        the socket joins; raise :class:`~pyserver.errors.ConnectionRefused` to refuse."""
        self.middlewares.append(middleware)
        return middleware


class Namespace(_Handlers):
    """One namespace. Its ``emit``/``to``/... broadcast to its sockets."""

    def __init__(
        self,
        server: Host[Namespace, Client],
        name: str,
        *,
        rate_limit: RateLimit | None = None,
        parent: DynamicNamespace | None = None,
    ) -> None:
        self.server = server
        self.name = name
        self.parent = parent
        #: Connections being admitted (in its middleware) right now.
        self._admitting = 0
        #: A dynamic child stays once a socket was accepted (a static namespace always).
        self._kept = parent is None
        if parent is not None:
            self.handlers = parent.handlers
            self.middlewares = parent.middlewares
        else:
            self.handlers = {}
            self.middlewares = []
        self.rate_limit = rate_limit if rate_limit is not None else server.rate_limit
        #: Handlers of events other nodes send with ``server_side_emit`` (cluster adapters).
        self.server_handlers: dict[str, Callable[..., Any]] = (
            parent.server_handlers if parent is not None else {}
        )
        #: ``encode_event(namespace, event, args, ack_id=None, *, max_bytes=None)`` of the
        #: server's parser: what this namespace's emits and broadcasts are encoded with.
        self.encode_event: EncodeEvent = encode_event
        parser = server.parser
        if parser is not None:
            self.encode_event = parser.encode_event
        #: Its counters (:class:`~pyserver.metrics.NamespaceCounters`); a dynamic parent's
        #: children share the parent's, so the metrics' ``namespace`` label stays bounded.
        self.counters = parent.counters if parent is not None else NamespaceCounters(name)
        self.adapter: Adapter = server.adapter_factory(self)
        self.adapter.counters = self.counters
        if parser is not None and parser.name != "json":
            # what arrives encoded by the built-in parser (the Redis adapters re-encode
            # other nodes' broadcasts with it) is re-encoded once per broadcast
            self.adapter.transcode = parser.transcode
        self.adapter.on_room_created = self._room_created
        self.adapter.on_room_deleted = self._room_deleted
        # the adapter holds this namespace's Sockets (it types them as LocalSocket)
        self.sockets = cast("dict[Any, Socket]", self.adapter.sockets)
        self.room_nurseries: dict[str, RoomNursery] = {}
        #: What connection state recovery keeps for this namespace (None when it is off).
        self.recovery: RecoveryStore | None = None
        if server.state_recovery is not None:
            if not self.adapter.supports_recovery:
                raise ValueError(
                    f"connection_state_recovery needs the in-memory adapter or "
                    f"RedisStreamsAdapter; "
                    f"{type(self.adapter).__name__} cannot recover sessions"
                )
            self.recovery = self.adapter.recovery_store(server.state_recovery)
        server.namespace_created(self)

    # -- broadcasting ----------------------------------------------------------------------

    def _op(self) -> BroadcastOperator:
        return BroadcastOperator(self)

    def emit(self, event: str, *args: Any) -> int:
        """Send ``event(*args)`` to every socket of the namespace (encoded once)."""
        return self._op().emit(event, *args)

    def send(self, *args: Any) -> int:
        return self._op().emit("message", *args)

    def to(self, room: str | Iterable[str]) -> BroadcastOperator:
        return self._op().to(room)

    in_ = to

    def except_(self, room: str | Iterable[str]) -> BroadcastOperator:
        return self._op().except_(room)

    @property
    def volatile(self) -> BroadcastOperator:
        return self._op().volatile

    @property
    def local(self) -> BroadcastOperator:
        return self._op().local

    def compress(self, compress: bool) -> BroadcastOperator:
        return self._op().compress(compress)

    def timeout(self, seconds: float) -> BroadcastOperator:
        return self._op().timeout(seconds)

    async def emit_with_ack(self, event: str, *args: Any) -> list[Any]:
        return await self._op().emit_with_ack(event, *args)

    async def fetch_sockets(self) -> list[Socket | RemoteSocket]:
        return cast("list[Socket | RemoteSocket]", await self._op().fetch_sockets())

    def sockets_join(self, room: str | Iterable[str]) -> None:
        self._op().sockets_join(room)

    def sockets_leave(self, room: str | Iterable[str]) -> None:
        self._op().sockets_leave(room)

    def disconnect_sockets(self, close: bool = False) -> None:
        self._op().disconnect_sockets(close)

    def server_side_emit(self, event: str, *args: Any) -> None:
        """Tell the other nodes of a cluster (nothing to do on a single node): their
        :meth:`on_server_event` handlers for ``event`` get ``*args``. Never blocks."""
        self.adapter.server_side_emit(event, args)

    async def server_side_emit_with_ack(
        self,
        event: str,
        *args: Any,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> list[Any]:
        """Ask the other nodes' :meth:`on_server_event` handlers; return their replies (one
        per node). Raises :class:`~pyserver.trio.socketio.adapter.RequestTimeout` (with the replies
        that came) when a node did not answer within ``timeout`` (default: the adapter's
        ``requests_timeout``). ``[]`` on a single node."""
        return await self.adapter.server_side_emit_with_ack(event, args, timeout)

    def encode_kept(
        self,
        event: str,
        args: Sequence[Any],
        rooms: frozenset[str],
        except_rooms: frozenset[str],
    ) -> tuple[list[str | bytes], list[Any]]:
        """With recovery on: encode ``event(*args)`` with its offset added, and keep it (after
        encoding, so a packet that cannot be encoded is not kept). Returns the parts and the
        arguments sent."""
        store = self.recovery
        assert store is not None
        sent = store.stamp(args)
        parts = self.encode_event(
            self.name, event, sent, max_bytes=self.server.session_config.max_emit_bytes
        )
        store.keep(parts, rooms, except_rooms, trio.current_time())
        return parts, sent

    # -- rooms -----------------------------------------------------------------------------

    def room(self, name: str, grace: float | None = None) -> RoomHandle:
        """The room ``name``: ``.start_soon(fn, *args)`` runs a task that lives as long as
        the room (see :mod:`pyserver.trio.socketio.room_tasks`); ``grace`` overrides the server's
        ``room_grace_period`` for a nursery this call creates."""
        return RoomHandle(self, name, grace)

    def rooms(self) -> dict[str, int]:
        """Every room and its member count (sockets' own rooms included)."""
        return self.adapter.room_sizes()

    def adapter_has_room(self, name: str) -> bool:
        return self.adapter.has_room(name)

    def room_nursery(self, name: str, grace: float | None) -> RoomNursery:
        """The room's nursery, opened (in the server's nursery) if it has none."""
        nursery = self.room_nurseries.get(name)
        if nursery is None or nursery.scope.cancel_called:
            nursery = RoomNursery(
                self, name, self.server.room_grace_period if grace is None else grace
            )
            if not self.server.spawn(nursery.run, f"room {name} in {self.name}"):
                raise RuntimeError("room tasks need a running Server (sio.serve or sio.run)")
            self.room_nurseries[name] = nursery
        return nursery

    def room_nursery_done(self, nursery: RoomNursery) -> None:
        """``nursery`` ended: forget it (unless another one took its place)."""
        if self.room_nurseries.get(nursery.name) is nursery:
            del self.room_nurseries[nursery.name]

    def _room_created(self, room: str) -> None:
        nursery = self.room_nurseries.get(room)
        if nursery is not None:
            nursery.populated()

    def _room_deleted(self, room: str) -> None:
        nursery = self.room_nurseries.get(room)
        if nursery is not None:
            nursery.emptied()

    # -- sockets ---------------------------------------------------------------------------

    def _add_socket(self, socket: Socket, rooms: Iterable[str]) -> None:
        self.sockets[socket.id] = socket
        self.adapter.add_all(socket.id, (socket.id, *rooms))
        self._kept = True

    def _remove_socket(self, socket: Socket) -> None:
        self.sockets.pop(socket.id, None)
        self.adapter.del_all(socket.id)
        if self.parent is not None and not self.sockets and not self._admitting:
            self.parent._emptied(self)

    def _admission_done(self) -> None:
        """A connection counted in ``_admitting`` was accepted or refused."""
        self._admitting -= 1
        if self.parent is not None and not self.sockets and not self._admitting:
            self.parent._emptied(self)

    def __repr__(self) -> str:
        return f"<Namespace {self.name} ({len(self.sockets)} sockets)>"


class DynamicNamespace(_Handlers):
    """A parent namespace: children are created for matching names on first connection.

    ``matcher`` is a compiled regular expression (``fullmatch`` on the name) or a function
    ``(name, auth) -> bool`` (sync or async). ``emit``/``to``/... reach every child."""

    def __init__(
        self,
        server: Host[Namespace, Client],
        matcher: NamespaceMatcher,
        *,
        rate_limit: RateLimit | None = None,
    ) -> None:
        self.server = server
        self.matcher = matcher
        self.rate_limit = rate_limit
        self.handlers = {}
        self.middlewares = []
        self.server_handlers: dict[str, Callable[..., Any]] = {}
        self.children: dict[str, Namespace] = {}
        #: The counters of all its children (labelled with the pattern, or ``_dynamic``).
        self.counters = NamespaceCounters(
            matcher.pattern if isinstance(matcher, re.Pattern) else "_dynamic"
        )

    async def matches(self, name: str, auth: dict[str, Any] | None) -> bool:
        matcher = self.matcher
        if isinstance(matcher, re.Pattern):
            return matcher.fullmatch(name) is not None
        result = matcher(name, auth)
        if not isinstance(result, bool):
            result = await result
        return bool(result)

    def child(self, name: str) -> Namespace:
        """A new child, in ``server.namespaces`` too (the caller admits a connection to it at
        once: see the module docstring)."""
        child = Namespace(self.server, name, rate_limit=self.rate_limit, parent=self)
        self.children[name] = child
        self.server.namespaces[name] = child
        return child

    def _emptied(self, child: Namespace) -> None:
        """``child`` has no socket and no connection being admitted: it goes if it never had
        a socket, or when the server cleans up empty children."""
        if not child._kept or self.server.cleanup_empty_child_namespaces:
            self._remove(child)

    def _remove(self, child: Namespace) -> None:
        name = child.name
        if self.children.get(name) is child:
            del self.children[name]
        if self.server.namespaces.get(name) is child:
            del self.server.namespaces[name]
        close = getattr(child.adapter, "close", None)
        if close is not None:
            close()  # a cluster adapter unsubscribes
        child.recovery = None
        for room in list(child.room_nurseries.values()):
            room.close()
        logger.debug("namespace %s removed (no socket left)", shown(name))

    def _op(self) -> _FanOut:
        return _FanOut(self, BroadcastOptions())

    def emit(self, event: str, *args: Any) -> int:
        """Send ``event(*args)`` to every socket of every child."""
        return self._op().emit(event, *args)

    def send(self, *args: Any) -> int:
        return self._op().emit("message", *args)

    def to(self, room: str | Iterable[str]) -> _FanOut:
        return self._op().to(room)

    in_ = to

    def except_(self, room: str | Iterable[str]) -> _FanOut:
        return self._op().except_(room)

    @property
    def volatile(self) -> _FanOut:
        return self._op().volatile

    @property
    def local(self) -> _FanOut:
        return self._op().local

    def compress(self, compress: bool) -> _FanOut:
        return self._op().compress(compress)

    async def fetch_sockets(self) -> list[Socket | RemoteSocket]:
        """The sockets of every child (on every node, with a cluster adapter)."""
        return await self._op().fetch_sockets()

    def sockets_join(self, room: str | Iterable[str]) -> None:
        self._op().sockets_join(room)

    def sockets_leave(self, room: str | Iterable[str]) -> None:
        self._op().sockets_leave(room)

    def disconnect_sockets(self, close: bool = False) -> None:
        self._op().disconnect_sockets(close)

    def __repr__(self) -> str:
        return f"<DynamicNamespace {self.matcher!r} ({len(self.children)} children)>"


class _FanOut:
    """A broadcast from a dynamic parent: applied to each child namespace (the operators of
    :class:`~pyserver.trio.socketio.broadcast.BroadcastOperator`, on every child)."""

    __slots__ = ("opts", "parent")

    def __init__(self, parent: DynamicNamespace, opts: BroadcastOptions) -> None:
        self.parent = parent
        self.opts = opts

    def _with(self, **changes: Any) -> _FanOut:
        return _FanOut(self.parent, replace(self.opts, **changes))

    def _each(self) -> list[BroadcastOperator]:
        return [
            BroadcastOperator(child, self.opts) for child in list(self.parent.children.values())
        ]

    def to(self, room: str | Iterable[str]) -> _FanOut:
        return self._with(rooms=self.opts.rooms | _names(room))

    in_ = to

    def except_(self, room: str | Iterable[str]) -> _FanOut:
        return self._with(except_rooms=self.opts.except_rooms | _names(room))

    @property
    def volatile(self) -> _FanOut:
        return self._with(volatile=True)

    @property
    def local(self) -> _FanOut:
        return self._with(local=True)

    def compress(self, compress: bool) -> _FanOut:
        return self._with(compress=compress)

    def emit(self, event: str, *args: Any) -> int:
        return sum(op.emit(event, *args) for op in self._each())

    def send(self, *args: Any) -> int:
        return self.emit("message", *args)

    async def fetch_sockets(self) -> list[Socket | RemoteSocket]:
        found: list[Socket | RemoteSocket] = []
        for op in self._each():
            found += cast("list[Socket | RemoteSocket]", await op.fetch_sockets())
        return found

    def sockets_join(self, room: str | Iterable[str]) -> None:
        for op in self._each():
            op.sockets_join(room)

    def sockets_leave(self, room: str | Iterable[str]) -> None:
        for op in self._each():
            op.sockets_leave(room)

    def disconnect_sockets(self, close: bool = False) -> None:
        for op in self._each():
            op.disconnect_sockets(close)


def _names(rooms: str | Iterable[str]) -> frozenset[str]:
    return frozenset((rooms,)) if isinstance(rooms, str) else frozenset(rooms)

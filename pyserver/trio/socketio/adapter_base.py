"""The adapter interface: what a namespace calls for rooms and broadcasts, and the types it
speaks in. Import these names from :mod:`pyserver.trio.socketio.adapter`, which re-exports
them beside the in-memory adapter.

:class:`Adapter` is the interface (the Node server's adapter, in Python): a namespace calls it
for every room change and every broadcast, so a multi-node adapter (Redis) can implement the
same methods, publish what it must to the other nodes and call the in-memory logic for the
local sockets. :class:`BroadcastOptions` says who gets a broadcast;
:class:`RemoteSocket` is a socket of another node as ``fetch_sockets`` returns it;
:class:`RequestTimeout` is raised when a cluster request is not answered in time.

Everything here is synchronous except what has to ask the other nodes of a cluster and wait
for their answers: :meth:`Adapter.fetch_sockets`, :meth:`Adapter.broadcast_with_ack` and
:meth:`Adapter.server_side_emit_with_ack`.

The server gets an *adapter factory* (:data:`AdapterFactory`): a callable
``factory(namespace) -> Adapter`` that each
:class:`~pyserver.trio.socketio.namespace.Namespace` calls once. A factory that also has
``async def run(server, *, task_status)`` (a :class:`~pyserver.trio.redis.RedisAdapter`) is
started by ``Server.run`` in the server's nursery, for the tasks it needs (subscriber,
publisher, heartbeats).

The adapter reports room life cycle to the namespace through
``on_room_created(room)`` / ``on_room_deleted(room)`` (the namespace's room nurseries use
them).

What an adapter needs of the objects around it is written here as protocols, so this module
imports none of them (no import cycle): :class:`AdapterNamespace` (its namespace, and through
it :class:`AdapterServer`, the server), :class:`LocalSocket` (a socket of this node, as
``fetch_sockets`` returns it) and :class:`Recipient` (a socket's client: its Engine.IO
session). The Server, Namespace, Socket and Client classes satisfy them.
"""

from __future__ import annotations

import abc
import logging
import secrets
from collections.abc import Callable, Iterable, Sequence, Set
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pyserver.metrics import NamespaceCounters
from pyserver.socketio.packets import Sid, encode_event
from pyserver.socketio.recovery import RecoveredSession, RecoveryStore, StateRecovery
from pyserver.socketio.rooms import Room
from pyserver.socketio.session import DEFAULT_MAX_EMIT_BYTES, SessionConfig
from pyserver.trio.engineio import EngineSession

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from pyserver.trio.socketio.handshake import Handshake

__all__ = [
    "ROOM_EVENTS",
    "AckSink",
    "Adapter",
    "AdapterFactory",
    "AdapterNamespace",
    "AdapterServer",
    "BroadcastOptions",
    "EncodeEvent",
    "LocalSocket",
    "Recipient",
    "RemoteSocket",
    "RequestTimeout",
]


ROOM_EVENTS = frozenset({"create-room", "delete-room", "join-room", "leave-room"})
"""The room events an adapter emits (:meth:`Adapter.on`)."""

logger = logging.getLogger("pyserver.socketio")


class EncodeEvent(Protocol):
    """A parser's ``encode_event`` (:func:`pyserver.socketio.packets.encode_event` for the
    built-in JSON parser): the messages of ``event(*args)``, encoded once for a broadcast."""

    def __call__(
        self,
        namespace: str,
        event: str,
        args: Sequence[Any] = (),
        ack_id: int | None = None,
        *,
        max_bytes: int | None = None,
    ) -> list[str | bytes]: ...


@dataclass(frozen=True, slots=True)
class BroadcastOptions:
    """Who gets a broadcast and how (the flags of the broadcast operator)."""

    rooms: frozenset[Room] = frozenset()
    """Union of these rooms; empty means every socket of the namespace."""
    except_rooms: frozenset[Room] = frozenset()
    """Minus the sockets in these rooms (a socket's own room is its sid)."""
    volatile: bool = False
    """Drop, for a recipient whose outbox is not empty, instead of queueing."""
    local: bool = False
    """Only this node's sockets (meaningful for multi-node adapters)."""
    compress: bool = True
    timeout: float | None = None
    """For broadcasts with acks: how long to wait for every reply."""
    flags: dict[str, Any] = field(default_factory=dict, compare=False)


AckCallback = Callable[[Any], None]


class AdapterServer(Protocol):
    """What an adapter needs of the server (:class:`~pyserver.trio.socketio.server.Server`)."""

    @property
    def session_config(self) -> SessionConfig:
        """Its ``max_emit_bytes`` bounds what an adapter encodes for a socket."""
        ...

    def spawn(self, fn: Callable[..., Awaitable[Any]], name: str, *args: Any) -> bool:
        """Run ``fn(*args)`` in the server's nursery; False when it is not running."""
        ...


class AdapterNamespace(Protocol):
    """What an adapter needs of its namespace
    (:class:`~pyserver.trio.socketio.namespace.Namespace`)."""

    @property
    def name(self) -> str: ...

    @property
    def server(self) -> AdapterServer: ...

    @property
    def server_handlers(self) -> dict[str, Callable[..., Any]]:
        """Handlers of the events other nodes send (``on_server_event``)."""
        ...


class Recipient(Protocol):
    """A socket's client (:class:`~pyserver.trio.socketio.client.Client`), as a broadcast
    reaches it: its Engine.IO session."""

    @property
    def session(self) -> EngineSession: ...

    def ready_for_volatile(self) -> bool:
        """Open with nothing queued: a volatile packet is sent now, else dropped."""
        ...


class LocalSocket(Protocol):
    """A socket of this node (:class:`~pyserver.trio.socketio.socket.Socket`) as an adapter
    sees it, and as ``fetch_sockets`` returns it: the members it shares with
    :class:`RemoteSocket`, its client, and an emit whose ack goes to a callback."""

    @property
    def id(self) -> Sid: ...

    @property
    def client(self) -> Recipient: ...

    @property
    def handshake(self) -> Handshake: ...

    @property
    def rooms(self) -> Set[str]: ...

    @property
    def data(self) -> dict[str, Any]: ...

    def emit(self, event: str, *args: Any) -> None: ...

    def emit_with_callback(
        self,
        event: str,
        args: Iterable[Any],
        callback: Callable[[Any, BaseException | None], None],
        timeout: float | None,
    ) -> None: ...

    def join(self, rooms: str | Iterable[str]) -> None: ...

    def leave(self, room: str) -> None: ...

    def disconnect(self, close: bool = False) -> None: ...

    def notify_outgoing(self, event: str, args: Iterable[Any]) -> None:
        """Tell the socket's outgoing listeners (``on_any_outgoing``) of a packet sent."""
        ...


class RequestTimeout(TimeoutError):
    """Not every node (or client) answered in time; ``responses`` holds what did arrive."""

    def __init__(self, message: str, responses: list[Any]) -> None:
        super().__init__(message)
        self.responses = responses

    @property
    def replies(self) -> list[Any]:
        """The same list as ``responses``."""
        return self.responses


class AckSink(Protocol):
    """Where an adapter reports a broadcast with acks (see :meth:`Adapter.broadcast_with_ack`)."""

    def expect_nodes(self, nodes: int) -> None:
        """How many ``client_count`` reports to wait for (1, this node, unless told)."""

    def client_count(self, count: int) -> None:
        """One node asked ``count`` of its sockets (each node reports once)."""

    def reply(self, value: Any) -> None:
        """One socket answered."""

    def gone(self) -> None:
        """One local socket left (or timed out) before answering."""


class RemoteSocket:
    """A socket of another node, as ``fetch_sockets`` returns it: ``id``, ``handshake`` (a
    dict, as the owning node sent it), ``rooms``, ``data``; ``emit``, ``join``, ``leave`` and
    ``disconnect`` go through the adapter to the node that owns it."""

    __slots__ = ("adapter", "data", "handshake", "id", "rooms")

    def __init__(
        self, adapter: Adapter, sid: Sid, handshake: Any, rooms: Iterable[Room], data: Any
    ) -> None:
        self.adapter = adapter
        self.id = sid
        self.handshake = handshake
        self.rooms: set[Room] = set(rooms)
        self.data = data

    def _only_me(self) -> BroadcastOptions:
        return BroadcastOptions(rooms=frozenset((self.id,)))

    def emit(self, event: str, *args: Any) -> None:
        nsp = self.adapter.nsp
        limit = DEFAULT_MAX_EMIT_BYTES if nsp is None else nsp.server.session_config.max_emit_bytes
        self.adapter.broadcast(
            encode_event(self.adapter.name, event, args, max_bytes=limit),
            self._only_me(),
            (event, *args),
        )

    def join(self, rooms: str | Iterable[str]) -> None:
        self.adapter.add_sockets(self._only_me(), (rooms,) if isinstance(rooms, str) else rooms)

    def leave(self, room: str) -> None:
        self.adapter.del_sockets(self._only_me(), (room,))

    def disconnect(self, close: bool = False) -> None:
        self.adapter.disconnect_sockets(self._only_me(), close)

    def __repr__(self) -> str:
        return f"<RemoteSocket {self.id} {self.adapter.name}>"


class Adapter(abc.ABC):
    """The interface a namespace uses for rooms and broadcasts."""

    #: Used when a broadcast with acks has no ``timeout(...)``: None waits as long as it
    #: takes (single node); a cluster adapter bounds it (a node may never answer).
    default_ack_timeout: float | None = None
    #: Whether connection state recovery works with it: every packet its sockets get passes
    #: through this node's namespace (see :mod:`pyserver.socketio.recovery`).
    supports_recovery: bool = False
    #: Whether recovery goes through the cluster (the streams adapter): offsets are given by
    #: the adapter as it delivers, a direct ``socket.emit`` is a broadcast to the socket's
    #: room, and sessions are restored by :meth:`restore_session` (on any node).
    recovers_across_nodes: bool = False
    #: This node's connected sockets of the namespace that have outgoing listeners
    #: (``Socket.on_any_outgoing``; the sockets count themselves): while 0, a broadcast does
    #: not look for listeners.
    outgoing_watchers: int = 0
    #: Set by a namespace whose parser is not JSON (``Server(parser="msgpack")``): turns
    #: messages encoded by the built-in parser (``[text, *attachments]``, what the Redis
    #: adapters make of other nodes' broadcasts) into that parser's; None: nothing to do.
    transcode: Callable[[Sequence[str | bytes]], list[str | bytes]] | None = None
    #: The room events' listeners (:meth:`on`), None while there is none (membership
    #: changes then pay one attribute test).
    room_listeners: dict[str, list[Callable[..., Any]]] | None = None

    def on(self, event: str, listener: Callable[..., Any] | None = None) -> Any:
        """Listen to this node's room events, as Node's adapter emits them:
        ``"create-room"`` ``(room)``, ``"delete-room"`` ``(room)``, ``"join-room"``
        ``(room, sid)``, ``"leave-room"`` ``(room, sid)`` (a socket's own room, its id,
        included). Listeners are plain functions, called as the membership changes; an
        exception is logged. Usable as a decorator."""
        if event not in ROOM_EVENTS:
            raise ValueError(f"unknown adapter event {event!r}: one of {sorted(ROOM_EVENTS)}")

        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            listeners = dict(self.room_listeners or {})
            listeners[event] = [*listeners.get(event, ()), fn]
            self.room_listeners = listeners
            return fn

        return register if listener is None else register(listener)

    def off(self, event: str, listener: Callable[..., Any] | None = None) -> None:
        """Remove ``listener`` (every listener of ``event`` when None)."""
        listeners = dict(self.room_listeners or {})
        kept = [fn for fn in listeners.get(event, ()) if listener is not None and fn != listener]
        if kept:
            listeners[event] = kept
        else:
            listeners.pop(event, None)
        self.room_listeners = listeners or None

    def emit_room_event(self, event: str, *args: Any) -> None:
        """Call the listeners of a room event (see :meth:`on`)."""
        for fn in (self.room_listeners or {}).get(event, ()):
            try:
                fn(*args)
            except Exception:
                logger.exception("%r listener of the adapter of %s failed", event, self.name)

    def __init__(self, nsp: AdapterNamespace | None = None) -> None:
        self.nsp = nsp
        self.name: str = nsp.name if nsp is not None else "/"
        #: The namespace's counters (its own until the namespace gives its, which it does
        #: at once): local deliveries and volatile skips are counted here.
        self.counters = NamespaceCounters(self.name)
        self.on_room_created: Callable[[Room], None] = _ignore
        self.on_room_deleted: Callable[[Room], None] = _ignore
        self.sockets: dict[Sid, LocalSocket] = {}
        """The namespace's connected sockets on this node, by sid (the namespace owns it)."""

    # -- membership ----------------------------------------------------------------------

    @abc.abstractmethod
    def add_all(self, sid: Sid, rooms: Iterable[Room]) -> None:
        """Put ``sid`` in ``rooms`` (registering the socket and its own room on first use)."""

    @abc.abstractmethod
    def del_(self, sid: Sid, room: Room) -> None:
        """Take ``sid`` out of ``room``."""

    @abc.abstractmethod
    def del_all(self, sid: Sid) -> None:
        """Take ``sid`` out of every room (it disconnected)."""

    @abc.abstractmethod
    def rooms_of(self, sid: Sid) -> Set[Room]:
        """The rooms of a local socket (read-only)."""

    @abc.abstractmethod
    def sids(self, opts: BroadcastOptions) -> set[Sid]:
        """The local sockets that ``opts`` selects."""

    @abc.abstractmethod
    def has_room(self, room: Room) -> bool:
        """Whether ``room`` has a member on this node."""

    @abc.abstractmethod
    def room_sizes(self) -> dict[Room, int]:
        """Every local room and its member count."""

    # -- broadcasting --------------------------------------------------------------------

    @abc.abstractmethod
    def broadcast(
        self,
        parts: Sequence[str | bytes],
        opts: BroadcastOptions,
        packet: Sequence[Any] = (),
    ) -> int:
        """Send the encoded packet ``parts`` to the selected sockets; return how many got it
        on this node. ``packet`` is ``[event, *args]`` as given (a cluster adapter forwards
        it to the other nodes; the encoded parts serve the local sockets)."""

    @abc.abstractmethod
    async def broadcast_with_ack(
        self, event: str, args: Sequence[Any], opts: BroadcastOptions, sink: AckSink
    ) -> None:
        """Emit asking every selected socket for an answer, and return once it is sent.
        ``sink.expect_nodes`` first (cluster adapters: how many nodes will report), then
        each node's ``client_count`` (this node's before any of its replies), each
        ``reply``, and ``gone`` for each local socket that left before it replied."""

    @abc.abstractmethod
    async def fetch_sockets(self, opts: BroadcastOptions) -> list[LocalSocket | RemoteSocket]:
        """The selected sockets (a multi-node adapter adds :class:`RemoteSocket` ones)."""

    @abc.abstractmethod
    def add_sockets(self, opts: BroadcastOptions, rooms: Iterable[Room]) -> None:
        """Make the selected sockets join ``rooms``."""

    @abc.abstractmethod
    def del_sockets(self, opts: BroadcastOptions, rooms: Iterable[Room]) -> None:
        """Make the selected sockets leave ``rooms``."""

    @abc.abstractmethod
    def disconnect_sockets(self, opts: BroadcastOptions, close: bool) -> None:
        """Disconnect the selected sockets (``close``: their whole connection)."""

    # -- connection state recovery (see :mod:`pyserver.socketio.recovery`) ------------------

    def recovery_store(self, config: StateRecovery) -> RecoveryStore:
        """What the namespace keeps for recovery: this node's memory, unless the adapter
        keeps it elsewhere (a cluster adapter returns a store of its own)."""
        return RecoveryStore(config, secrets.token_hex(4))

    async def restore_session(self, pid: str, offset: str) -> RecoveredSession | None:
        """With :attr:`recovers_across_nodes`: the session ``pid`` and what it missed after
        ``offset``, from wherever the cluster keeps them; None when it cannot recover."""
        return None

    def replay(self, restored: RecoveredSession) -> list[list[str | bytes]]:
        """The packets a recovered socket gets before its CONNECT reply, asked as it is
        accepted (a cluster adapter reconciles them with what it delivered meanwhile)."""
        return restored.missed

    def server_side_emit(self, event: str, args: Sequence[Any]) -> None:  # noqa: B027
        """Tell the other nodes (nothing to do with a single node)."""

    async def server_side_emit_with_ack(
        self,
        event: str,
        args: Sequence[Any],
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> list[Any]:
        """Ask the other nodes; their replies (none with a single node)."""
        return []


def _ignore(room: Room) -> None:
    pass


AdapterFactory = Callable[[AdapterNamespace], Adapter]
"""What ``Server(adapter=...)`` takes: called once per namespace."""

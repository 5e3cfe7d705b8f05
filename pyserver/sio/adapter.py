"""Adapters: where a namespace keeps its rooms and how a broadcast reaches its recipients.

:class:`Adapter` is the interface (the Node server's adapter, in Python): a namespace calls it
for every room change and every broadcast, so a multi-node adapter (Redis) can implement the
same methods, publish what it must to the other nodes and call the in-memory logic for the
local sockets. :class:`InMemoryAdapter` is the single-process one, over the sans-IO
:class:`~pyserver.rooms.RoomIndex`.

Everything here is synchronous except :meth:`Adapter.fetch_sockets` (a multi-node adapter
has to ask the other nodes). The adapter reports room life cycle to the namespace through
``on_room_created(room)`` / ``on_room_deleted(room)`` (the namespace's room nurseries use
them).

A broadcast without acks is encoded once: the caller gives the encoded parts (the text
packet, then the binary attachments), the adapter wraps each in one
:class:`~pyserver.transports.engineio.OutgoingMessage` and hands the same objects to every
recipient.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Sequence, Set
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pyserver.rooms import Room, RoomIndex
from pyserver.socketio.packets import Sid
from pyserver.transports.engineio import OutgoingMessage

if TYPE_CHECKING:
    from pyserver.sio.socket import Socket

__all__ = ["Adapter", "BroadcastOptions", "InMemoryAdapter"]


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


class Adapter(abc.ABC):
    """The interface a namespace uses for rooms and broadcasts."""

    def __init__(self) -> None:
        self.on_room_created: Callable[[Room], None] = _ignore
        self.on_room_deleted: Callable[[Room], None] = _ignore
        self.sockets: dict[Sid, Socket] = {}
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
    def broadcast(self, parts: Sequence[str | bytes], opts: BroadcastOptions) -> int:
        """Send the encoded packet ``parts`` to the selected sockets; return how many got it."""

    @abc.abstractmethod
    def broadcast_with_ack(
        self,
        event: str,
        args: Sequence[Any],
        opts: BroadcastOptions,
        on_count: Callable[[int], None],
        on_reply: Callable[[Sid, Any], None],
        on_gone: Callable[[Sid], None],
    ) -> None:
        """Emit asking every selected socket for an answer. ``on_count`` gets the number of
        sockets asked (called once, before any reply), ``on_reply`` each reply, ``on_gone``
        each socket that left before it replied."""

    @abc.abstractmethod
    async def fetch_sockets(self, opts: BroadcastOptions) -> list[Socket]:
        """The selected sockets (a multi-node adapter adds remote ones)."""

    @abc.abstractmethod
    def add_sockets(self, opts: BroadcastOptions, rooms: Iterable[Room]) -> None:
        """Make the selected sockets join ``rooms``."""

    @abc.abstractmethod
    def del_sockets(self, opts: BroadcastOptions, rooms: Iterable[Room]) -> None:
        """Make the selected sockets leave ``rooms``."""

    @abc.abstractmethod
    def disconnect_sockets(self, opts: BroadcastOptions, close: bool) -> None:
        """Disconnect the selected sockets (``close``: their whole connection)."""

    def server_side_emit(self, event: str, args: Sequence[Any]) -> None:  # noqa: B027
        """Tell the other nodes (nothing to do with a single node)."""


def _ignore(room: Room) -> None:
    pass


class InMemoryAdapter(Adapter):
    """The single-process adapter over a :class:`~pyserver.rooms.RoomIndex`."""

    def __init__(self) -> None:
        super().__init__()
        self.index = RoomIndex()

    def add_all(self, sid: Sid, rooms: Iterable[Room]) -> None:
        index = self.index
        if sid not in index:
            if index.add_socket(sid):
                self.on_room_created(sid)
        for room in index.join(sid, rooms):
            self.on_room_created(room)

    def del_(self, sid: Sid, room: Room) -> None:
        if sid in self.index and self.index.leave(sid, room):
            self.on_room_deleted(room)

    def del_all(self, sid: Sid) -> None:
        for room in self.index.leave_all(sid):
            self.on_room_deleted(room)

    def rooms_of(self, sid: Sid) -> Set[Room]:
        return self.index.rooms_of(sid)

    def sids(self, opts: BroadcastOptions) -> set[Sid]:
        return self.index.sids_in(opts.rooms, except_rooms=opts.except_rooms)

    def has_room(self, room: Room) -> bool:
        return bool(self.index.members(room))

    def room_sizes(self) -> dict[Room, int]:
        return self.index.room_sizes()

    def broadcast(self, parts: Sequence[str | bytes], opts: BroadcastOptions) -> int:
        sockets = self.sockets
        messages = [OutgoingMessage(part) for part in parts]
        volatile = opts.volatile
        sent = 0
        for sid in self.sids(opts):
            socket = sockets.get(sid)
            if socket is None:
                continue
            client = socket.client
            if volatile and not client.ready_for_volatile():
                continue
            session = client.session
            for message in messages:
                session.send_encoded(message)
            sent += 1
        return sent

    def broadcast_with_ack(
        self,
        event: str,
        args: Sequence[Any],
        opts: BroadcastOptions,
        on_count: Callable[[int], None],
        on_reply: Callable[[Sid, Any], None],
        on_gone: Callable[[Sid], None],
    ) -> None:
        targets = [s for sid in self.sids(opts) if (s := self.sockets.get(sid)) is not None]
        if opts.volatile:
            targets = [s for s in targets if s.client.ready_for_volatile()]
        on_count(len(targets))
        for socket in targets:
            socket._emit_with_callback(
                event, args, _ReplyTo(socket.id, on_reply, on_gone), opts.timeout
            )

    async def fetch_sockets(self, opts: BroadcastOptions) -> list[Socket]:
        return [s for sid in self.sids(opts) if (s := self.sockets.get(sid)) is not None]

    def add_sockets(self, opts: BroadcastOptions, rooms: Iterable[Room]) -> None:
        rooms = list(rooms)
        for sid in self.sids(opts):
            socket = self.sockets.get(sid)
            if socket is not None:
                socket.join(rooms)

    def del_sockets(self, opts: BroadcastOptions, rooms: Iterable[Room]) -> None:
        rooms = list(rooms)
        for sid in self.sids(opts):
            socket = self.sockets.get(sid)
            if socket is not None:
                for room in rooms:
                    socket.leave(room)

    def disconnect_sockets(self, opts: BroadcastOptions, close: bool) -> None:
        for sid in self.sids(opts):
            socket = self.sockets.get(sid)
            if socket is not None:
                socket.disconnect(close)


class _ReplyTo:
    """The ack callback of one socket in a broadcast with acks."""

    __slots__ = ("on_gone", "on_reply", "sid")

    def __init__(
        self, sid: Sid, on_reply: Callable[[Sid, Any], None], on_gone: Callable[[Sid], None]
    ) -> None:
        self.sid = sid
        self.on_reply = on_reply
        self.on_gone = on_gone

    def __call__(self, reply: Any, error: BaseException | None) -> None:
        if error is None:
            self.on_reply(self.sid, reply)
        else:
            self.on_gone(self.sid)

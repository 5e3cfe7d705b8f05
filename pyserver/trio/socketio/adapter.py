"""Adapters: where a namespace keeps its rooms and how a broadcast reaches its recipients.

:class:`InMemoryAdapter` is the single-process adapter, over the sans-IO
:class:`~pyserver.socketio.rooms.RoomIndex`; it is also the local half of a multi-node one
(the Redis adapter calls it for this node's sockets). The interface every adapter implements
(:class:`Adapter`, :class:`BroadcastOptions`, the protocols of what an adapter needs of the
objects around it, :class:`RemoteSocket`, :class:`RequestTimeout`) is in
:mod:`pyserver.trio.socketio.adapter_base` and re-exported here: import them from this module.

A broadcast without acks is encoded once: the caller gives the encoded parts (the text
packet, then the binary attachments), the adapter wraps each in one
:class:`~pyserver.trio.engineio.OutgoingMessage` and hands the same objects to every
recipient. Parts that are the same object (one bytes value in several places of the
arguments) share one message, so its WebSocket frame is built once, not once per place. The
recipients of a room set are kept between membership changes (``_recipients``), so a
repeated broadcast to the same rooms (a game's tick) does no set operations.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence, Set
from typing import Any

from pyserver.socketio.packets import Sid
from pyserver.socketio.rooms import Room, RoomIndex
from pyserver.trio.engineio import EngineSession, OutgoingMessage, send_encoded_many
from pyserver.trio.engineio.session import PlainMessage
from pyserver.trio.socketio.adapter_base import (
    AckSink,
    Adapter,
    AdapterFactory,
    AdapterNamespace,
    AdapterServer,
    BroadcastOptions,
    LocalSocket,
    Recipient,
    RemoteSocket,
    RequestTimeout,
)

_KEPT_TARGETS = 64
"""Room sets whose recipients an adapter keeps between membership changes."""

_Recipients = tuple[list[tuple[Sid, Recipient]], list[EngineSession]]
"""(sid, client) pairs and their sessions (``InMemoryAdapter._recipients``)."""

__all__ = [
    "AckSink",
    "Adapter",
    "AdapterFactory",
    "AdapterNamespace",
    "AdapterServer",
    "BroadcastOptions",
    "InMemoryAdapter",
    "LocalSocket",
    "Recipient",
    "RemoteSocket",
    "RequestTimeout",
]


class InMemoryAdapter(Adapter):
    """The single-process adapter over a :class:`~pyserver.socketio.rooms.RoomIndex`."""

    supports_recovery = True

    def __init__(self, nsp: AdapterNamespace | None = None) -> None:
        super().__init__(nsp)
        self.index = RoomIndex()
        # rooms -> their sockets' (sid, client) pairs and sessions, at _targets_version
        self._targets: dict[frozenset[Room], _Recipients] = {}
        self._targets_version = -1

    def add_all(self, sid: Sid, rooms: Iterable[Room]) -> None:
        if self.room_listeners is not None:
            self._add_all_told(sid, rooms)
            return
        index = self.index
        if sid not in index:
            if index.add_socket(sid):
                self.on_room_created(sid)
        for room in index.join(sid, rooms):
            self.on_room_created(room)

    def del_(self, sid: Sid, room: Room) -> None:
        if self.room_listeners is not None:
            self._del_told(sid, (room,))
        elif sid in self.index and self.index.leave(sid, room):
            self.on_room_deleted(room)

    def del_all(self, sid: Sid) -> None:
        if self.room_listeners is not None:
            self._del_told(sid, None)
            return
        for room in self.index.leave_all(sid):
            self.on_room_deleted(room)

    # the same, telling the room events' listeners (Adapter.on), room by room as Node does

    def _add_all_told(self, sid: Sid, rooms: Iterable[Room]) -> None:
        index = self.index
        emit = self.emit_room_event
        if sid not in index:
            if index.add_socket(sid):
                self.on_room_created(sid)
                emit("create-room", sid)
            emit("join-room", sid, sid)
        for room in rooms:
            if room in index.rooms_of(sid):
                continue
            for created in index.join(sid, (room,)):
                self.on_room_created(created)
                emit("create-room", created)
            emit("join-room", room, sid)

    def _del_told(self, sid: Sid, rooms: Iterable[Room] | None) -> None:
        index = self.index
        if sid not in index:
            return
        emit = self.emit_room_event
        every = rooms is None
        if rooms is None:  # every room, the socket's own last
            rooms = [*(room for room in index.rooms_of(sid) if room != sid), sid]
        for room in rooms:
            if room in index.rooms_of(sid):
                emptied = index.leave(sid, room)
                emit("leave-room", room, sid)
                if emptied:
                    self.on_room_deleted(room)
                    emit("delete-room", room)
        if every:
            index.leave_all(sid)  # (in no room now: out of the index)

    def rooms_of(self, sid: Sid) -> Set[Room]:
        return self.index.rooms_of(sid)

    def sids(self, opts: BroadcastOptions) -> set[Sid]:
        return self.index.sids_in(opts.rooms, except_rooms=opts.except_rooms)

    def has_room(self, room: Room) -> bool:
        return bool(self.index.members(room))

    def room_sizes(self) -> dict[Room, int]:
        return self.index.room_sizes()

    def broadcast(
        self,
        parts: Sequence[str | bytes],
        opts: BroadcastOptions,
        packet: Sequence[Any] = (),
    ) -> int:
        if self.transcode is not None and type(parts[0]) is str:  # (not the JSON parser)
            parts = self.transcode(parts)
        pairs, sessions = self._recipients(opts.rooms)
        if opts.except_rooms or opts.volatile:
            members = self.index.members
            excluded: set[Sid] = set()
            for room in opts.except_rooms:
                excluded.update(members(room))
            volatile = opts.volatile
            sessions = [
                client.session
                for sid, client in pairs
                if sid not in excluded and not (volatile and not client.ready_for_volatile())
            ]
            if volatile:  # (the recipients it was not sent to, as not writable)
                skipped = sum(1 for sid, _ in pairs if sid not in excluded) - len(sessions)
                self.counters.volatile_skipped += skipped
        if sessions:
            # one call per WebSocket recipient, the frames built once
            if len(parts) == 1:
                message = (OutgoingMessage if opts.compress else PlainMessage)(parts[0])
                send_encoded_many([message], sessions)
            else:
                send_encoded_many(_messages(parts, opts.compress), sessions)
            self.counters.events_out += len(sessions)
        return len(sessions)

    def _recipients(self, rooms: frozenset[Room]) -> _Recipients:
        """The connected sockets in ``rooms`` (every socket when empty) as ``(sid, client)``
        pairs, and their Engine.IO sessions. Kept until the room index changes (its
        ``version``; the namespace changes ``sockets`` only together with the index), so
        broadcasting to the same room again (a game's tick) costs no set operations and no
        lookups per recipient. At most ``_KEPT_TARGETS`` room sets are kept."""
        kept = self._targets
        version = self.index.version
        if self._targets_version != version:
            kept.clear()
            self._targets_version = version
        found = kept.get(rooms)
        if found is None:
            sockets = self.sockets
            pairs = [
                (sid, socket.client)
                for sid in self.index.sids_in(rooms)
                if (socket := sockets.get(sid)) is not None
            ]
            found = (pairs, [client.session for _, client in pairs])
            if len(kept) >= _KEPT_TARGETS:
                kept.clear()
            kept[rooms] = found
        return found

    async def broadcast_with_ack(
        self, event: str, args: Sequence[Any], opts: BroadcastOptions, sink: AckSink
    ) -> None:
        self.local_broadcast_with_ack(event, args, opts, sink.client_count, sink.reply, sink.gone)

    def local_broadcast_with_ack(
        self,
        event: str,
        args: Sequence[Any],
        opts: BroadcastOptions,
        on_count: Callable[[int], None],
        on_reply: Callable[[Any], None],
        on_gone: Callable[[], None],
    ) -> None:
        """Ask this node's selected sockets: ``on_count`` once (before any reply), then
        ``on_reply`` per answer and ``on_gone`` per socket that left or timed out."""
        targets = [s for sid in self.sids(opts) if (s := self.sockets.get(sid)) is not None]
        if opts.volatile:
            selected = len(targets)
            targets = [s for s in targets if s.client.ready_for_volatile()]
            self.counters.volatile_skipped += selected - len(targets)
        on_count(len(targets))
        reply_to = _ReplyTo(on_reply, on_gone)
        for socket in targets:
            socket.emit_with_callback(event, args, reply_to, opts.timeout)

    async def fetch_sockets(self, opts: BroadcastOptions) -> list[LocalSocket | RemoteSocket]:
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


def _messages(parts: Sequence[str | bytes], compress: bool) -> list[OutgoingMessage]:
    """One :class:`OutgoingMessage` per part, the same one for parts that are the same object
    (an attachment that appears several times in the arguments: its frame is built once)."""
    made: dict[int, OutgoingMessage] = {}
    messages = []
    for part in parts:
        message = made.get(id(part))
        if message is None:
            message = made[id(part)] = (OutgoingMessage if compress else PlainMessage)(part)
        messages.append(message)
    return messages


class _ReplyTo:
    """The ack callback of the sockets in a broadcast with acks."""

    __slots__ = ("on_gone", "on_reply")

    def __init__(self, on_reply: Callable[[Any], None], on_gone: Callable[[], None]) -> None:
        self.on_reply = on_reply
        self.on_gone = on_gone

    def __call__(self, reply: Any, error: BaseException | None) -> None:
        if error is None:
            self.on_reply(reply)
        else:
            self.on_gone()

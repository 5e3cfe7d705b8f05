"""One namespace of a :class:`~pyserver.trio.redis.streams.RedisStreamsAdapter` cluster: the
in-memory rooms of this node, plus the cluster protocol of ``socket.io-adapter``'s
``ClusterAdapter`` over a Redis stream and pub/sub (:mod:`pyserver.redis.streams`).

* ``broadcast`` (without acks), ``sockets_join``, ``sockets_leave``, ``disconnect_sockets``:
  a stream entry (``XADD``). Room operations are applied here at once (our own entry is
  skipped when it comes back). A broadcast is delivered to this node's sockets at once,
  except with connection state recovery on: then it is delivered when the stream reader
  reads it back, with its entry id as the offset, so every client gets its packets in the
  stream's order and its last offset is always the last packet it got (never a packet of
  ours with a higher id before another node's lower one, which would make a recovery replay
  that one twice). The outgoing listeners of the recipients of another node's broadcast are
  told of it as it is delivered (with its offset, if any), as Node's adapter does.
* Requests (``fetch_sockets``, ``server_side_emit``, broadcasts with acks): pub/sub on
  ``<prefix>#<nsp>#``; answers go to ``<prefix>#<nsp>#<requester uid>#``. The nodes to wait
  for are ``PUBSUB NUMSUB <prefix>#<nsp>#`` minus this one, as Node counts them.

Connection state recovery (:class:`StreamSessions` is the namespace's store): a socket's
session ``{sid, pid, rooms, data}`` is saved (``SET <prefix><pid> ... PX``) when it connects,
when its rooms change and every third of ``max_disconnection_duration`` while it is
connected, and once more when it leaves for a recoverable reason; it is deleted when it
leaves for good. So a client whose node was killed (no chance to save anything) still finds
its session, rooms and data as they were at most one save earlier. Restoring (on any node)
takes the session once (``GET`` + ``DEL`` in a transaction), checks that the offset is still
in the stream, and replays with ``XRANGE`` the broadcasts after it that reached the session's
rooms (:meth:`StreamsNamespaceAdapter.restore_session`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import trio

from pyserver.logtext import shown
from pyserver.redis import streams
from pyserver.redis.codec import CodecError, for_client
from pyserver.redis.streams import ClusterMessage, MessageType
from pyserver.socketio.packets import ProtocolError, Sid, encode_event
from pyserver.socketio.recovery import RecoveredSession, RecoveryStore, StateRecovery
from pyserver.trio.redis.answers import describe
from pyserver.trio.redis.requesting import Pending, Request, RequestingAdapter
from pyserver.trio.redis.streams_parts import Restored, StreamSessions, StreamsNode
from pyserver.trio.socketio.adapter import (
    AdapterNamespace,
    BroadcastOptions,
    RemoteSocket,
)
from pyserver.trio.socketio.broadcast import notify_outgoing
from pyserver.trio.socketio.socket import ERROR_ACK, call

__all__ = ["StreamSessions", "StreamsNamespaceAdapter", "StreamsNode"]

logger = logging.getLogger("pyserver.redis")

MAX_REPLAY = 100_000
"""Entries read from the stream at most to restore one session (past it: not recovered)."""


class StreamsNamespaceAdapter(RequestingAdapter):
    """The adapter of one namespace on one node of a Redis streams cluster."""

    supports_recovery = True
    recovers_across_nodes = True
    node: StreamsNode

    def __init__(self, node: StreamsNode, nsp: AdapterNamespace) -> None:
        super().__init__(node, nsp)
        self.public = streams.channel(node.channel_prefix, self.name)
        self.private = streams.channel(node.channel_prefix, self.name, node.uid)
        self.store: StreamSessions | None = None
        self._pids: dict[Sid, str] = {}

    def recovery_store(self, config: StateRecovery) -> RecoveryStore:
        self.store = StreamSessions(config, self)
        return self.store

    def close(self) -> None:
        self.node.forget(self)

    # -- publishing ------------------------------------------------------------------------

    def _message(self, kind: MessageType, data: Any) -> ClusterMessage:
        return ClusterMessage(self.uid, self.name, kind, data)

    def _append(self, kind: MessageType, data: Any, room: str | None = None) -> None:
        """A broadcast or a room operation: a stream entry (the sharded adapter: a message
        on the namespace's channel, or on ``room``'s)."""
        try:
            self.node.send(self._message(kind, data), room)
        except TypeError as exc:
            logger.warning("not sent to the other nodes: %s", shown(str(exc)))

    def _publish(self, channel: str, kind: MessageType, data: Any) -> None:
        try:
            self.node.publish_message(channel, self._message(kind, data))
        except TypeError as exc:
            logger.warning("not sent to the other nodes: %s", shown(str(exc)))

    @staticmethod
    def _opts(opts: BroadcastOptions, **flags: Any) -> dict[str, Any]:
        if opts.volatile:
            flags["volatile"] = True
        if not opts.compress:
            flags["compress"] = False
        return streams.encode_options(opts.rooms, opts.except_rooms, flags)

    # -- the Adapter API -------------------------------------------------------------------

    def broadcast(
        self,
        parts: Sequence[str | bytes],
        opts: BroadcastOptions,
        packet: Sequence[Any] = (),
    ) -> int:
        if opts.local or not packet:
            return super().broadcast(parts, opts)
        self._append(
            MessageType.BROADCAST,
            {"packet": {"type": 2, "data": list(packet)}, "opts": self._opts(opts)},
            next(iter(opts.rooms)) if len(opts.rooms) == 1 else None,
        )
        if self.store is not None and not opts.volatile:
            # delivered as read back, with its offset: the count is the selected sockets now
            return len(self._recipients(opts.rooms)[1])
        return super().broadcast(parts, opts)

    def add_all(self, sid: Sid, rooms: Iterable[str]) -> None:
        super().add_all(sid, rooms)
        self._changed(sid)

    def del_(self, sid: Sid, room: str) -> None:
        super().del_(sid, room)
        self._changed(sid)

    def del_all(self, sid: Sid) -> None:
        super().del_all(sid)
        pid = self._pids.pop(sid, None)
        if pid is not None:
            self.node.forget_session(pid)

    def add_sockets(self, opts: BroadcastOptions, rooms: Iterable[str]) -> None:
        rooms = list(rooms)
        if not opts.local:
            self._append(MessageType.SOCKETS_JOIN, {"opts": self._opts(opts), "rooms": rooms})
        super().add_sockets(opts, rooms)

    def del_sockets(self, opts: BroadcastOptions, rooms: Iterable[str]) -> None:
        rooms = list(rooms)
        if not opts.local:
            self._append(MessageType.SOCKETS_LEAVE, {"opts": self._opts(opts), "rooms": rooms})
        super().del_sockets(opts, rooms)

    def disconnect_sockets(self, opts: BroadcastOptions, close: bool) -> None:
        if not opts.local:
            self._append(MessageType.DISCONNECT_SOCKETS, {"opts": self._opts(opts), "close": close})
        super().disconnect_sockets(opts, close)

    # -- the requests' hooks (RequestingAdapter) -----------------------------------------

    async def _count(self) -> tuple[int, frozenset[str]]:
        return await self.node.remote_count(self), frozenset()

    def _new_id(self) -> str:
        return self.node.new_id()

    def _send_request(self, rid: str | None, kind: int, data: dict[str, Any]) -> None:
        if rid is not None:
            data["requestId"] = rid
        self._publish(self.public, MessageType(kind), data)

    def _fetch_request(self, opts: BroadcastOptions) -> tuple[int, dict[str, Any], float]:
        timeout = opts.timeout if opts.timeout is not None else self.node.requests_timeout
        return MessageType.FETCH_SOCKETS, {"opts": self._opts(opts)}, timeout

    def _emit_request(self, packet: list[Any]) -> Request:
        return MessageType.SERVER_SIDE_EMIT, {"packet": packet}

    def _ack_request(self, packet: list[Any], opts: BroadcastOptions, ms: int) -> Request:
        return MessageType.BROADCAST, {
            "packet": {"type": 2, "data": packet},
            "opts": self._opts(opts, timeout=ms),
        }

    # -- sessions --------------------------------------------------------------------------

    def _changed(self, sid: Sid) -> None:
        if self.store is None:
            return
        socket = self.sockets.get(sid)
        pid = getattr(socket, "pid", None) if socket is not None else None
        if isinstance(pid, str):
            self._pids[sid] = pid
            self.node.session_changed(self, sid)

    def session_of(self, sid: Sid) -> tuple[str, bytes] | None:
        """``(pid, encoded session)`` of a connected socket, for saving."""
        socket = self.sockets.get(sid)
        pid = self._pids.get(sid)
        if socket is None or pid is None:
            return None
        try:
            return pid, streams.encode_session(sid, pid, self.rooms_of(sid), socket.data)
        except TypeError:
            return pid, streams.encode_session(sid, pid, self.rooms_of(sid), None)

    def save_session(
        self, sid: Sid, pid: str, rooms: Iterable[str], data: Any, leaving: bool = False
    ) -> None:
        try:
            value = streams.encode_session(sid, pid, rooms, data)
        except TypeError:
            value = streams.encode_session(sid, pid, rooms, None)
        if leaving:
            self._pids.pop(sid, None)  # saved for the client's return: not deleted
        self.node.save_session(pid, value)

    async def restore_session(self, pid: str, offset: str) -> RecoveredSession | None:
        if self.store is None or not streams.valid_offset(offset):
            return None
        raw, after = await self.node.take_session(pid, offset, MAX_REPLAY)
        if raw is None or after is None:
            return None
        session = streams.decode_session(raw)
        rooms = frozenset(session.rooms)
        ids: list[tuple[int, int]] = []
        missed: list[list[str | bytes]] = []
        upto = streams.offset_key(offset)
        for entry_id, message in after:
            upto = streams.offset_key(entry_id)
            parts = self._kept_packet(message, entry_id, rooms)
            if parts is not None:
                ids.append(upto)
                missed.append(parts)
        return Restored(
            Sid(session.sid),
            session.pid,
            rooms,
            session.data if session.data is not None else {},
            missed,
            trio.current_time(),
            tuple(ids),
            upto,
        )

    def _kept_packet(
        self, message: ClusterMessage, entry_id: str, rooms: frozenset[str]
    ) -> list[str | bytes] | None:
        """The encoded packet (its offset added) of a stored broadcast that reached a
        socket in ``rooms``, or None."""
        if message.nsp != self.name or message.type != MessageType.BROADCAST:
            return None
        data = message.data if isinstance(message.data, dict) else {}
        got, except_rooms, flags = streams.decode_options(data.get("opts"))
        if flags.get("volatile") or not streams.should_include(rooms, got, except_rooms):
            return None
        return self._encoded(data, entry_id)

    def _encoded(self, data: dict[str, Any], offset: str | None) -> list[str | bytes]:
        return self._encode(self._event(data, offset))

    @staticmethod
    def _event(data: dict[str, Any], offset: str | None) -> list[Any]:
        """A broadcast's ``[event, *args]`` as clients get it (``offset`` added at its end)."""
        packet = data.get("packet")
        args = packet.get("data") if isinstance(packet, dict) else None
        if not isinstance(args, list) or not args or not isinstance(args[0], str):
            raise CodecError("a broadcast's packet is {type, data: [event, ...]}")
        event: list[Any] = for_client(args)
        if offset is not None:
            event.append(offset)
        return event

    def _encode(self, args: list[Any]) -> list[str | bytes]:
        try:
            return encode_event(self.name, args[0], args[1:])
        except ProtocolError as exc:
            raise CodecError(f"broadcast cannot be sent to clients: {exc}") from exc

    def replay(self, restored: RecoveredSession) -> list[list[str | bytes]]:
        """What a restored socket gets, reconciled with the reader's position now (the
        socket joins its rooms in this same step): packets the reader has not delivered yet
        are left to it; those it delivered since the ``XRANGE`` are added."""
        if not isinstance(restored, Restored):
            return restored.missed
        position = self.node.position
        missed = [p for p, i in zip(restored.missed, restored.ids, strict=True) if i <= position]
        if position > restored.upto:
            for entry_key, entry_id, message in self.node.recent_after(restored.upto):
                if entry_key > position:
                    break
                parts = self._kept_packet(message, entry_id, restored.rooms)
                if parts is not None:
                    missed.append(parts)
        return missed

    # -- what other nodes send -------------------------------------------------------------

    def on_entry(self, message: ClusterMessage, entry_id: str) -> None:
        """A stream entry of this namespace, in the stream's order."""
        kind = message.type
        data = message.data if isinstance(message.data, dict) else {}
        mine = message.uid == self.uid
        if kind == MessageType.BROADCAST:
            rooms, except_rooms, flags = streams.decode_options(data.get("opts"))
            volatile = bool(flags.get("volatile"))
            offset = entry_id if self.store is not None and not volatile else None
            if mine and offset is None:
                return  # delivered here when it was sent
            if rooms and not any(self.has_room(r) for r in rooms):
                return
            opts = BroadcastOptions(
                rooms=rooms,
                except_rooms=except_rooms,
                volatile=volatile,
                compress=flags.get("compress") is not False,
                local=True,
            )
            event = self._event(data, offset)
            super().broadcast(self._encode(event), opts)
            if self.outgoing_watchers and not mine:  # (ours: told when it was sent)
                notify_outgoing(self, opts, event[0], event[1:])
        elif mine:
            return  # applied when it was sent
        elif kind in (MessageType.SOCKETS_JOIN, MessageType.SOCKETS_LEAVE):
            opts = self._local(data.get("opts"))
            names = streams.decode_options({"rooms": data.get("rooms")})[0]
            if kind == MessageType.SOCKETS_JOIN:
                super().add_sockets(opts, names)
            else:
                super().del_sockets(opts, names)
        elif kind == MessageType.DISCONNECT_SOCKETS:
            super().disconnect_sockets(self._local(data.get("opts")), data.get("close") is True)

    @staticmethod
    def _local(value: Any, timeout: float | None = None) -> BroadcastOptions:
        rooms, except_rooms, flags = streams.decode_options(value)
        return BroadcastOptions(
            rooms=rooms,
            except_rooms=except_rooms,
            volatile=bool(flags.get("volatile")),
            local=True,
            timeout=timeout,
        )

    def on_message(self, message: ClusterMessage) -> None:
        """A pub/sub message (a request, or an answer to one of ours)."""
        if message.uid == self.uid or message.nsp != self.name:
            return
        kind = message.type
        data = message.data if isinstance(message.data, dict) else {}
        rid = data.get("requestId")
        if kind == MessageType.FETCH_SOCKETS:
            opts = self._local(data.get("opts"))
            found = [s for sid in self.sids(opts) if (s := self.sockets.get(sid)) is not None]
            self._answer(message.uid, MessageType.FETCH_SOCKETS_RESPONSE,
                         {"requestId": rid, "sockets": [describe(s) for s in found]})  # fmt: skip
        elif kind == MessageType.SERVER_SIDE_EMIT:
            self._server_side_event(message.uid, data, rid)
        elif kind == MessageType.BROADCAST and isinstance(rid, str):
            self._broadcast_with_ack(message.uid, data, rid)
        elif isinstance(rid, str) and (pending := self.pending.get(rid)) is not None:
            self._response(kind, data, pending)

    def _answer(self, uid: str, kind: MessageType, data: dict[str, Any]) -> None:
        self._publish(streams.channel(self.node.channel_prefix, self.name, uid), kind, data)

    def _response(self, kind: int, data: dict[str, Any], pending: Pending) -> None:
        sink = pending.sink
        if kind == MessageType.BROADCAST_CLIENT_COUNT and sink is not None:
            count = data.get("clientCount")
            if type(count) is int and count >= 0:
                pending.answer()
                sink.client_count(count)
        elif kind == MessageType.BROADCAST_ACK and sink is not None:
            sink.reply(for_client(data.get("packet")))
        elif kind == MessageType.SERVER_SIDE_EMIT_RESPONSE:
            pending.responses.append(for_client(data.get("packet")))
            pending.answer()
        elif kind == MessageType.FETCH_SOCKETS_RESPONSE:
            described = data.get("sockets")
            if isinstance(described, list):
                for s in described:
                    if isinstance(s, dict) and isinstance(s.get("id"), str):
                        rooms = streams.decode_options({"rooms": s.get("rooms")})[0]
                        pending.responses.append(
                            RemoteSocket(self, Sid(s["id"]), s.get("handshake"), rooms,
                                         for_client(s.get("data")))
                        )  # fmt: skip
                pending.answer()

    def _server_side_event(self, uid: str, data: dict[str, Any], rid: Any) -> None:
        packet = data.get("packet")
        if not isinstance(packet, list) or not packet or not isinstance(packet[0], str):
            raise CodecError("a server-side emit carries [event, ...]")
        nsp = self.nsp
        handler = nsp.server_handlers.get(packet[0]) if nsp is not None else None
        if handler is None or nsp is None:
            return
        args = for_client(packet[1:])

        async def run() -> None:
            try:
                reply = await call(handler, *args)
            except Exception:
                logger.exception("server-side handler for %s failed", shown(packet[0]))
                reply = dict(ERROR_ACK)
            if isinstance(rid, str):
                self._answer(uid, MessageType.SERVER_SIDE_EMIT_RESPONSE,
                             {"requestId": rid, "packet": reply})  # fmt: skip

        if not self.node.handlers.spawn(nsp, run):
            logger.warning("server-side event %s dropped: too many handlers", shown(packet[0]))

    def _broadcast_with_ack(self, uid: str, data: dict[str, Any], rid: str) -> None:
        packet = data.get("packet")
        args = packet.get("data") if isinstance(packet, dict) else None
        if not isinstance(args, list) or not args or not isinstance(args[0], str):
            raise CodecError("a broadcast's packet is {type, data: [event, ...]}")
        args = for_client(args)
        flags = streams.decode_options(data.get("opts"))[2]
        timeout = flags.get("timeout")
        if not isinstance(timeout, int | float) or timeout <= 0:
            timeout = self.node.requests_timeout * 1000
        opts = self._local(data.get("opts"), timeout / 1000)

        def on_count(count: int) -> None:
            self._answer(uid, MessageType.BROADCAST_CLIENT_COUNT,
                         {"requestId": rid, "clientCount": count})  # fmt: skip

        def on_reply(reply: Any) -> None:
            first = reply[0] if type(reply) is tuple and reply else reply
            self._answer(uid, MessageType.BROADCAST_ACK, {"requestId": rid, "packet": first})

        self.local_broadcast_with_ack(args[0], args[1:], opts, on_count, on_reply, _nothing)


def _nothing() -> None:
    pass

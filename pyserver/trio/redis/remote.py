"""One namespace of a Redis cluster: the in-memory rooms of this node, plus what it publishes
to the other nodes and what it does with theirs (the protocol of
:mod:`pyserver.redis.codec`; the node's connection is :class:`~pyserver.trio.redis.RedisAdapter`).

* ``broadcast``: published (unless ``local``) on the namespace's channel, and delivered to
  this node's sockets at once (encoded once). Received broadcasts from our own uid (the
  pattern subscription echoes them) are dropped; the others are delivered to the local
  sockets they select, encoded once (and their outgoing listeners told, as Node's adapter
  does).
* ``sockets_join``, ``sockets_leave``, ``disconnect_sockets``: published (unless ``local``)
  and applied here at once; our own request, when it comes back, is dropped by uid.
* Requests with answers (``fetch_sockets``, ``server_side_emit_with_ack``, broadcasts with
  acks): the requester counts the nodes (see :meth:`RedisAdapter.remote_count`), publishes,
  and waits for that many answers, at most ``requests_timeout`` (or the broadcast's
  timeout). Pending requests are bounded (``max_pending_requests``). Written once for the
  cluster adapters in :mod:`pyserver.trio.redis.requesting`; here are this protocol's hooks.
* Requests from other nodes are answered by :mod:`pyserver.trio.redis.answers`.

The namespace adapter reaches its node through the :class:`Node` protocol (what it needs of
the :class:`~pyserver.trio.redis.RedisAdapter`), so this module does not import
``adapter.py``, which imports it. :func:`new_uid` draws the ids of nodes and requests.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from pyserver.logtext import shown
from pyserver.redis import codec
from pyserver.redis.codec import RequestType
from pyserver.socketio.packets import ProtocolError, Sid, encode_event
from pyserver.trio.redis import answers
from pyserver.trio.redis.requesting import Request, RequestingAdapter, RequestingNode
from pyserver.trio.socketio.adapter import (
    AdapterNamespace,
    BroadcastOptions,
    RemoteSocket,
)
from pyserver.trio.socketio.broadcast import notify_outgoing

__all__ = ["Node", "RedisNamespaceAdapter", "new_uid"]

logger = logging.getLogger("pyserver.redis")


def new_uid() -> str:
    """Six random URL-safe characters, as Node's ``uid2(6)``: node uids and request ids
    (drawn here, in the shell: the wire codec, :mod:`pyserver.redis.codec`, is sans-IO)."""
    return secrets.token_urlsafe(6)[:6]


class Node(answers.AnsweringNode, RequestingNode, Protocol):
    """What a namespace adapter (and :mod:`pyserver.trio.redis.answers`) needs of its node,
    the :class:`~pyserver.trio.redis.RedisAdapter`."""

    @property
    def key(self) -> str: ...

    def publish(self, channel: str, payload: bytes) -> bool:
        """Queue ``payload`` for ``channel`` (never blocks); False if the queue is full."""
        ...

    def forget(self, adapter: RedisNamespaceAdapter) -> None:
        """``adapter``'s namespace is gone: unsubscribe its channels."""
        ...

    async def remote_count(self, adapter: RedisNamespaceAdapter) -> tuple[int, frozenset[str]]:
        """How many other nodes will answer a request, and the stale nodes left out."""
        ...


class RedisNamespaceAdapter(RequestingAdapter):
    """The adapter of one namespace on one node of a Redis cluster."""

    # Other nodes' broadcasts arrive encoded, without offsets, and a client may come back
    # on another node: recovery would report sockets as recovered that missed packets.
    supports_recovery = False
    node: Node

    def __init__(self, node: Node, nsp: AdapterNamespace) -> None:
        super().__init__(node, nsp)
        self.channels = codec.Channels(node.key, nsp.name)

    def close(self) -> None:
        """The namespace is gone (an empty dynamic child removed): its channels are
        unsubscribed; requests still waiting end at their timeout."""
        self.node.forget(self)

    # -- publishing --------------------------------------------------------------------------

    def _publish_request(self, message: dict[str, Any], msgpack: bool = False) -> None:
        payload = codec.encode_msgpack(message) if msgpack else codec.encode_json(message)
        self.node.publish(self.channels.request, payload)

    def respond(self, message: dict[str, Any], msgpack: bool = False) -> None:
        message["uid"] = self.uid
        try:
            payload = codec.encode_msgpack(message) if msgpack else codec.encode_json(message)
        except TypeError as exc:
            logger.warning("answer to another node cannot be encoded: %s", shown(str(exc)))
            return
        self.node.publish(self.channels.response, payload)

    @staticmethod
    def _opts(opts: BroadcastOptions) -> dict[str, Any]:
        return {"rooms": sorted(opts.rooms), "except": sorted(opts.except_rooms)}

    @staticmethod
    def _flags(opts: BroadcastOptions) -> dict[str, Any]:
        flags: dict[str, Any] = {}
        if opts.volatile:
            flags["volatile"] = True
        if not opts.compress:
            flags["compress"] = False
        return flags

    # -- the Adapter API ---------------------------------------------------------------------

    def broadcast(
        self,
        parts: Sequence[str | bytes],
        opts: BroadcastOptions,
        packet: Sequence[Any] = (),
    ) -> int:
        if not opts.local and packet and not self._only_local_socket(opts):
            payload = codec.encode_broadcast(
                self.uid,
                self.name,
                list(packet),
                sorted(opts.rooms),
                sorted(opts.except_rooms),
                self._flags(opts),
            )
            self.node.publish(self.channels.broadcast(opts.rooms), payload)
        return super().broadcast(parts, opts)

    def _only_local_socket(self, opts: BroadcastOptions) -> bool:
        """A broadcast to one socket of this node (``socket.volatile.emit``...): socket ids
        are unique in the cluster, so no other node has that room."""
        if len(opts.rooms) != 1:
            return False
        (room,) = opts.rooms
        return room in self.sockets

    def add_sockets(self, opts: BroadcastOptions, rooms: Iterable[str]) -> None:
        rooms = list(rooms)
        if not opts.local:
            self._publish_request(
                {"uid": self.uid, "type": RequestType.REMOTE_JOIN, "opts": self._opts(opts),
                 "rooms": rooms}
            )  # fmt: skip
        super().add_sockets(opts, rooms)

    def del_sockets(self, opts: BroadcastOptions, rooms: Iterable[str]) -> None:
        rooms = list(rooms)
        if not opts.local:
            self._publish_request(
                {"uid": self.uid, "type": RequestType.REMOTE_LEAVE, "opts": self._opts(opts),
                 "rooms": rooms}
            )  # fmt: skip
        super().del_sockets(opts, rooms)

    def disconnect_sockets(self, opts: BroadcastOptions, close: bool) -> None:
        if not opts.local:
            self._publish_request(
                {"uid": self.uid, "type": RequestType.REMOTE_DISCONNECT,
                 "opts": self._opts(opts), "close": close}
            )  # fmt: skip
        super().disconnect_sockets(opts, close)

    # -- the requests' hooks (RequestingAdapter) -----------------------------------------

    async def _count(self) -> tuple[int, frozenset[str]]:
        return await self.node.remote_count(self)

    def _new_id(self) -> str:
        return new_uid()

    def _send_request(self, rid: str | None, kind: int, data: dict[str, Any]) -> None:
        message = {"uid": self.uid, "type": kind, **data}
        if rid is not None:
            message["requestId"] = rid
        # a broadcast with acks is msgpack, as Node's (its packet may hold binary)
        self._publish_request(message, msgpack=kind == RequestType.BROADCAST)

    def _fetch_request(self, opts: BroadcastOptions) -> tuple[int, dict[str, Any], float]:
        return RequestType.REMOTE_FETCH, {"opts": self._opts(opts)}, self.node.requests_timeout

    def _emit_request(self, packet: list[Any]) -> Request:
        return RequestType.SERVER_SIDE_EMIT, {"data": packet}

    def _ack_request(self, packet: list[Any], opts: BroadcastOptions, ms: int) -> Request:
        flags: dict[str, Any] = self._flags(opts)
        flags["timeout"] = ms
        return RequestType.BROADCAST, {
            "packet": {"type": 2, "data": packet, "nsp": self.name},
            "opts": {**self._opts(opts), "flags": flags},
        }

    # -- what other nodes send ---------------------------------------------------------------

    def on_broadcast(self, channel: str, payload: bytes) -> None:
        room = self.channels.room_of(channel)
        if room is None or (room and not self.has_room(room)):
            return  # no local member: not even decoded
        message = codec.decode_broadcast(payload)
        if message.uid == self.uid or message.nsp != self.name:
            return
        data = message.data
        if codec.may_need_conversion(payload):
            data = codec.for_client(data)
        try:
            parts = encode_event(self.name, data[0], data[1:])
        except ProtocolError as exc:
            raise codec.CodecError(f"broadcast cannot be sent to clients: {exc}") from exc
        opts = BroadcastOptions(
            rooms=message.rooms,
            except_rooms=message.except_rooms,
            volatile=message.volatile,
            compress=message.compress,
            local=True,
        )
        super().broadcast(parts, opts)
        if self.outgoing_watchers:  # (one attribute test while no socket listens)
            notify_outgoing(self, opts, data[0], data[1:])

    def on_request(self, payload: bytes) -> None:
        answers.answer(self, payload)

    def on_response(self, payload: bytes) -> None:
        message = codec.decode(payload)
        if not isinstance(message, dict):
            raise codec.CodecError("a response is a map")
        rid = message.get("requestId")
        pending = self.pending.get(rid) if isinstance(rid, str) else None
        if pending is None:
            return
        kind = message.get("type")
        sink = pending.sink
        if sink is not None:
            if kind == RequestType.BROADCAST_CLIENT_COUNT:
                count = message.get("clientCount")
                if type(count) is int and count >= 0:
                    pending.answer(message.get("uid"))
                    sink.client_count(count)
            elif kind == RequestType.BROADCAST_ACK:
                sink.reply(message.get("packet"))
        elif kind == RequestType.SERVER_SIDE_EMIT:
            pending.responses.append(message.get("data"))
            pending.answer(message.get("uid"))
        elif "sockets" in message:
            sockets = message["sockets"]
            if isinstance(sockets, list):
                pending.responses.extend(self._remote_socket(s) for s in sockets)
                pending.answer(message.get("uid"))

    def _remote_socket(self, described: Any) -> RemoteSocket:
        if not isinstance(described, dict) or not isinstance(described.get("id"), str):
            raise codec.CodecError("a fetched socket is {id, handshake, rooms, data}")
        return RemoteSocket(
            self,
            Sid(described["id"]),
            described.get("handshake"),
            codec.rooms_of(described.get("rooms")),
            described.get("data"),
        )

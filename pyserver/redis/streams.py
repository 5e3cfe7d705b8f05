"""The wire format of Node's ``@socket.io/redis-streams-adapter`` 0.3 (and of the cluster
protocol of ``socket.io-adapter``'s ``ClusterAdapter``, which it and the sharded adapter
speak), sans-IO: values in, bytes out, and back. No Redis, no trio, no clock.

* A cluster message is ``{uid, nsp, type, data}`` (:class:`MessageType`).
* **Stream entries** (``XADD <stream> MAXLEN ~ <maxLen> * uid <uid> nsp <nsp> type <t> data
  <d>``) carry broadcasts without acks and room operations (join, leave, disconnect). ``type``
  is the number as a string; ``data`` is ``JSON.stringify(data)``, or base64 of msgpack when
  the type may carry binary and the data holds bytes (:func:`entry_fields`). Decoding:
  ``data`` starting with ``{`` is JSON, anything else base64 + msgpack (:func:`decode_entry`).
  The entry id (``<ms>-<seq>``) is the connection state recovery offset.
* **Pub/sub** carries everything else (requests, broadcasts with acks, responses): the whole
  message as one msgpack map (:func:`encode_message`, :func:`decode_message`), on
  ``<prefix>#<nsp>#`` (public) and ``<prefix>#<nsp>#<uid>#`` (responses to node ``uid``).
* **Sessions** of connection state recovery: ``SET <sessionKeyPrefix><pid>`` to base64 of
  msgpack ``{sid, pid, rooms, data}`` (:func:`encode_session`, :func:`decode_session`).
* **Sharded pub/sub** (Node's ``createShardedAdapter``): every message on ``SPUBLISH``, as
  JSON ``{type, data, uid, nsp}`` unless it holds binary (then msgpack) (:func:`encode_sharded`,
  :func:`decode_sharded`); a broadcast to one room that is no socket id goes to
  ``<prefix>#<nsp>#<room>#``.
* :func:`valid_offset`, :func:`next_offset` (the exclusive start of ``XRANGE``, as Node
  computes it) and :func:`should_include` (which stored broadcasts a session missed).

Failures to decode are :class:`~pyserver.redis.codec.CodecError` (the publisher misbehaved).
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from pyserver.redis.codec import CodecError, _buffers, _unpack, encode_json, encode_msgpack

__all__ = [
    "ClusterMessage",
    "MessageType",
    "Session",
    "channel",
    "decode_entry",
    "decode_message",
    "decode_options",
    "decode_session",
    "decode_sharded",
    "encode_message",
    "encode_options",
    "encode_session",
    "encode_sharded",
    "entry_fields",
    "has_binary",
    "is_room_operation",
    "looks_like_sid",
    "next_offset",
    "should_include",
    "valid_offset",
]


class MessageType(enum.IntEnum):
    """``socket.io-adapter``'s ``MessageType`` (cluster-adapter.ts)."""

    INITIAL_HEARTBEAT = 1
    HEARTBEAT = 2
    BROADCAST = 3
    SOCKETS_JOIN = 4
    SOCKETS_LEAVE = 5
    DISCONNECT_SOCKETS = 6
    FETCH_SOCKETS = 7
    FETCH_SOCKETS_RESPONSE = 8
    SERVER_SIDE_EMIT = 9
    SERVER_SIDE_EMIT_RESPONSE = 10
    BROADCAST_CLIENT_COUNT = 11
    BROADCAST_ACK = 12
    ADAPTER_CLOSE = 13


_MAY_HOLD_BINARY: Final = frozenset(
    {
        MessageType.BROADCAST,
        MessageType.FETCH_SOCKETS_RESPONSE,
        MessageType.SERVER_SIDE_EMIT,
        MessageType.SERVER_SIDE_EMIT_RESPONSE,
        MessageType.BROADCAST_ACK,
    }
)

_OFFSET: Final = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")
_MAX_OFFSET_CHARS: Final = 41  # two 64-bit integers (20 digits at most) and the dash


@dataclass(frozen=True, slots=True)
class ClusterMessage:
    """One message between nodes (a stream entry or a pub/sub message)."""

    uid: str
    nsp: str
    type: int
    data: Any


def channel(prefix: str, nsp: str, uid: str | None = None) -> str:
    """``<prefix>#<nsp>#`` (the public channel), or ``<prefix>#<nsp>#<uid>#`` (node
    ``uid``'s responses)."""
    return f"{prefix}#{nsp}#" if uid is None else f"{prefix}#{nsp}#{uid}#"


def has_binary(value: Any) -> bool:
    """Whether ``value`` holds bytes anywhere (socket.io's ``hasBinary``)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return True
    if isinstance(value, list | tuple):
        return any(has_binary(v) for v in value)
    if isinstance(value, dict):
        return any(has_binary(v) for v in value.values())
    return False


# -- options -----------------------------------------------------------------------------


def encode_options(
    rooms: Iterable[str], except_rooms: Iterable[str], flags: Mapping[str, Any]
) -> dict[str, Any]:
    """``{rooms, except, flags}`` (``encodeOptions``: the sets as lists)."""
    return {"rooms": sorted(rooms), "except": sorted(except_rooms), "flags": dict(flags)}


def _room_names(value: Any) -> frozenset[str]:
    if not isinstance(value, list | tuple):
        return frozenset()
    names = set()
    for room in value:
        if isinstance(room, str):
            names.add(room)
        elif type(room) is int:
            names.add(str(room))
    return frozenset(names)


def decode_options(value: Any) -> tuple[frozenset[str], frozenset[str], dict[str, Any]]:
    """``(rooms, except, flags)`` of an ``opts`` map (anything missing is empty)."""
    if not isinstance(value, dict):
        return frozenset(), frozenset(), {}
    flags = value.get("flags")
    return (
        _room_names(value.get("rooms")),
        _room_names(value.get("except")),
        flags if isinstance(flags, dict) else {},
    )


# -- stream entries ----------------------------------------------------------------------


def entry_fields(message: ClusterMessage) -> list[bytes]:
    """The field/value pairs of the stream entry for ``message``, in Node's order."""
    fields = [b"uid", message.uid.encode(), b"nsp", message.nsp.encode()]
    fields += [b"type", str(int(message.type)).encode()]
    if message.data is not None:
        if message.type in _MAY_HOLD_BINARY and has_binary(message.data):
            data = base64.b64encode(encode_msgpack(message.data))
        else:
            data = encode_json(message.data)
        fields += [b"data", data]
    return fields


def decode_entry(fields: Mapping[bytes, bytes]) -> ClusterMessage | None:
    """The message of a stream entry; None for an entry without ``nsp`` (Node skips those)."""
    nsp = fields.get(b"nsp")
    if nsp is None:
        return None
    try:
        uid = fields.get(b"uid", b"").decode()
        kind = int(fields.get(b"type", b""))
        raw = fields.get(b"data")
        data: Any = None
        if raw:
            if raw[:1] == b"{":
                data = _buffers(json.loads(raw))
            else:
                data = _unpack(base64.b64decode(raw, validate=True))
        return ClusterMessage(uid, nsp.decode(), kind, data)
    except (ValueError, TypeError, RecursionError, binascii.Error) as exc:
        raise CodecError(f"undecodable stream entry: {exc}") from exc


# -- pub/sub -----------------------------------------------------------------------------


def encode_message(message: ClusterMessage) -> bytes:
    """A pub/sub message: one msgpack map ``{uid, nsp, type, data}``."""
    value: dict[str, Any] = {"uid": message.uid, "nsp": message.nsp, "type": int(message.type)}
    if message.data is not None:
        value["data"] = message.data
    return encode_msgpack(value)


def decode_message(payload: bytes) -> ClusterMessage:
    try:
        value = _unpack(payload)
    except (ValueError, TypeError, RecursionError) as exc:
        raise CodecError(f"undecodable cluster message ({len(payload)} bytes): {exc}") from exc
    if not isinstance(value, dict) or type(value.get("type")) is not int:
        raise CodecError("a cluster message is a map {uid, nsp, type, data}")
    uid = value.get("uid")
    nsp = value.get("nsp")
    return ClusterMessage(
        uid if isinstance(uid, str) else "",
        nsp if isinstance(nsp, str) else "/",
        value["type"],
        value.get("data"),
    )


# -- sharded pub/sub (createShardedAdapter) ---------------------------------------------


def encode_sharded(message: ClusterMessage) -> bytes:
    """A message as Node's sharded adapter publishes it: ``JSON.stringify({type, data, uid,
    nsp})``, or the same map in msgpack when the type may carry binary and the data does."""
    value: dict[str, Any] = {"type": int(message.type)}
    if message.data is not None:
        value["data"] = message.data
    value["uid"] = message.uid
    value["nsp"] = message.nsp
    if message.type in _MAY_HOLD_BINARY and has_binary(message.data):
        return encode_msgpack(value)
    return encode_json(value)


def decode_sharded(payload: bytes) -> ClusterMessage:
    """A sharded adapter's message: JSON when it starts with ``{``, msgpack otherwise."""
    if payload[:1] != b"{":
        return decode_message(payload)
    try:
        value = _buffers(json.loads(payload))
    except (ValueError, RecursionError) as exc:
        raise CodecError(f"undecodable cluster message ({len(payload)} bytes): {exc}") from exc
    if not isinstance(value, dict) or type(value.get("type")) is not int:
        raise CodecError("a cluster message is a map {type, data, uid, nsp}")
    uid, nsp = value.get("uid"), value.get("nsp")
    return ClusterMessage(
        uid if isinstance(uid, str) else "",
        nsp if isinstance(nsp, str) else "/",
        value["type"],
        value.get("data"),
    )


def is_room_operation(message: ClusterMessage) -> bool:
    """A broadcast without acks or a room operation (what the streams adapter appends to its
    stream; the rest are requests and answers)."""
    kind = message.type
    if kind == MessageType.BROADCAST:
        return not (isinstance(message.data, dict) and "requestId" in message.data)
    return kind in (
        MessageType.SOCKETS_JOIN,
        MessageType.SOCKETS_LEAVE,
        MessageType.DISCONNECT_SOCKETS,
    )


def looks_like_sid(room: str) -> bool:
    """Node's sharded adapter's test for a socket's own room (a base64id: 20 characters)."""
    return len(room) == 20


# -- sessions and offsets ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Session:
    """A persisted socket: its id, private id, rooms (its own included) and data."""

    sid: str
    pid: str
    rooms: tuple[str, ...]
    data: Any


def encode_session(sid: str, pid: str, rooms: Iterable[str], data: Any) -> bytes:
    """The value of ``SET sio:session:<pid>``: base64 of msgpack ``{sid, pid, rooms, data}``."""
    return base64.b64encode(
        encode_msgpack({"sid": sid, "pid": pid, "rooms": sorted(rooms), "data": data})
    )


def decode_session(raw: bytes) -> Session:
    try:
        value = _unpack(base64.b64decode(raw, validate=True))
    except (ValueError, TypeError, RecursionError, binascii.Error) as exc:
        raise CodecError(f"undecodable session: {exc}") from exc
    if not isinstance(value, dict):
        raise CodecError("a session is a map {sid, pid, rooms, data}")
    sid, pid = value.get("sid"), value.get("pid")
    if not isinstance(sid, str) or not isinstance(pid, str):
        raise CodecError("a session has a sid and a pid")
    return Session(sid, pid, tuple(sorted(_room_names(value.get("rooms")))), value.get("data"))


def valid_offset(offset: str) -> bool:
    """Whether ``offset`` is a stream entry id (``<ms>-<seq>``), as Node checks it (and each
    part no longer than a 64-bit integer's 20 digits, as Redis takes it)."""
    return len(offset) <= _MAX_OFFSET_CHARS and _OFFSET.fullmatch(offset) is not None


def next_offset(offset: str) -> str:
    """The smallest id after ``offset`` (an exclusive ``XRANGE`` start on any Redis)."""
    ms, _, seq = offset.partition("-")
    return f"{ms}-{int(seq) + 1}"


def offset_key(offset: str) -> tuple[int, int]:
    """An entry id as a sortable pair."""
    ms, _, seq = offset.partition("-")
    return int(ms), int(seq)


def should_include(
    session_rooms: Iterable[str], rooms: Sequence[str] | frozenset[str], except_rooms: Any
) -> bool:
    """Whether a broadcast to ``rooms`` minus ``except_rooms`` reached a socket in
    ``session_rooms`` (``shouldIncludePacket``)."""
    mine = set(session_rooms)
    included = not rooms or not mine.isdisjoint(rooms)
    return included and mine.isdisjoint(except_rooms)

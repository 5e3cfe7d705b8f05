"""The wire format of Node's ``@socket.io/redis-adapter`` 8.x (classic pub/sub), sans-IO.

Bytes in, plain values out, and back; no Redis, no trio. What goes where:

* Channels, for a ``key`` (default ``"socket.io"``) and a namespace ``nsp``: broadcasts on
  ``<key>#<nsp>#`` (no room, or several) and ``<key>#<nsp>#<room>#`` (exactly one room), all
  received through ``PSUBSCRIBE <key>#<nsp>#*``; requests on ``<key>-request#<nsp>#``;
  responses on ``<key>-response#<nsp>#`` (and ``...#<uid>#``, which a responder may use).
  Python nodes also publish heartbeats on ``<key>-heartbeat#``, which Node never reads.
* A broadcast is a msgpack array ``[uid, {type: 2, data: [event, *args], nsp}, {rooms,
  except, flags}]``.
* Requests and responses are JSON, except the BROADCAST request (7) and the BROADCAST_ACK
  response (9), which are msgpack maps. Whatever arrives is decoded by its first byte: ``{``
  is JSON, anything else msgpack.
* msgpack as Node's notepack.io 3 writes it: ``bytes`` are ``bin``, a ``datetime`` the
  timestamp extension (-1), ``ExtType(0, b"\\x00")`` is JavaScript's ``undefined`` (None),
  other ext 0 payloads are ArrayBuffers (bytes). JSON requests carry Node Buffers as
  ``{"type": "Buffer", "data": [...]}``: they become bytes (and bytes are written that way).

Every decoding failure is a :class:`CodecError` (the publisher misbehaved: drop the message).
"""

from __future__ import annotations

import datetime as dt
import enum
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import msgpack  # type: ignore[import-untyped]

from pyserver.errors import RemoteProtocolError

__all__ = [
    "Channels",
    "CodecError",
    "RemoteBroadcast",
    "RequestType",
    "decode",
    "decode_broadcast",
    "encode_broadcast",
    "encode_json",
    "encode_msgpack",
    "for_client",
    "room_name",
]


class RequestType(enum.IntEnum):
    """The ``type`` of a request (and of some responses)."""

    SOCKETS = 0
    ALL_ROOMS = 1
    REMOTE_JOIN = 2
    REMOTE_LEAVE = 3
    REMOTE_DISCONNECT = 4
    REMOTE_FETCH = 5
    SERVER_SIDE_EMIT = 6
    BROADCAST = 7
    BROADCAST_CLIENT_COUNT = 8
    BROADCAST_ACK = 9


class CodecError(RemoteProtocolError, ValueError):
    """A message from Redis that is not in the adapter's format (another node, the peer,
    misbehaved: the answer is dropping the message)."""


_GLOB: Final = str.maketrans({c: "\\" + c for c in "*?[]\\"})


@dataclass(frozen=True, slots=True)
class Channels:
    """The channels of one namespace."""

    key: str
    nsp: str

    @property
    def broadcast_prefix(self) -> str:
        return f"{self.key}#{self.nsp}#"

    @property
    def pattern(self) -> str:
        """The PSUBSCRIBE pattern of every broadcast channel (glob characters escaped)."""
        return self.broadcast_prefix.translate(_GLOB) + "*"

    @property
    def request(self) -> str:
        return f"{self.key}-request#{self.nsp}#"

    @property
    def response(self) -> str:
        return f"{self.key}-response#{self.nsp}#"

    def specific_response(self, uid: str) -> str:
        return f"{self.key}-response#{self.nsp}#{uid}#"

    def broadcast(self, rooms: Iterable[str]) -> str:
        """Where a broadcast to ``rooms`` goes: the room's channel for exactly one room."""
        rooms = list(rooms)
        if len(rooms) == 1:
            return f"{self.broadcast_prefix}{rooms[0]}#"
        return self.broadcast_prefix

    def room_of(self, channel: str) -> str | None:
        """The room in a broadcast channel name ("" for none), None if not ours."""
        prefix = self.broadcast_prefix
        if not channel.startswith(prefix) or not channel.endswith("#"):
            return None
        return channel[len(prefix) : -1]


def heartbeat_channel(key: str) -> str:
    return f"{key}-heartbeat#"


# -- msgpack -----------------------------------------------------------------------------


def _ext_hook(code: int, data: bytes) -> Any:
    if code == 0:
        return None if data == b"\x00" else data  # undefined, or an ArrayBuffer
    return msgpack.ExtType(code, data)


def encode_msgpack(value: Any) -> bytes:
    """msgpack as notepack.io decodes it (bytes as bin, aware datetimes as timestamps)."""
    try:
        return msgpack.packb(value, use_bin_type=True, datetime=True)  # type: ignore[no-any-return]
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(f"cannot be sent to other nodes as msgpack: {exc}") from exc


def _unpack(payload: bytes) -> Any:
    return msgpack.unpackb(
        payload, raw=False, strict_map_key=False, timestamp=3, ext_hook=_ext_hook
    )


# -- JSON --------------------------------------------------------------------------------


def _json_default(value: object) -> object:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"type": "Buffer", "data": list(bytes(value))}
    if isinstance(value, dt.datetime):
        return js_iso(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


_ENCODER: Final = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_json_default
)


def encode_json(value: Any) -> bytes:
    """Compact JSON (Node's ``JSON.stringify``: bytes as ``{"type": "Buffer", ...}``)."""
    try:
        return _ENCODER.encode(value).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        raise TypeError(f"cannot be sent to other nodes as JSON: {exc}") from exc


def _buffers(value: Any) -> Any:
    """Node Buffers in decoded JSON (``{"type": "Buffer", "data": [...]}``) become bytes."""
    if isinstance(value, list):
        return [_buffers(v) for v in value]
    if isinstance(value, dict):
        if len(value) == 2 and value.get("type") == "Buffer":
            data = value.get("data")
            if isinstance(data, list) and all(type(b) is int and 0 <= b < 256 for b in data):
                return bytes(data)
        return {k: _buffers(v) for k, v in value.items()}
    return value


def decode(payload: bytes) -> Any:
    """A request or a response: JSON when it starts with ``{``, otherwise msgpack."""
    try:
        if payload[:1] == b"{":
            return _buffers(json.loads(payload))
        return _unpack(payload)
    except (ValueError, TypeError, RecursionError, msgpack.ExtraData) as exc:
        raise CodecError(f"undecodable message ({len(payload)} bytes): {exc}") from exc


# -- broadcasts --------------------------------------------------------------------------


def encode_broadcast(
    uid: str,
    nsp: str,
    data: list[Any],
    rooms: Iterable[str],
    except_rooms: Iterable[str],
    flags: dict[str, Any],
) -> bytes:
    """``[uid, {type: 2, data, nsp}, {rooms, except, flags}]`` in msgpack."""
    return encode_msgpack(
        [
            uid,
            {"type": 2, "data": data, "nsp": nsp},
            {"rooms": list(rooms), "except": list(except_rooms), "flags": flags},
        ]
    )


@dataclass(frozen=True, slots=True)
class RemoteBroadcast:
    """A broadcast another node published."""

    uid: str
    nsp: str
    data: list[Any]
    """``[event, *args]``, as decoded (see :func:`for_client` before emitting it)."""
    rooms: frozenset[str]
    except_rooms: frozenset[str]
    volatile: bool
    compress: bool


def room_name(value: Any) -> str | None:
    """A room as a string (Node may send a number); None for anything else."""
    if isinstance(value, str):
        return value
    if type(value) is int:
        return str(value)
    if type(value) is float:
        return str(int(value)) if value.is_integer() else repr(value)
    return None


def rooms_of(value: Any) -> frozenset[str]:
    if not isinstance(value, list | tuple):
        return frozenset()
    return frozenset(name for v in value if (name := room_name(v)) is not None)


def packet_data(packet: Any) -> tuple[str, list[Any]]:
    """``(nsp, data)`` of a packet ``{type, data, nsp}``; ``data`` is ``[event, *args]``."""
    if not isinstance(packet, dict):
        raise CodecError("the packet is not a map")
    data = packet.get("data")
    if not isinstance(data, list) or not data or not isinstance(data[0], str):
        raise CodecError("the packet's data is not [event, ...]")
    nsp = packet.get("nsp")
    return (nsp if isinstance(nsp, str) else "/"), data


def decode_broadcast(payload: bytes) -> RemoteBroadcast:
    """``[uid, packet, opts]`` (missing ``nsp`` is "/", missing ``flags`` or rooms empty)."""
    try:
        message = _unpack(payload)
    except (ValueError, TypeError, RecursionError, msgpack.ExtraData) as exc:
        raise CodecError(f"undecodable broadcast ({len(payload)} bytes): {exc}") from exc
    if not isinstance(message, list) or len(message) < 2 or not isinstance(message[0], str):
        raise CodecError("a broadcast is [uid, packet, opts]")
    nsp, data = packet_data(message[1])
    opts = message[2] if len(message) > 2 and isinstance(message[2], dict) else {}
    flags = opts.get("flags")
    if not isinstance(flags, dict):
        flags = {}
    return RemoteBroadcast(
        uid=message[0],
        nsp=nsp,
        data=data,
        rooms=rooms_of(opts.get("rooms")),
        except_rooms=rooms_of(opts.get("except")),
        volatile=bool(flags.get("volatile")),
        compress=flags.get("compress") is not False,
    )


# -- values for Socket.IO clients --------------------------------------------------------


def js_iso(value: dt.datetime) -> str:
    """JavaScript's ``Date.prototype.toISOString`` (what ``JSON.stringify`` writes)."""
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def for_client(value: Any) -> Any:
    """A decoded value as a Socket.IO client gets it from a Node server: dates as ISO
    strings (``JSON.stringify``), unknown extensions as null, map keys as strings."""
    if isinstance(value, msgpack.ExtType):  # a tuple: checked first
        return None
    if isinstance(value, list | tuple):
        return [for_client(v) for v in value]
    if isinstance(value, dict):
        return {
            (k if k is None or isinstance(k, str | int | float) else str(k)): for_client(v)
            for k, v in value.items()
        }
    if isinstance(value, dt.datetime):
        return js_iso(value)
    return value


_EXT_MARKERS: Final = (b"\xc7", b"\xc8", b"\xc9", b"\xd4", b"\xd5", b"\xd6", b"\xd7", b"\xd8")


def may_need_conversion(payload: bytes) -> bool:
    """False when ``payload`` cannot hold an extension (no date, no undefined): its decoded
    data then needs no :func:`for_client` walk (a quick byte scan; true positives and
    false positives both just walk)."""
    return any(marker in payload for marker in _EXT_MARKERS)

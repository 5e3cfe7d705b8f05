"""The msgpack parser: what ``socket.io-msgpack-parser`` 3.x speaks (sans-IO).

``Server(parser="msgpack")`` and clients configured with that parser (Node:
``io(url, {parser: require("socket.io-msgpack-parser")})``, browsers: the
``socket.io.msgpack.min.js`` bundle) talk in it; both ends must use it, there is no
negotiation. The wire (read from the parser 3.0.2 and notepack.io 2.2, and captured live):

* One Engine.IO **binary** message per Socket.IO packet: the msgpack map
  ``{type, nsp, data?, id?}`` (over WebSocket a binary frame with no type prefix; over
  long-polling ``b`` + base64, as any binary message). Only types 0 to 4: there are no
  attachments, bytes travel inside as msgpack ``bin``. Engine.IO's own packets stay text.
* Checks on what clients send (the parser's ``checkPacket``): ``type`` an integer 0..4,
  ``nsp`` a string; CONNECT ``data`` absent or a map; DISCONNECT without ``data``; EVENT and
  ACK ``data`` an array (an event's first item a string); ``id`` absent or an integer.
  Unknown keys (clients add ``options``) are ignored. Anything else, and any text message, is
  a :class:`~pyserver.socketio.packets.PacketError` (the connection closes: "parse error").
* notepack's ``undefined`` is the ext type 0 of one zero byte (a client's CONNECT carries
  ``data: undefined``): read as ``None`` (a packet's ``data`` or ``id`` of None is absent).
  Its ``Date`` is ext type 0 of 8 bytes, a big-endian int64 of milliseconds: read as an aware
  UTC ``datetime``, and a ``datetime`` is written so (a naive one is taken as UTC). Other
  ext types are refused.
* What the server writes has no ``undefined``: a key without a value is left out (``pid``
  when connection state recovery is off, ``id`` without an ack).
"""

from __future__ import annotations

import datetime
import struct
from collections.abc import Sequence
from typing import Any

import msgpack  # type: ignore[import-untyped]

from pyserver.errors import LocalProtocolError
from pyserver.socketio.decoder import DecoderState
from pyserver.socketio.packets import (
    MAX_ACK_ID,
    RESERVED_EVENTS,
    Ack,
    Connect,
    ConnectError,
    Disconnect,
    Event,
    Packet,
    PacketError,
    PacketType,
)
from pyserver.socketio.parsers import (
    PayloadDecoder,
    check_event_name,
    decode_builtin,
    too_large,
)

__all__ = ["MsgpackDecoder", "MsgpackParser"]

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_INT64 = struct.Struct(">q")
_ABSENT = object()


def _ext_hook(code: int, data: bytes) -> Any:
    if code == 0:
        if data == b"\0":  # undefined
            return None
        if len(data) == 8:
            ms = _INT64.unpack(data)[0]
            return _EPOCH + datetime.timedelta(milliseconds=ms)
    raise PacketError(f"unsupported msgpack extension type {code}")


def _default(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        delta = value - _EPOCH
        ms = (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
        return msgpack.ExtType(0, _INT64.pack(ms))
    if isinstance(value, memoryview):
        return value.tobytes()
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    raise TypeError(f"Object of type {type(value).__name__} cannot be sent as msgpack")


_PACKER_OPTIONS: dict[str, Any] = {"default": _default, "use_bin_type": True, "datetime": False}


def _pack(obj: Any) -> bytes:
    try:
        return msgpack.packb(obj, **_PACKER_OPTIONS)  # type: ignore[no-any-return]
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise LocalProtocolError(f"data cannot be sent as msgpack: {exc}") from exc


def _field(packet: dict[Any, Any], key: str) -> Any:
    value = packet.get(key)
    return _ABSENT if value is None else value


class MsgpackDecoder:
    """Decodes a connection's binary messages into packets (one message, one packet)."""

    __slots__ = ("_state",)

    def __init__(self) -> None:
        self._state = DecoderState.AWAITING_PACKET

    @property
    def state(self) -> DecoderState:
        return self._state

    def _fail(self, message: str) -> PacketError:
        self._state = DecoderState.FAILED
        return PacketError(message)

    def receive_text_event(self, text: str) -> tuple[str, list[Any], int | None] | Packet | None:
        raise self._fail("text message: the msgpack parser expects binary messages")

    def receive_text(self, text: str) -> Packet | None:
        raise self._fail("text message: the msgpack parser expects binary messages")

    def receive_binary(self, data: bytes | bytearray | memoryview) -> Packet | None:
        if self._state is DecoderState.FAILED:
            raise LocalProtocolError("the decoder failed earlier; close the connection")
        try:
            # (the message's size is bounded by Engine.IO's max payload already)
            packet = msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)
        except PacketError as exc:
            raise self._fail(str(exc)) from None
        except (ValueError, TypeError, msgpack.UnpackException):  # (a list as a map key...)
            raise self._fail("invalid msgpack payload") from None
        try:
            return _check(packet)
        except PacketError as exc:
            raise self._fail(str(exc)) from None


def _check(packet: Any) -> Packet:
    if type(packet) is not dict:
        raise PacketError("packet is not a map")
    ptype = packet.get("type")
    namespace = packet.get("nsp")
    if type(ptype) is not int or not 0 <= ptype <= 4:
        raise PacketError("bad packet type")
    if type(namespace) is not str:
        raise PacketError("namespace is not a string")
    data = _field(packet, "data")
    ack_id = _field(packet, "id")
    if ack_id is _ABSENT:
        ack_id = None
    elif type(ack_id) is not int or not 0 <= ack_id <= MAX_ACK_ID:
        raise PacketError("bad ack id")
    if ptype == PacketType.EVENT:
        if type(data) is not list or not data or type(data[0]) is not str:
            raise PacketError("event payload is not an array starting with a name")
        if data[0] in RESERVED_EVENTS:
            raise PacketError(f"reserved event name {data[0]!r}")
        return Event(namespace, data[0], data[1:], ack_id)
    if ptype == PacketType.ACK:
        if type(data) is not list:
            raise PacketError("ack payload is not an array")
        if ack_id is None:
            raise PacketError("ack without ack id")
        return Ack(namespace, ack_id, data)
    if ack_id is not None:
        raise PacketError("unexpected ack id")
    if ptype == PacketType.CONNECT:
        if data is _ABSENT:
            return Connect(namespace)
        if type(data) is not dict:
            raise PacketError("connect payload is not a map")
        return Connect(namespace, data)
    if ptype == PacketType.DISCONNECT:
        if data is not _ABSENT:
            raise PacketError("disconnect with a payload")
        return Disconnect(namespace)
    return ConnectError(namespace, data if type(data) is str else "")


class MsgpackParser:
    """``socket.io-msgpack-parser`` 3.x (module docstring)."""

    name = "msgpack"

    def decoder(self, max_attachments: int, max_attachment_bytes: int) -> PayloadDecoder:
        # a packet is one message, bounded by Engine.IO's max payload; its bytes are inside
        return MsgpackDecoder()

    def encode_event(
        self,
        namespace: str,
        event: str,
        args: Sequence[Any] = (),
        ack_id: int | None = None,
        *,
        max_bytes: int | None = None,
    ) -> list[str | bytes]:
        check_event_name(event)
        packet: dict[str, Any] = {"type": 2, "nsp": namespace, "data": [event, *args]}
        if ack_id is not None:
            packet["id"] = ack_id
        data = _pack(packet)
        if max_bytes is not None and len(data) > max_bytes:
            raise too_large(len(data), max_bytes)
        return [data]

    def encode_ack(
        self, namespace: str, ack_id: int, args: Sequence[Any] = (), *, max_bytes: int | None = None
    ) -> list[str | bytes]:
        if ack_id is None:
            raise LocalProtocolError("an ack needs the ack id of the event it answers")
        data = _pack({"type": 3, "nsp": namespace, "data": list(args), "id": ack_id})
        if max_bytes is not None and len(data) > max_bytes:
            raise too_large(len(data), max_bytes)
        return [data]

    def encode_connect(self, namespace: str, sid: str, pid: str | None = None) -> bytes:
        payload = {"sid": sid} if pid is None else {"sid": sid, "pid": pid}
        return _pack({"type": 0, "nsp": namespace, "data": payload})

    def encode_connect_error(self, namespace: str, message: str, data: Any = None) -> bytes:
        payload = {"message": message} if data is None else {"message": message, "data": data}
        return _pack({"type": 4, "nsp": namespace, "data": payload})

    def encode_disconnect(self, namespace: str) -> bytes:
        return _pack({"type": 1, "nsp": namespace})

    def transcode(self, parts: Sequence[str | bytes]) -> list[str | bytes]:
        """A packet of the built-in parser (``[text, *attachments]``, what the Redis adapters
        make of another node's broadcast) as one msgpack message."""
        ptype, namespace, ack_id, payload = decode_builtin(parts)
        packet: dict[str, Any] = {"type": int(ptype), "nsp": namespace}
        if payload is not None:
            packet["data"] = payload
        if ack_id is not None:
            packet["id"] = ack_id
        return [_pack(packet)]

    def __repr__(self) -> str:
        return "<MsgpackParser>"

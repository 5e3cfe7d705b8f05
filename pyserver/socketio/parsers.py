"""Socket.IO parsers other than the built-in JSON one (sans-IO): how packets become Engine.IO
messages and back.

The built-in parser (:mod:`pyserver.socketio.packets` and :mod:`pyserver.socketio.decoder`)
is the default and stays the fast path: with it, nothing here is used. ``Server(json=codec)``
and ``Server(parser="msgpack")`` choose a :class:`Parser`:

* :class:`JSONParser` speaks the same wire format (socket.io-parser 4: a text packet, then the
  binary attachments) with your JSON codec: any object with ``dumps(obj) -> str | bytes`` and
  ``loads(str) -> obj`` (``orjson`` as it is, which also writes ``datetime``, ``UUID`` and
  dataclasses; or :class:`JSONCodec`, the standard library's json with a ``default`` hook,
  e.g. ``JSONCodec(default=extended_default)``). Bytes are still attachments: the codec is
  tried on the data as it is, and when it refuses (as orjson and json refuse ``bytes``),
  again with every ``bytes`` value moved out to an attachment.
* :mod:`pyserver.socketio.msgpack_parser` speaks what ``socket.io-msgpack-parser`` 3.x speaks.

What the default JSON parser cannot write (``datetime``, ``Decimal``, ``UUID``, dataclasses,
sets) raises :class:`~pyserver.errors.LocalProtocolError` naming ``Server(json=...)``.

A parser gives the session's decoder (:meth:`Parser.decoder`) and the encoders; a namespace
encodes its emits and broadcasts with ``parser.encode_event`` (once per broadcast), and
:meth:`Parser.transcode` turns packets encoded by the built-in parser (the Redis adapters
re-encode what other nodes send with it) into this parser's messages, once per broadcast.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import json
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from pyserver.errors import LocalProtocolError
from pyserver.socketio.binary import BINARY_TYPES
from pyserver.socketio.decoder import DecoderState, PacketDecoder
from pyserver.socketio.packets import (
    RESERVED_EVENTS,
    Ack,
    Connect,
    ConnectError,
    Disconnect,
    Event,
    Packet,
    PacketError,
    PacketTooLarge,
    PacketType,
    encode_header,
)

__all__ = [
    "JSONCodec",
    "JSONParser",
    "Parser",
    "PayloadDecoder",
    "extended_default",
]


class PayloadDecoder(Protocol):
    """What a session needs of a parser's decoder (:class:`PacketDecoder` is one)."""

    def receive_text_event(self, text: str) -> tuple[str, list[Any], int | None] | Packet | None:
        """A text message: an EVENT on "/" as ``(event, args, ack_id)``, another packet,
        or None while attachments must follow."""
        ...

    def receive_text(self, text: str) -> Packet | None: ...

    def receive_binary(self, data: bytes | bytearray | memoryview) -> Packet | None: ...


class Parser(Protocol):
    """A Socket.IO parser: the encoders a server's sessions and namespaces use, and its
    decoder."""

    name: str

    def decoder(self, max_attachments: int, max_attachment_bytes: int) -> PayloadDecoder: ...

    def encode_event(
        self,
        namespace: str,
        event: str,
        args: Sequence[Any] = (),
        ack_id: int | None = None,
        *,
        max_bytes: int | None = None,
    ) -> list[str | bytes]: ...

    def encode_ack(
        self, namespace: str, ack_id: int, args: Sequence[Any] = (), *, max_bytes: int | None = None
    ) -> list[str | bytes]: ...

    def encode_connect(self, namespace: str, sid: str, pid: str | None = None) -> str | bytes: ...

    def encode_connect_error(
        self, namespace: str, message: str, data: Any = None
    ) -> str | bytes: ...

    def encode_disconnect(self, namespace: str) -> str | bytes: ...

    def transcode(self, parts: Sequence[str | bytes]) -> list[str | bytes]:
        """Messages of the built-in parser (``[text, *attachments]``) as this parser's."""
        ...


def check_event_name(event: object) -> None:
    if type(event) is not str or event in RESERVED_EVENTS:
        raise LocalProtocolError(f"{event!r} cannot be emitted (not a string, or reserved)")


def too_large(size: int, max_bytes: int) -> PacketTooLarge:
    return PacketTooLarge(f"packet too large to send: {size} bytes, over {max_bytes}")


# -- JSON with your codec --------------------------------------------------------------------


def extended_default(value: Any) -> Any:
    """A ``default`` hook for :class:`JSONCodec`: ``datetime``/``date``/``time`` as ISO 8601
    strings (what JavaScript's ``Date.toJSON`` writes), ``Decimal`` and ``UUID`` as strings,
    dataclass instances as dicts, enums as their value, sets and frozensets as lists."""
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, set | frozenset):
        return list(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


class JSONCodec:
    """The standard library's json, compact, with a ``default`` hook for what it cannot write
    (``JSONCodec(default=extended_default)``). Bytes are left to the parser (attachments)."""

    def __init__(self, default: Callable[[Any], Any] | None = None) -> None:
        def refuse_bytes(value: Any) -> Any:
            if isinstance(value, BINARY_TYPES) or default is None:
                raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
            return default(value)

        self._encoder = json.JSONEncoder(
            ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=refuse_bytes
        )
        self._decoder = json.JSONDecoder()

    def dumps(self, obj: Any) -> str:
        return self._encoder.encode(obj)

    def loads(self, text: str | bytes) -> Any:
        return self._decoder.decode(text if isinstance(text, str) else bytes(text).decode())


def _with_placeholders(data: Any, attachments: list[bytes]) -> Any:
    """``data`` with every bytes-like value replaced by a placeholder (appended to
    ``attachments`` in serialisation order)."""
    if isinstance(data, BINARY_TYPES):
        attachments.append(data if type(data) is bytes else bytes(data))
        return {"_placeholder": True, "num": len(attachments) - 1}
    if isinstance(data, list | tuple):
        return [_with_placeholders(item, attachments) for item in data]
    if isinstance(data, dict):
        return {key: _with_placeholders(value, attachments) for key, value in data.items()}
    return data


class _CodecDecoder(PacketDecoder):
    """The built-in decoder with the payload parsed by the codec's ``loads``."""

    __slots__ = ("_codec_loads",)

    def __init__(
        self, loads: Callable[[str], Any], max_attachments: int, max_attachment_bytes: int
    ) -> None:
        super().__init__(max_attachments=max_attachments, max_attachment_bytes=max_attachment_bytes)
        self._codec_loads = loads

    def _load(self, text: str) -> Any:
        try:
            return self._codec_loads(text)
        except (ValueError, TypeError, RecursionError):  # (orjson's error is a ValueError)
            raise PacketError("invalid JSON payload") from None

    def receive_text_event(self, text: str) -> tuple[str, list[Any], int | None] | Packet | None:
        if self._state is not DecoderState.AWAITING_PACKET:
            self._check_usable()
            raise self._fail("text packet while attachments were expected")
        try:
            if text.startswith("2["):  # the common case, an EVENT on "/" without ack id
                payload = self._load(text[1:])
                if type(payload) is list and payload and type(name := payload[0]) is str:
                    if name not in RESERVED_EVENTS:
                        return name, payload[1:], None
            return self._decode_text(text)
        except PacketError as exc:
            raise self._fail(str(exc)) from None


class JSONParser:
    """socket.io-parser's wire format with your JSON codec (module docstring)."""

    name = "json"

    def __init__(self, codec: Any) -> None:
        dumps = getattr(codec, "dumps", None)
        loads = getattr(codec, "loads", None)
        if not callable(dumps) or not callable(loads):
            raise TypeError("json= needs an object with dumps(obj) and loads(text) (orjson, json)")
        self.codec = codec
        self._dumps: Callable[[Any], str | bytes] = dumps
        self._loads: Callable[[str], Any] = loads

    def decoder(self, max_attachments: int, max_attachment_bytes: int) -> PayloadDecoder:
        return _CodecDecoder(self._loads, max_attachments, max_attachment_bytes)

    def _text(self, data: Any) -> str:
        out = self._dumps(data)
        return out.decode() if type(out) is bytes else out  # type: ignore[return-value]

    def _encode(self, data: Any, max_bytes: int | None) -> tuple[str, list[bytes]]:
        attachments: list[bytes] = []
        try:
            try:
                text = self._text(data)
            except (TypeError, ValueError):
                walked = _with_placeholders(data, attachments)
                if not attachments:
                    raise
                text = self._text(walked)
        except (TypeError, ValueError, RecursionError) as exc:
            raise LocalProtocolError(
                f"data cannot be sent by the JSON codec {self.codec!r}: {exc}"
            ) from exc
        if max_bytes is not None:
            size = len(text) + sum(len(chunk) for chunk in attachments)
            if size > max_bytes:
                raise too_large(size, max_bytes)
        return text, attachments

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
        text, attachments = self._encode([event, *args], max_bytes)
        if not attachments:
            return [encode_header(PacketType.EVENT, namespace, ack_id, 0) + text]
        head = encode_header(PacketType.BINARY_EVENT, namespace, ack_id, len(attachments))
        return [head + text, *attachments]

    def encode_ack(
        self, namespace: str, ack_id: int, args: Sequence[Any] = (), *, max_bytes: int | None = None
    ) -> list[str | bytes]:
        if ack_id is None:
            raise LocalProtocolError("an ack needs the ack id of the event it answers")
        text, attachments = self._encode(list(args), max_bytes)
        ptype = PacketType.BINARY_ACK if attachments else PacketType.ACK
        return [encode_header(ptype, namespace, ack_id, len(attachments)) + text, *attachments]

    def _text_only(self, data: Any) -> str:
        text, attachments = self._encode(data, None)
        if attachments:
            raise LocalProtocolError("binary data is only allowed in events and acks")
        return text

    def encode_connect(self, namespace: str, sid: str, pid: str | None = None) -> str:
        payload = {"sid": sid} if pid is None else {"sid": sid, "pid": pid}
        return encode_header(PacketType.CONNECT, namespace, None, 0) + self._text_only(payload)

    def encode_connect_error(self, namespace: str, message: str, data: Any = None) -> str:
        payload = {"message": message} if data is None else {"message": message, "data": data}
        head = encode_header(PacketType.CONNECT_ERROR, namespace, None, 0)
        return head + self._text_only(payload)

    def encode_disconnect(self, namespace: str) -> str:
        return encode_header(PacketType.DISCONNECT, namespace, None, 0)

    def transcode(self, parts: Sequence[str | bytes]) -> list[str | bytes]:
        return list(parts)  # the same wire format

    def __repr__(self) -> str:
        return f"<JSONParser {self.codec!r}>"


def decode_builtin(parts: Sequence[str | bytes]) -> tuple[PacketType, str, int | None, Any]:
    """A packet encoded by the built-in parser (``[text, *attachments]``): its type, namespace,
    ack id and payload (bytes back in place), for :meth:`Parser.transcode`."""
    decoder = PacketDecoder(max_attachments=len(parts), max_attachment_bytes=1 << 62)
    text = parts[0]
    assert type(text) is str
    packet = decoder.receive_text(text)
    for chunk in parts[1:]:
        assert type(chunk) is bytes
        packet = decoder.receive_binary(chunk)
    if type(packet) is Event:
        return PacketType.EVENT, packet.namespace, packet.ack_id, [packet.event, *packet.args]
    if type(packet) is Ack:
        return PacketType.ACK, packet.namespace, packet.ack_id, packet.args
    if type(packet) is Connect:
        return PacketType.CONNECT, packet.namespace, None, packet.auth
    if type(packet) is Disconnect:
        return PacketType.DISCONNECT, packet.namespace, None, None
    assert type(packet) is ConnectError
    return PacketType.CONNECT_ERROR, packet.namespace, None, packet.message

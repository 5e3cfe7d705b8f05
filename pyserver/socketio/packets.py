"""The Socket.IO v5 packet codec (sans-IO: strings and bytes in, packets out, and back).

Rules (socket.io-protocol v5, "Packet encoding", and the reference parser's checks):

* A packet is one text message ``<type>[<attachments>-][<namespace>,][<ack id>][<json>]``
  followed, for BINARY_EVENT and BINARY_ACK only, by exactly ``<attachments>`` binary
  messages (see :mod:`pyserver.socketio.binary` for the placeholders).
* The namespace is written only when it is not ``"/"``; it starts with ``/`` and ends at the
  first ``,`` (or at the end of the text, as the reference parser allows). The ack id is the
  ASCII digits that follow; it must fit a JavaScript safe integer.
* Payloads: CONNECT an object or nothing (the client's ``auth``); DISCONNECT nothing;
  CONNECT_ERROR an object or a string; EVENT and BINARY_EVENT a non-empty array whose first
  element is the event name, a string that is not a reserved name (``connect``,
  ``disconnect``, ...); ACK and BINARY_ACK an array, and an ack id is required. Only EVENT and
  ACK carry an ack id.
* JSON is strict: ``NaN`` and ``Infinity`` are refused, trailing garbage is refused. Lone
  UTF-16 surrogates (``"\\ud800"``, which a JavaScript client can send) become U+FFFD, so
  that every decoded string can be encoded to UTF-8 again.
* Every failure to decode is a :class:`PacketError` (the peer misbehaved; the answer is to
  close the Engine.IO session with reason "parse error", as the reference server does).
  Misuse of the encoding API (a reserved event name, a namespace without ``/``, data JSON
  cannot carry) is a :class:`LocalProtocolError`. Both are :mod:`pyserver.errors`' own
  classes (``ProtocolError``, ``RemoteProtocolError`` and ``LocalProtocolError`` here are the
  same objects, kept importable from here), so ``except pyserver.LocalProtocolError``
  catches this layer's misuse as it catches every other layer's.
* Encoding takes an optional ``max_bytes``: a packet whose text (its characters) and
  attachments (their bytes) add up to more is refused with :class:`PacketTooLarge` before
  anything is sent; with attachments, as soon as they alone are over it (so data that holds
  one bytes object a million times is refused without a million placeholders being written).

Encoding is compact JSON (no spaces, UTF-8 kept as is). A plain EVENT costs one
``json.dumps`` and one string concatenation; only data that holds bytes takes the slower
attachment path. Decoding a plain EVENT on ``/`` costs a prefix test and one ``json.loads``.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from json.encoder import c_encode_basestring, c_make_encoder  # type: ignore[attr-defined]
from typing import Any, Final, NewType, TypeAlias

from pyserver.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from pyserver.socketio.binary import BINARY_TYPES, TooLarge, dumps_with_attachments

__all__ = [
    "MAX_ACK_ID",
    "RESERVED_EVENTS",
    "Ack",
    "Connect",
    "ConnectError",
    "Disconnect",
    "Event",
    "LocalProtocolError",
    "Packet",
    "PacketError",
    "PacketTooLarge",
    "PacketType",
    "ProtocolError",
    "RemoteProtocolError",
    "Sid",
    "encode_ack",
    "encode_connect",
    "encode_connect_error",
    "encode_disconnect",
    "encode_event",
]

Sid = NewType("Sid", str)
"""The id of one Socket.IO socket (one client in one namespace); not the Engine.IO sid."""


class PacketType(enum.IntEnum):
    """The seven Socket.IO packet types; the value is the wire digit."""

    CONNECT = 0
    DISCONNECT = 1
    EVENT = 2
    ACK = 3
    CONNECT_ERROR = 4
    BINARY_EVENT = 5
    BINARY_ACK = 6


RESERVED_EVENTS: Final = frozenset(
    {"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"}
)
"""Event names with a meaning of their own: never accepted from a client, never emitted."""

MAX_ACK_ID: Final = 2**53 - 1
"""The largest ack id (JavaScript's ``Number.MAX_SAFE_INTEGER``)."""

_CHAR: Final = {t: str(int(t)) for t in PacketType}


class PacketError(RemoteProtocolError):
    """The peer sent something that is not a valid Socket.IO v5 packet.

    The message is short and fit for one log line. The wire answer is closing the Engine.IO
    session with reason "parse error" (``close_reason``; there is no Socket.IO packet for it).
    """

    close_reason = "parse error"


class PacketTooLarge(LocalProtocolError, ValueError):
    """An emit or an ack is over the size bound it was encoded with (``max_emit_bytes`` of the
    server): nothing of it was sent. The message gives sizes only, never the data."""


@dataclass(frozen=True, slots=True)
class Connect:
    """CONNECT: the client asks to join ``namespace``; ``auth`` is its optional payload."""

    namespace: str
    auth: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Disconnect:
    """DISCONNECT: the peer leaves ``namespace``."""

    namespace: str


@dataclass(frozen=True, slots=True)
class Event:
    """EVENT or BINARY_EVENT (bytes already in place): ``event(*args)``, acked if ``ack_id``."""

    namespace: str
    event: str
    args: list[Any]
    ack_id: int | None = None


@dataclass(frozen=True, slots=True)
class Ack:
    """ACK or BINARY_ACK: the answer ``args`` to the event sent with ``ack_id``."""

    namespace: str
    ack_id: int
    args: list[Any]


@dataclass(frozen=True, slots=True)
class ConnectError:
    """CONNECT_ERROR: joining ``namespace`` was refused (servers send it; clients should not)."""

    namespace: str
    message: str
    data: Any = None


Packet: TypeAlias = Connect | Disconnect | Event | Ack | ConnectError


# --------------------------------------------------------------------------- encoding


class _BinaryFound(Exception):
    """Raised from the fast encoder's ``default`` hook: the data holds bytes."""


def _refuse(value: object) -> object:
    if isinstance(value, BINARY_TYPES):
        raise _BinaryFound
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


_ENCODER: Final = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_refuse
)


def _encode_with_encoder(data: Any, _level: int) -> list[str]:  # no C encoder
    return [_ENCODER.encode(data)]


_ENCODE: Final[Callable[[Any, int], list[str]]] = (
    _encode_with_encoder
    if c_make_encoder is None
    else c_make_encoder(None, _refuse, c_encode_basestring, None, ":", ",", False, False, False)
)
"""``"".join(_ENCODE(data, 0))`` is ``_ENCODER.encode(data)`` for a list or a dict,
without its Python layers: json's C encoder with the same options, and no circular check
(circular data overflows the recursion limit instead: a RecursionError, a LocalProtocolError
for callers). It returns a list of chunks: one for small data, several for large ones
(Python 3.11's encoder accumulates in parts), so the result is always joined."""


_JSON_HOOK: Final = (
    " (give the Server a codec that can: Server(json=orjson), or "
    "Server(json=JSONCodec(default=extended_default)) from pyserver.socketio.parsers)"
)


def _dumps(data: Any, max_bytes: int | None = None) -> tuple[str, list[bytes]]:
    """Compact JSON of ``data`` and its attachments (none, on the fast path); over
    ``max_bytes`` (text and attachments), :class:`PacketTooLarge`."""
    try:
        try:
            text = "".join(_ENCODE(data, 0))
        except _BinaryFound:
            return dumps_with_attachments(data, max_bytes)
    except TooLarge as exc:
        raise PacketTooLarge(f"packet too large to send: {exc}") from None
    except (TypeError, ValueError, RecursionError) as exc:
        raise LocalProtocolError(f"data cannot be sent as JSON: {exc}{_JSON_HOOK}") from exc
    if max_bytes is not None and len(text) > max_bytes:
        raise _too_large(len(text), max_bytes)
    return text, []


def _too_large(size: int, max_bytes: int) -> PacketTooLarge:
    return PacketTooLarge(f"packet too large to send: {size} bytes, over {max_bytes}")


def _dumps_text(data: Any) -> str:
    text, attachments = _dumps(data)
    if attachments:
        raise LocalProtocolError("binary data is only allowed in events and acks")
    return text


def _header(ptype: PacketType, namespace: str, ack_id: int | None, attachments: int) -> str:
    head = _CHAR[ptype]
    if attachments:
        head = f"{head}{attachments}-"
    if namespace != "/":
        if not isinstance(namespace, str) or not namespace.startswith("/") or "," in namespace:
            raise LocalProtocolError(f"invalid namespace {namespace!r}")
        head += namespace + ","
    if ack_id is not None:
        if type(ack_id) is not int or not 0 <= ack_id <= MAX_ACK_ID:
            raise LocalProtocolError(f"invalid ack id {ack_id!r}")
        head += str(ack_id)
    return head


encode_header: Final = _header
"""``encode_header(type, namespace, ack_id, attachments)``: a text packet's head (the parsers
of :mod:`pyserver.socketio.parsers` write the same format with another JSON codec)."""


def encode_event(
    namespace: str,
    event: str,
    args: Sequence[Any] = (),
    ack_id: int | None = None,
    *,
    max_bytes: int | None = None,
) -> list[str | bytes]:
    """``[text, *attachments]`` for emitting ``event(*args)``; the ack id asks for an ACK.

    Without ack id the result does not depend on the recipient: encode once per broadcast.
    Over ``max_bytes`` (the text's characters and the attachments' bytes):
    :class:`PacketTooLarge`.
    """
    if type(event) is not str or event in RESERVED_EVENTS:
        raise LocalProtocolError(f"{event!r} cannot be emitted (not a string, or reserved)")
    if namespace == "/" and (
        ack_id is None or (type(ack_id) is int and 0 <= ack_id <= MAX_ACK_ID)
    ):  # the hot path: one C call when the data holds no bytes
        try:
            text = "".join(_ENCODE([event, *args], 0))
        except _BinaryFound:
            pass
        except (TypeError, ValueError, RecursionError) as exc:
            raise LocalProtocolError(f"data cannot be sent as JSON: {exc}{_JSON_HOOK}") from exc
        else:
            if max_bytes is not None and len(text) > max_bytes:
                raise _too_large(len(text), max_bytes)
            return ["2" + text if ack_id is None else f"2{ack_id}{text}"]
    text, attachments = _dumps([event, *args], max_bytes)
    if not attachments:
        if namespace == "/" and ack_id is None:
            return ["2" + text]
        return [_header(PacketType.EVENT, namespace, ack_id, 0) + text]
    return [
        _header(PacketType.BINARY_EVENT, namespace, ack_id, len(attachments)) + text,
        *attachments,
    ]


def encode_ack(
    namespace: str, ack_id: int, args: Sequence[Any] = (), *, max_bytes: int | None = None
) -> list[str | bytes]:
    """``[text, *attachments]`` answering the event that carried ``ack_id`` with ``args``;
    over ``max_bytes``, :class:`PacketTooLarge` (as :func:`encode_event`)."""
    if ack_id is None:
        raise LocalProtocolError("an ack needs the ack id of the event it answers")
    if namespace == "/" and type(ack_id) is int and 0 <= ack_id <= MAX_ACK_ID:  # the hot path
        try:
            # a list or a tuple is written as a JSON array as it is: no copy
            data = args if type(args) is list or type(args) is tuple else list(args)
            text = "".join(_ENCODE(data, 0))
        except _BinaryFound:
            pass
        except (TypeError, ValueError, RecursionError) as exc:
            raise LocalProtocolError(f"data cannot be sent as JSON: {exc}{_JSON_HOOK}") from exc
        else:
            if max_bytes is not None and len(text) > max_bytes:
                raise _too_large(len(text), max_bytes)
            return [f"3{ack_id}{text}"]
    text, attachments = _dumps(list(args), max_bytes)
    ptype = PacketType.BINARY_ACK if attachments else PacketType.ACK
    return [_header(ptype, namespace, ack_id, len(attachments)) + text, *attachments]


def encode_connect(namespace: str, sid: Sid, pid: str | None = None) -> str:
    """CONNECT accepting the client into ``namespace`` as socket ``sid``.

    ``pid`` is the private session id of connection state recovery (sent only when given).
    """
    payload = {"sid": sid} if pid is None else {"sid": sid, "pid": pid}
    return _header(PacketType.CONNECT, namespace, None, 0) + _dumps_text(payload)


def encode_connect_error(namespace: str, message: str, data: Any = None) -> str:
    """CONNECT_ERROR refusing ``namespace``: ``{"message": ..., "data": ...}`` (data if given)."""
    payload = {"message": message} if data is None else {"message": message, "data": data}
    return _header(PacketType.CONNECT_ERROR, namespace, None, 0) + _dumps_text(payload)


def encode_disconnect(namespace: str) -> str:
    """DISCONNECT: the server ends the client's socket in ``namespace``."""
    return _header(PacketType.DISCONNECT, namespace, None, 0)

"""The incremental Socket.IO v5 packet decoder (sans-IO): messages in, packets out.

The wire rules are written at the top of :mod:`pyserver.socketio.packets`. The decoder is a
small state machine (:class:`DecoderState`): a text message is either a whole packet or the
head of a BINARY_EVENT / BINARY_ACK, which then waits for exactly its count of binary
messages. A text message while attachments are awaited, a binary message while none is, a
placeholder that refers to no attachment, two placeholders that refer to the same one and an
attachment that no placeholder refers to are all
:class:`~pyserver.socketio.packets.PacketError`; after one, the decoder is ``FAILED`` and the
connection must close.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Callable
from typing import Any, Final

from pyserver.socketio.binary import replace_placeholders
from pyserver.socketio.packets import (
    MAX_ACK_ID,
    RESERVED_EVENTS,
    Ack,
    Connect,
    ConnectError,
    Disconnect,
    Event,
    LocalProtocolError,
    Packet,
    PacketError,
    PacketType,
)

__all__ = ["DecoderState", "PacketDecoder"]

_TYPE_BY_CHAR: Final = {str(int(t)): t for t in PacketType}
_ATTACHMENT_COUNT: Final = re.compile(r"(\d{1,6})-", re.ASCII)
_ACK_ID: Final = re.compile(r"\d{1,17}", re.ASCII)
_LONE_SURROGATE: Final = re.compile(
    r"(?<!\\)((?:\\\\)*)\\u(?:d[89ab][0-9a-f]{2}(\\ud[c-f][0-9a-f]{2})?|d[c-f][0-9a-f]{2})",
    re.IGNORECASE,
)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER: Final = json.JSONDecoder(parse_constant=_reject_constant)
_SCAN: Final[Callable[[str, int], tuple[Any, int]]] = _DECODER.scan_once  # type: ignore[attr-defined]
"""The decoder's scanner (C when available): one JSON value at an index, no whitespace."""
_ABSENT: Final = object()
"""The payload of a packet that has none (distinct from JSON ``null``)."""


def _keep_pairs(match: re.Match[str]) -> str:
    if match.group(2) is not None:
        return match.group(0)
    return match.group(1) + "\\ufffd"


def _loads(text: str, pos: int = 0) -> Any:
    """The JSON value that is ``text[pos:]`` (surrounding whitespace allowed, as json.loads).

    The fast way is the scanner alone at ``pos``, good when the value fills the rest of the
    text; anything else (whitespace, no value at ``pos``) takes json's full decode, which
    gives the same value or the same refusal. The part before ``pos`` must hold no backslash.
    """
    if "\\ud" in text or "\\uD" in text:
        text = _LONE_SURROGATE.sub(_keep_pairs, text)
    try:
        value, end = _SCAN(text, pos)
        if end == len(text):
            return value
    except StopIteration:  # no value at pos (whitespace, say): the full decode decides
        pass
    except (ValueError, RecursionError):
        raise PacketError("invalid JSON payload") from None
    try:
        return _DECODER.decode(text[pos:])
    except (ValueError, RecursionError):
        raise PacketError("invalid JSON payload") from None


def _event(namespace: str, payload: Any, ack_id: int | None) -> Event:
    if type(payload) is not list or not payload:
        raise PacketError("event payload is not a non-empty array")
    name = payload[0]
    if type(name) is not str:
        raise PacketError("event name is not a string")
    if name in RESERVED_EVENTS:
        raise PacketError(f"reserved event name {name!r}")
    return Event(namespace, name, payload[1:], ack_id)


def _ack(namespace: str, payload: Any, ack_id: int | None) -> Ack:
    if type(payload) is not list:
        raise PacketError("ack payload is not an array")
    if ack_id is None:
        raise PacketError("ack without ack id")
    return Ack(namespace, ack_id, payload)


class DecoderState(enum.Enum):
    """Where a :class:`PacketDecoder` is."""

    AWAITING_PACKET = "awaiting packet"
    """Ready for a text packet; a binary message now is an error."""
    AWAITING_ATTACHMENTS = "awaiting attachments"
    """A BINARY_* packet waits for its attachments; a text message now is an error."""
    FAILED = "failed"
    """A :class:`PacketError` was raised; the connection must close. Feeding more is a bug."""


class PacketDecoder:
    """Decodes one connection's incoming messages into packets (a small state machine).

    Feed each Engine.IO message with :meth:`receive_text` or :meth:`receive_binary`; each
    returns the completed packet, or ``None`` while a BINARY_* packet waits for attachments.

    Limits: at most ``max_attachments`` attachments per packet (checked on the header, before
    any JSON is parsed) and at most ``max_attachment_bytes`` bytes in one packet's attachments.
    """

    __slots__ = (
        "_ack_id",
        "_attachment_bytes",
        "_attachments",
        "_expected",
        "_namespace",
        "_payload",
        "_state",
        "_type",
        "max_attachment_bytes",
        "max_attachments",
    )

    def __init__(self, *, max_attachments: int = 10, max_attachment_bytes: int = 1_000_000):
        if max_attachments < 0 or max_attachment_bytes < 0:
            raise ValueError("limits must not be negative")
        self.max_attachments = max_attachments
        self.max_attachment_bytes = max_attachment_bytes
        self._state = DecoderState.AWAITING_PACKET
        self._reset()

    def _reset(self) -> None:
        self._type = PacketType.BINARY_EVENT
        self._namespace = "/"
        self._ack_id: int | None = None
        self._payload: Any = None
        self._expected = 0
        self._attachments: list[bytes] = []
        self._attachment_bytes = 0

    @property
    def state(self) -> DecoderState:
        return self._state

    @property
    def attachments_missing(self) -> int:
        """How many binary messages the pending packet still waits for."""
        return self._expected - len(self._attachments)

    def _fail(self, message: str) -> PacketError:
        self._state = DecoderState.FAILED
        self._reset()
        return PacketError(message)

    def _check_usable(self) -> None:
        if self._state is DecoderState.FAILED:
            raise LocalProtocolError("the decoder failed earlier; close the connection")

    def receive_text(self, text: str) -> Packet | None:
        """Decode one text message: a packet, or ``None`` if attachments must follow."""
        packet = self.receive_text_event(text)
        if isinstance(packet, tuple):
            return Event("/", *packet)
        return packet

    def receive_text_event(self, text: str) -> tuple[str, list[Any], int | None] | Packet | None:
        """:meth:`receive_text`, except that an EVENT on ``"/"`` comes as a tuple
        ``(event, args, ack_id)`` instead of an :class:`Event` (the hot path, one object less).
        """
        if self._state is not DecoderState.AWAITING_PACKET:
            self._check_usable()
            raise self._fail("text packet while attachments were expected")
        # The hot path: EVENT on "/", "2[...]" or with an ack id "2<digits>[...]"; the same
        # checks as _decode_text and _event. Anything else takes _decode_text.
        if text.startswith("2"):
            pos = text.find("[", 1, 18)
            if pos == 1:
                ack_id = None
            elif pos > 1 and (digits := text[1:pos]).isdigit() and digits.isascii():
                ack_id = int(digits)
                if ack_id > MAX_ACK_ID:
                    raise self._fail("ack id out of range")
            else:
                pos = 0
            if pos:
                try:
                    payload = _loads(text, pos)
                except PacketError as exc:
                    raise self._fail(str(exc)) from None
                if type(payload) is list and payload and type(name := payload[0]) is str:
                    if name not in RESERVED_EVENTS:
                        return name, payload[1:], ack_id
                try:
                    _event("/", payload, ack_id)  # not a valid event: raises its PacketError
                except PacketError as exc:
                    raise self._fail(str(exc)) from None
        try:
            return self._decode_text(text)
        except PacketError as exc:
            raise self._fail(str(exc)) from None

    def receive_binary(self, data: bytes | bytearray | memoryview) -> Packet | None:
        """Take one attachment: the completed packet when it was the last one, else ``None``."""
        self._check_usable()
        if self._state is not DecoderState.AWAITING_ATTACHMENTS:
            raise self._fail("binary message while no attachment was expected")
        chunk = data if type(data) is bytes else bytes(data)
        self._attachment_bytes += len(chunk)
        if self._attachment_bytes > self.max_attachment_bytes:
            raise self._fail("attachments too large")
        self._attachments.append(chunk)
        if len(self._attachments) < self._expected:
            return None
        payload, attachments = self._payload, self._attachments
        ptype, namespace, ack_id = self._type, self._namespace, self._ack_id
        self._state = DecoderState.AWAITING_PACKET
        self._reset()
        try:
            replace_placeholders(payload, attachments)
        except ValueError as exc:
            raise self._fail(str(exc)) from None
        if ptype is PacketType.BINARY_EVENT:
            return _event(namespace, payload, ack_id)
        return _ack(namespace, payload, ack_id)

    def _load(self, text: str) -> Any:
        """The JSON payload ``text`` (a parser with its own JSON codec overrides it)."""
        return _loads(text)

    def _decode_text(self, text: str) -> Packet | None:
        if not text:
            raise PacketError("empty packet")
        ptype = _TYPE_BY_CHAR.get(text[0])
        if ptype is None:
            raise PacketError(f"unknown packet type {text[0]!r}")
        pos = 1
        count = 0
        binary = ptype is PacketType.BINARY_EVENT or ptype is PacketType.BINARY_ACK
        if binary:
            match = _ATTACHMENT_COUNT.match(text, 1)
            if match is None:
                raise PacketError("missing or bad attachment count")
            count = int(match.group(1))
            if count < 1:
                raise PacketError("attachment count must be at least 1")
            if count > self.max_attachments:
                raise PacketError("too many attachments")
            pos = match.end()
        namespace = "/"
        if text.startswith("/", pos):
            comma = text.find(",", pos)
            end = len(text) if comma < 0 else comma
            namespace = text[pos:end]
            pos = end + 1
        ack_id = None
        match = _ACK_ID.match(text, pos)
        if match is not None:
            digits = match.group()
            ack_id = int(digits)
            if len(digits) > 16 or ack_id > MAX_ACK_ID:
                raise PacketError("ack id out of range")
            pos = match.end()
        payload = self._load(text[pos:]) if pos < len(text) else _ABSENT

        if ptype is PacketType.EVENT:
            return _event(namespace, payload, ack_id)
        if ptype is PacketType.ACK:
            return _ack(namespace, payload, ack_id)
        if binary:
            # Validate the JSON part now, so a bad packet fails before its attachments arrive.
            if ptype is PacketType.BINARY_EVENT:
                _event(namespace, payload, ack_id)
            else:
                _ack(namespace, payload, ack_id)
            self._type, self._namespace, self._ack_id = ptype, namespace, ack_id
            self._payload, self._expected = payload, count
            self._state = DecoderState.AWAITING_ATTACHMENTS
            return None
        if ack_id is not None:
            raise PacketError(f"unexpected ack id in {ptype.name}")
        if ptype is PacketType.CONNECT:
            if payload is _ABSENT:
                return Connect(namespace)
            if type(payload) is not dict:
                raise PacketError("connect payload is not an object")
            return Connect(namespace, payload)
        if ptype is PacketType.DISCONNECT:
            if payload is not _ABSENT:
                raise PacketError("disconnect with a payload")
            return Disconnect(namespace)
        # CONNECT_ERROR
        if type(payload) is str:
            return ConnectError(namespace, payload)
        if type(payload) is not dict:
            raise PacketError("connect error payload is not an object or a string")
        message = payload.get("message")
        return ConnectError(namespace, message if type(message) is str else "", payload.get("data"))

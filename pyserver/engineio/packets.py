"""The Engine.IO v4 packet codec (sans-IO: strings and bytes in, packets out, and back).

Rules (engine.io-protocol, "Packet encoding"):

* A packet is one type digit ``0``-``6`` (open, close, ping, pong, message, upgrade, noop)
  followed by an optional payload: ``4hello`` is a message carrying ``"hello"``.
* On WebSocket each packet is one WebSocket message. A binary WebSocket message is a binary
  ``message`` packet as is, with no type prefix.
* On HTTP long-polling several packets are joined with the record separator ``\\x1e``; a binary
  message is written ``b`` + base64 of its bytes (``bAQIDBA==`` is ``01 02 03 04``).
* Anything else is a parse error: ``decode_*`` raise :class:`PacketError` (the peer
  misbehaved; the session closes with reason "parse error").

Packets are plain values; nothing here decodes in a constructor or touches I/O.
"""

from __future__ import annotations

import binascii
import enum
from base64 import b64decode, b64encode
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from pyserver.errors import RemoteProtocolError

__all__ = [
    "SEPARATOR",
    "Packet",
    "PacketError",
    "PacketType",
    "decode_packet",
    "decode_payload",
    "encode_packet",
    "encode_payload",
    "encode_polling_packet",
]

SEPARATOR: Final = "\x1e"
"""Joins packets in one HTTP long-polling payload."""


class PacketType(enum.IntEnum):
    """The seven Engine.IO packet types; the value is the wire digit."""

    OPEN = 0
    CLOSE = 1
    PING = 2
    PONG = 3
    MESSAGE = 4
    UPGRADE = 5
    NOOP = 6


_BY_CHAR: Final[dict[str, PacketType]] = {str(int(t)): t for t in PacketType}
_CHAR: Final[dict[PacketType, str]] = {t: str(int(t)) for t in PacketType}


class PacketError(RemoteProtocolError, ValueError):
    """The peer sent something that is not an Engine.IO v4 packet.

    The wire answer: the session closes with reason "parse error" (``close_reason``), and a
    polling POST that carried it is answered 400 (``status``). Still a ``ValueError``, as
    before the error tree.
    """

    close_reason = "parse error"


@dataclass(frozen=True, slots=True)
class Packet:
    """One Engine.IO packet. ``data`` is ``bytes`` only for a binary ``MESSAGE``."""

    type: PacketType
    data: str | bytes = ""

    @property
    def is_binary(self) -> bool:
        return isinstance(self.data, bytes)


def decode_packet(data: str | bytes) -> Packet:
    """Decode one packet as received in one WebSocket message (or one polling record).

    ``bytes`` is a binary message packet. A ``str`` starting with ``b`` is a base64 binary
    message (the polling form, accepted everywhere as the reference parser does).
    """
    if isinstance(data, bytes | bytearray | memoryview):
        return Packet(PacketType.MESSAGE, bytes(data))
    if not data:
        raise PacketError("empty packet")
    head = data[0]
    if head == "b":
        try:
            return Packet(PacketType.MESSAGE, b64decode(data[1:], validate=True))
        except (binascii.Error, ValueError) as exc:
            raise PacketError("invalid base64 binary packet") from exc
    ptype = _BY_CHAR.get(head)
    if ptype is None:
        raise PacketError(f"unknown packet type {head!r}")
    return Packet(ptype, data[1:])


def decode_payload(body: str | bytes, *, max_packets: int | None = None) -> list[Packet]:
    """Decode an HTTP long-polling payload (packets joined with ``\\x1e``).

    ``bytes`` must be UTF-8. Raises :class:`PacketError` on the first bad record, so a bad
    payload is refused as a whole.
    """
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PacketError("payload is not valid UTF-8") from exc
    records = body.split(SEPARATOR)
    if max_packets is not None and len(records) > max_packets:
        raise PacketError("too many packets in one payload")
    return [decode_packet(record) for record in records]


def encode_packet(packet: Packet) -> str | bytes:
    """The WebSocket form: one message, binary data as raw bytes with no prefix."""
    if isinstance(packet.data, bytes):
        if packet.type is not PacketType.MESSAGE:
            raise ValueError("only message packets carry binary data")
        return packet.data
    return _CHAR[packet.type] + packet.data


def encode_polling_packet(packet: Packet) -> str:
    """The HTTP long-polling form of one packet: binary as ``b`` + base64."""
    if isinstance(packet.data, bytes):
        if packet.type is not PacketType.MESSAGE:
            raise ValueError("only message packets carry binary data")
        return "b" + b64encode(packet.data).decode("ascii")
    return _CHAR[packet.type] + packet.data


def encode_payload(packets: Iterable[Packet]) -> str:
    """An HTTP long-polling payload: the packets' polling forms joined with ``\\x1e``."""
    return SEPARATOR.join(encode_polling_packet(p) for p in packets)

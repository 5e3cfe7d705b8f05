"""Engine.IO v3, the protocol of socket.io-client 2.x (sans-IO): its codec and its session.

``Server(allow_eio3=True)`` (and ``EngineIOServer(allow_eio3=True)``) accept requests with
``EIO=3``; such a session gets a :class:`SessionV3` instead of a
:class:`~pyserver.engineio.session.Session`, chosen once when it opens, so the v4 path has no
per-message branch. What differs from v4 (engine.io-protocol v3, engine.io-parser 2.x, and
the reference server's ``allowEIO3``):

* **Polling payloads** are length-prefixed: each packet is ``<length>:<packet>``, the length
  counted in UTF-16 code units (a JavaScript string's length), with no separator. A binary
  packet is ``b<type><base64>`` (``b4AQI=``). A client that can read binary (XHR2; it did
  not ask for ``b64=1`` in its handshake) gets the binary payload format instead whenever a
  packet is binary: per packet ``\\x00`` (text) or ``\\x01`` (binary), the length as one byte
  per decimal digit, ``\\xff``, then the packet (text as UTF-8, counted in bytes; binary as
  its type byte then its data). The client POSTs either format; both are read.
* **WebSocket**: a binary message is the type byte (``\\x04``) followed by the data
  (:func:`encode_ws`, :func:`decode_ws`); text packets are as in v4. Only message packets
  carry binary data: another type in binary form is a parse error.
* **Heartbeat** is client-driven: the client sends ``2`` every ``pingInterval``, the server
  answers ``3`` (with the ping's data) and closes the session with "ping timeout" when no
  ping came for ``pingInterval + pingTimeout``. A ``3`` from the client is a "transport
  error" ("invalid heartbeat direction"), as the reference server says.
* **Handshake**: ``{"sid", "upgrades", "pingInterval", "pingTimeout"}`` (no ``maxPayload``).
* The upgrade (``2probe``, ``3probe``, ``5``) is as in v4.
"""

from __future__ import annotations

import binascii
from base64 import b64decode, b64encode
from collections.abc import Iterable, Sequence
from typing import Any, Final

from pyserver.engineio.events import (
    CloseReason,
    EioSid,
    Event,
    SessionConfig,
    SessionState,
    Transport,
)
from pyserver.engineio.packets import Packet, PacketError, PacketType, encode_packet
from pyserver.engineio.session import Session

__all__ = [
    "SessionV3",
    "decode_payload_v3",
    "decode_polling_packet_v3",
    "decode_ws",
    "encode_payload_v3",
    "encode_polling_packet_v3",
    "encode_ws",
    "utf16_length",
]

_CHAR: Final[dict[PacketType, str]] = {t: str(int(t)) for t in PacketType}
_BY_CHAR: Final[dict[str, PacketType]] = {str(int(t)): t for t in PacketType}
_MESSAGE_BYTE: Final = b"\x04"
_MAX_LENGTH_DIGITS: Final = 10  # no payload here is over 10^10 units (max_payload bounds it)


def utf16_length(text: str) -> int:
    """The length of ``text`` as JavaScript counts it (UTF-16 code units)."""
    if text.isascii():
        return len(text)
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


# ---------------------------------------------------------------------------- packets


def encode_polling_packet_v3(packet: Packet) -> str:
    """A packet in a text payload: binary as ``b`` + its type digit + base64."""
    if isinstance(packet.data, bytes):
        return "b" + _CHAR[packet.type] + b64encode(packet.data).decode("ascii")
    return _CHAR[packet.type] + packet.data


def decode_polling_packet_v3(text: str) -> Packet:
    """One packet of a text payload (or a text WebSocket message)."""
    if not text:
        raise PacketError("empty packet")
    head = text[0]
    if head == "b":
        if text[1:2] != "4":
            raise PacketError("a base64 packet that is not a message")
        try:
            return Packet(PacketType.MESSAGE, b64decode(text[2:], validate=True))
        except (binascii.Error, ValueError) as exc:
            raise PacketError("invalid base64 binary packet") from exc
    ptype = _BY_CHAR.get(head)
    if ptype is None:
        raise PacketError(f"unknown packet type {head!r}")
    return Packet(ptype, text[1:])


def encode_ws(packet: Packet) -> str | bytes:
    """The WebSocket form: text as in v4, binary as its type byte and its data."""
    if isinstance(packet.data, bytes):
        return bytes((packet.type,)) + packet.data
    return encode_packet(packet)


def decode_ws(data: str | bytes) -> Packet:
    """One WebSocket message: text as in a payload, binary as its type byte and its data."""
    if isinstance(data, str):
        return decode_polling_packet_v3(data)
    if data[:1] != _MESSAGE_BYTE:
        raise PacketError("a binary packet that is not a message")
    return Packet(PacketType.MESSAGE, bytes(data[1:]))


# ---------------------------------------------------------------------------- payloads


def encode_payload_v3(packets: Iterable[Packet], *, binary: bool) -> str | bytes:
    """A polling payload: the binary format when ``binary`` (the client reads it) and a
    packet is binary, else the text format (binary packets in base64)."""
    packets = list(packets)
    if binary and any(isinstance(p.data, bytes) for p in packets):
        out = bytearray()
        for packet in packets:
            if isinstance(packet.data, bytes):
                record = bytes((packet.type,)) + packet.data
                out.append(1)
            else:
                record = (_CHAR[packet.type] + packet.data).encode("utf-8", "surrogatepass")
                out.append(0)
            out += bytes(int(digit) for digit in str(len(record)))
            out.append(255)
            out += record
        return bytes(out)
    parts = []
    for packet in packets:
        text = encode_polling_packet_v3(packet)
        parts.append(f"{utf16_length(text)}:{text}")
    return "".join(parts)


def decode_payload_v3(body: str | bytes, *, max_packets: int | None = None) -> list[Packet]:
    """A payload the client POSTed, in either format (a binary payload starts with a
    ``\\x00`` or ``\\x01`` byte, a text one with a digit). Raises :class:`PacketError`."""
    if isinstance(body, bytes) and body[:1] in (b"\x00", b"\x01"):
        packets = _decode_binary_payload(body)
    else:
        if isinstance(body, bytes):
            try:
                body = body.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise PacketError("payload is not valid UTF-8") from exc
        packets = _decode_text_payload(body)
    if not packets:
        raise PacketError("empty payload")
    if max_packets is not None and len(packets) > max_packets:
        raise PacketError("too many packets in one payload")
    return packets


def _decode_text_payload(body: str) -> list[Packet]:
    packets = []
    pos = 0
    end = len(body)
    while pos < end:
        colon = body.find(":", pos, pos + _MAX_LENGTH_DIGITS + 1)
        digits = body[pos:colon]
        if colon < 0 or not digits.isdigit() or not digits.isascii():
            raise PacketError("bad length in a payload")
        units = int(digits)
        start = colon + 1
        stop = _skip_units(body, start, units)
        if stop < 0:
            raise PacketError("payload shorter than its length")
        if units:
            packets.append(decode_polling_packet_v3(body[start:stop]))
        pos = stop
    return packets


def _skip_units(text: str, start: int, units: int) -> int:
    """The index ``units`` UTF-16 code units after ``start``, or -1 (not on a boundary, or
    past the end)."""
    stop = start + units
    if stop > len(text):
        stop = len(text)
    chunk = text[start:stop]
    if chunk.isascii() or utf16_length(chunk) == len(chunk):
        return stop if stop - start == units else -1
    counted = 0
    index = start
    while counted < units and index < len(text):
        counted += 2 if ord(text[index]) > 0xFFFF else 1
        index += 1
    return index if counted == units else -1


def _decode_binary_payload(body: bytes) -> list[Packet]:
    packets = []
    pos = 0
    end = len(body)
    while pos < end:
        is_text = body[pos] == 0
        stop = body.find(b"\xff", pos + 1, pos + 2 + _MAX_LENGTH_DIGITS)
        digits = body[pos + 1 : stop]
        if stop < 0 or not digits or any(d > 9 for d in digits):
            raise PacketError("bad length in a binary payload")
        length = int("".join(str(d) for d in digits))
        record = body[stop + 1 : stop + 1 + length]
        if len(record) != length or not length:
            raise PacketError("binary payload shorter than its length")
        if is_text:
            try:
                packets.append(decode_polling_packet_v3(record.decode("utf-8")))
            except UnicodeDecodeError as exc:
                raise PacketError("text packet is not valid UTF-8") from exc
        else:
            packets.append(decode_ws(record))
        pos = stop + 1 + length
    return packets


# ---------------------------------------------------------------------------- the session


class SessionV3(Session):
    """An Engine.IO v3 session: :class:`~pyserver.engineio.session.Session`'s rules, with
    v3's payloads, handshake and client-driven heartbeat (module docstring). ``binary``:
    the client reads binary polling payloads (it did not ask for ``b64=1``)."""

    __slots__ = ("binary",)

    protocol = 3
    decode_message = staticmethod(decode_ws)
    decode_body = staticmethod(decode_payload_v3)

    def __init__(
        self,
        sid: EioSid,
        transport: Transport,
        config: SessionConfig,
        now: float,
        *,
        binary: bool = True,
    ) -> None:
        self.binary = binary
        super().__init__(sid, transport, config, now)
        self._heartbeat_deadline = now + config.ping_interval + config.ping_timeout

    def _open_fields(self) -> dict[str, Any]:
        fields = super()._open_fields()
        del fields["maxPayload"]  # (v3's handshake has none)
        return fields

    def receive_packet(self, packet: Packet, now: float) -> Sequence[Event]:
        if self.state is not SessionState.OPEN:
            return ()
        if packet.type is PacketType.PING:
            config = self.config
            self._heartbeat_deadline = now + config.ping_interval + config.ping_timeout
            return self.send_packet(Packet(PacketType.PONG, packet.data))
        if packet.type is PacketType.PONG:
            return self._close(CloseReason.TRANSPORT_ERROR, "invalid heartbeat direction")
        return super().receive_packet(packet, now)

    def handle_timeout(self, now: float) -> Sequence[Event]:
        if self.state is SessionState.OPEN and now >= self._heartbeat_deadline:
            return self._close(CloseReason.PING_TIMEOUT, "no ping in time")
        return super().handle_timeout(now)  # (its heartbeat is not due: the others)

    def encode_poll(self, packets: list[Packet]) -> str | bytes:
        return encode_payload_v3(packets, binary=self.binary)

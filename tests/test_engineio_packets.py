"""The Engine.IO v4 packet codec: plain sync tests, strings and bytes in, packets out."""

from __future__ import annotations

import pytest

from pyserver.engineio.packets import (
    SEPARATOR,
    Packet,
    PacketError,
    PacketType,
    decode_packet,
    decode_payload,
    encode_packet,
    encode_payload,
    encode_polling_packet,
)


@pytest.mark.parametrize(
    ("wire", "packet"),
    [
        ("0{}", Packet(PacketType.OPEN, "{}")),
        ("1", Packet(PacketType.CLOSE)),
        ("2", Packet(PacketType.PING)),
        ("2probe", Packet(PacketType.PING, "probe")),
        ("3probe", Packet(PacketType.PONG, "probe")),
        ("4hello", Packet(PacketType.MESSAGE, "hello")),
        ("4", Packet(PacketType.MESSAGE, "")),
        ("4€ and ü", Packet(PacketType.MESSAGE, "€ and ü")),
        ("5", Packet(PacketType.UPGRADE)),
        ("6", Packet(PacketType.NOOP)),
    ],
)
def test_text_packets_round_trip(wire: str, packet: Packet) -> None:
    assert decode_packet(wire) == packet
    assert encode_packet(packet) == wire
    assert encode_polling_packet(packet) == wire


def test_binary_on_websocket_is_raw_bytes() -> None:
    packet = decode_packet(b"\x01\x02\x03\x04")
    assert packet == Packet(PacketType.MESSAGE, b"\x01\x02\x03\x04")
    assert packet.is_binary
    assert encode_packet(packet) == b"\x01\x02\x03\x04"


def test_binary_on_polling_is_base64_with_b_prefix() -> None:
    packet = Packet(PacketType.MESSAGE, b"\x01\x02\x03\x04")
    assert encode_polling_packet(packet) == "bAQIDBA=="
    assert decode_packet("bAQIDBA==") == packet


def test_payload_from_the_protocol_document() -> None:
    packets = decode_payload("4hello\x1e2\x1e4world")
    assert packets == [
        Packet(PacketType.MESSAGE, "hello"),
        Packet(PacketType.PING),
        Packet(PacketType.MESSAGE, "world"),
    ]
    assert encode_payload(packets) == "4hello\x1e2\x1e4world"
    mixed = decode_payload(b"4hello\x1ebAQIDBA==")
    assert mixed[1] == Packet(PacketType.MESSAGE, b"\x01\x02\x03\x04")
    assert encode_payload(mixed) == "4hello" + SEPARATOR + "bAQIDBA=="


@pytest.mark.parametrize("bad", ["", "abc", "7", "x4", "b!!notbase64", "9hello"])
def test_bad_packets_are_parse_errors(bad: str) -> None:
    with pytest.raises(PacketError):
        decode_packet(bad)


def test_a_bad_record_fails_the_whole_payload() -> None:
    with pytest.raises(PacketError):
        decode_payload("4ok\x1eabc")
    with pytest.raises(PacketError):
        decode_payload("4ok\x1e")  # an empty record
    with pytest.raises(PacketError):
        decode_payload(b"4\xff\xfe")  # not UTF-8
    with pytest.raises(PacketError):
        decode_payload("4a\x1e4b\x1e4c", max_packets=2)


def test_binary_only_on_message_packets() -> None:
    with pytest.raises(ValueError):
        encode_packet(Packet(PacketType.PING, b"x"))
    with pytest.raises(ValueError):
        encode_polling_packet(Packet(PacketType.PING, b"x"))

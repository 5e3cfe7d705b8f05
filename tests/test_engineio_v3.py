"""Engine.IO v3 (``pyserver.engineio.v3``): the codec and the session, plain sync tests.

The payload vectors are what engine.io-parser 2.2.1 (the parser of socket.io-client 2.5.0)
writes for the same packets: ``encodePayload(packets, supportsBinary)``.
"""

from __future__ import annotations

import json

import pytest

from pyserver.engineio.packets import Packet, PacketError, PacketType
from pyserver.engineio.session import (
    CloseReason,
    EioSid,
    MessageReceived,
    Session,
    SessionClosed,
    SessionConfig,
    Transport,
)
from pyserver.engineio.v3 import (
    SessionV3,
    decode_payload_v3,
    decode_ws,
    encode_payload_v3,
    encode_ws,
    utf16_length,
)

M = PacketType.MESSAGE
CONFIG = SessionConfig(ping_interval=25.0, ping_timeout=20.0)


def test_utf16_length_counts_as_javascript() -> None:
    assert utf16_length("abc") == 3
    assert utf16_length("h€") == 2
    assert utf16_length("😀") == 2  # outside the BMP: a surrogate pair


def test_text_payload_lengths_in_utf16_units() -> None:
    packets = [Packet(PacketType.OPEN, "{}"), Packet(M, "h€😀")]
    assert encode_payload_v3(packets, binary=False) == "3:0{}5:4h€😀"
    assert decode_payload_v3("3:0{}5:4h€😀".encode()) == packets


def test_binary_packets_in_a_text_payload_are_base64_with_their_type() -> None:
    packets = [Packet(M, "x"), Packet(M, b"\x01\x02\x03")]
    assert encode_payload_v3(packets, binary=False) == "2:4x6:b4AQID"
    assert decode_payload_v3(b"2:4x6:b4AQID") == packets


def test_binary_payload_format_for_clients_that_read_binary() -> None:
    packets = [Packet(M, "h€😀"), Packet(M, b"\x01\x02\x03")]
    wire = bytes.fromhex("0009ff3468e282acf09f98800104ff04010203")
    assert encode_payload_v3(packets, binary=True) == wire
    assert decode_payload_v3(wire) == packets


def test_text_payload_when_nothing_is_binary_even_for_binary_clients() -> None:
    assert encode_payload_v3([Packet(PacketType.NOOP)], binary=True) == "1:6"


def test_a_long_binary_record_length_is_one_byte_per_digit() -> None:
    data = bytes(range(256)) * 5  # 1280 bytes, the record 1281
    wire = encode_payload_v3([Packet(M, data)], binary=True)
    assert isinstance(wire, bytes)
    assert wire[:6] == b"\x01\x01\x02\x08\x01\xff"
    assert decode_payload_v3(wire) == [Packet(M, data)]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"4hello",  # no length
        b"9:4hi",  # shorter than its length
        b"2:4",  # not on a boundary: runs past the end
        b"x:4hi",
        b"2:9x",  # unknown packet type
        b"3:b9x",  # unknown type in a base64 packet
        b"6:b2AQ==",  # a base64 packet that is not a message
        b"4:b4!!",  # bad base64
        b"2:4\xff",  # not UTF-8
        b"\x01\x05\xff\x04\x01",  # binary record shorter than its length
        b"\x00\x0a\x0a\x0a",  # no 255 after the length
    ],
)
def test_bad_payloads_are_refused(body: bytes) -> None:
    with pytest.raises(PacketError):
        decode_payload_v3(body)


def test_astral_characters_split_by_a_wrong_length_are_refused() -> None:
    # "4😀" is 3 UTF-16 units: a length of 2 ends inside the surrogate pair
    with pytest.raises(PacketError):
        decode_payload_v3("2:4😀".encode())
    assert decode_payload_v3("3:4😀".encode()) == [Packet(M, "😀")]


def test_websocket_binary_messages_carry_their_type_byte() -> None:
    assert encode_ws(Packet(M, b"\x00\x01")) == b"\x04\x00\x01"
    assert encode_ws(Packet(M, "hi")) == "4hi"
    assert decode_ws(b"\x04\x00\x01") == Packet(M, b"\x00\x01")
    assert decode_ws("2probe") == Packet(PacketType.PING, "probe")
    assert decode_ws("b4AQI=") == Packet(M, b"\x01\x02")
    for bad in (b"", b"\x09abc", b"\x02probe", ""):
        with pytest.raises(PacketError):
            decode_ws(bad)


# ---------------------------------------------------------------------------- the session


def open_v3(now: float = 0.0, **kw: bool) -> SessionV3:
    return SessionV3(EioSid("abc"), Transport.POLLING, CONFIG, now, **kw)


def test_handshake_has_no_max_payload() -> None:
    session = open_v3()
    [opened] = session.take_packets()
    assert opened.type is PacketType.OPEN
    assert json.loads(str(opened.data)) == {
        "sid": "abc",
        "upgrades": ["websocket"],
        "pingInterval": 25000,
        "pingTimeout": 20000,
    }
    assert session.protocol == 3 and Session.protocol == 4


def test_client_pings_are_answered_and_rearm_the_timeout() -> None:
    session = open_v3(now=0.0)
    session.take_packets()
    assert session.next_deadline() == 45.0  # pingInterval + pingTimeout, no server ping
    assert session.handle_timeout(30.0) == []  # nothing is sent by the server
    assert session.take_packets() == []
    assert session.receive_payload(b"1:2", now=40.0) == []
    assert session.take_packets() == [Packet(PacketType.PONG)]
    assert session.next_deadline() == 85.0
    assert session.handle_timeout(84.0) == []


def test_no_ping_in_time_is_a_ping_timeout() -> None:
    session = open_v3(now=0.0)
    assert session.handle_timeout(45.0) == (
        SessionClosed(CloseReason.PING_TIMEOUT, "no ping in time"),
    )


def test_a_pong_from_the_client_is_the_wrong_direction() -> None:
    session = open_v3()
    [closed] = session.receive_payload(b"1:3", now=1.0)
    assert isinstance(closed, SessionClosed) and closed.reason is CloseReason.TRANSPORT_ERROR


def test_messages_and_a_binary_post() -> None:
    session = open_v3()
    wire = bytes.fromhex("0003ff346869") + bytes.fromhex("0103ff040102")
    assert list(session.receive_payload(wire, now=1.0)) == [
        MessageReceived("hi"),
        MessageReceived(b"\x01\x02"),
    ]


def test_poll_answers_in_the_format_the_client_asked_for() -> None:
    packets = [Packet(M, b"\x01")]
    assert open_v3(binary=True).encode_poll(packets) == b"\x01\x02\xff\x04\x01"
    assert open_v3(binary=False).encode_poll(packets) == "6:b4AQ=="
    v4 = Session(EioSid("abc"), Transport.POLLING, CONFIG, 0.0)
    assert v4.encode_poll([Packet(M, "a"), Packet(M, b"\x01")]) == "4a\x1ebAQ=="


def test_the_upgrade_probe_is_as_in_v4() -> None:
    session = open_v3()
    assert session.start_upgrade(1.0)
    assert session.receive_probe_data("2probe", 1.0) == ()
    assert session.take_probe_packets() == [Packet(PacketType.PONG, "probe")]
    [done] = session.receive_probe_data("5", 1.1)
    assert (
        session.transport is Transport.WEBSOCKET and done.__class__.__name__ == "UpgradeCompleted"
    )

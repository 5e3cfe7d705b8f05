"""The parsers (sans-IO): socket.io-msgpack-parser 3.x's wire (bytes from the npm package,
captured), ``Server(json=codec)`` with attachments, the default JSON parser's error that
names the hook, and the session that speaks a parser."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import json
import uuid
from typing import Any

import msgpack
import pytest

from pyserver.errors import LocalProtocolError
from pyserver.socketio.msgpack_parser import MsgpackParser
from pyserver.socketio.packets import (
    Ack,
    Connect,
    Disconnect,
    Event,
    PacketError,
    PacketTooLarge,
    encode_ack,
    encode_event,
)
from pyserver.socketio.parser_session import ParserSession, make_parser
from pyserver.socketio.parsers import JSONCodec, JSONParser, extended_default
from pyserver.socketio.session import (
    AckReceived,
    EventReceived,
    NamespaceConnectRequested,
    SessionConfig,
)

# What socket.io-msgpack-parser 3.0.2's Encoder wrote (node, tests/interop/node_modules):
# {type: 0, nsp: "/", data: undefined}, a client's CONNECT without auth
CLIENT_CONNECT = bytes.fromhex("83a47479706500a36e7370a12fa464617461d40000")
WHEN = datetime.datetime(2024, 1, 2, 3, 4, 5, 6000, tzinfo=datetime.UTC)


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, ext_hook=lambda code, raw: (code, raw))


# -- msgpack: decoding ----------------------------------------------------------------------


def test_msgpack_decodes_a_clients_connect_with_undefined_data() -> None:
    decoder = MsgpackParser().decoder(10, 1000)
    assert decoder.receive_binary(CLIENT_CONNECT) == Connect("/")


def test_msgpack_decodes_events_acks_dates_and_ignores_unknown_keys() -> None:
    decoder = MsgpackParser().decoder(10, 1000)
    date = msgpack.ExtType(0, (1704164645006).to_bytes(8, "big", signed=True))
    event = msgpack.packb(
        {
            "type": 2,
            "nsp": "/chat",
            "data": ["up", b"\x01", date, {"a": None}],
            "id": 7,
            "options": {"compress": True},
        }
    )
    assert decoder.receive_binary(event) == Event("/chat", "up", [b"\x01", WHEN, {"a": None}], 7)
    ack = msgpack.packb({"type": 3, "nsp": "/", "id": 0, "data": ["ok"]})
    assert decoder.receive_binary(ack) == Ack("/", 0, ["ok"])
    leave = msgpack.packb({"type": 1, "nsp": "/"})
    assert decoder.receive_binary(leave) == Disconnect("/")


@pytest.mark.parametrize(
    ("packet", "message"),
    [
        ({"type": 5, "nsp": "/", "data": []}, "bad packet type"),
        ({"type": 2, "nsp": 1, "data": ["a"]}, "namespace is not a string"),
        ({"type": 2, "nsp": "/", "data": "a"}, "event payload"),
        ({"type": 2, "nsp": "/", "data": ["connect"]}, "reserved event name"),
        ({"type": 2, "nsp": "/", "data": ["a"], "id": -1}, "bad ack id"),
        ({"type": 3, "nsp": "/", "data": ["a"]}, "ack without ack id"),
        ({"type": 0, "nsp": "/", "data": [1]}, "connect payload"),
        ({"type": 1, "nsp": "/", "data": {}}, "disconnect with a payload"),
        ([1, 2], "packet is not a map"),
    ],
)
def test_msgpack_refuses_what_checkpacket_refuses(packet: Any, message: str) -> None:
    decoder = MsgpackParser().decoder(10, 1000)
    with pytest.raises(PacketError, match=message):
        decoder.receive_binary(msgpack.packb(packet))


def test_msgpack_refuses_text_garbage_and_other_extensions() -> None:
    for bad in (b"\xc1", b"\x81\xa1a", msgpack.packb(msgpack.ExtType(5, b"x"))):
        with pytest.raises(PacketError):
            MsgpackParser().decoder(10, 1000).receive_binary(bad)
    with pytest.raises(PacketError, match="binary messages"):
        MsgpackParser().decoder(10, 1000).receive_text_event('2["a"]')


# -- msgpack: encoding ----------------------------------------------------------------------


def test_msgpack_encodes_one_binary_message_per_packet() -> None:
    parser = MsgpackParser()
    (message,) = parser.encode_event("/", "tick", [b"\x07", WHEN, (1, 2)])
    assert type(message) is bytes
    decoded = unpack(message)
    assert decoded["type"] == 2 and decoded["nsp"] == "/" and "id" not in decoded
    assert decoded["data"][:2] == ["tick", b"\x07"]
    assert decoded["data"][2] == (0, (1704164645006).to_bytes(8, "big", signed=True))
    assert decoded["data"][3] == [1, 2]
    assert unpack(parser.encode_event("/", "q", [], 3)[0])["id"] == 3
    assert unpack(parser.encode_ack("/x", 4, ["ok"])[0]) == {
        "type": 3,
        "nsp": "/x",
        "id": 4,
        "data": ["ok"],
    }
    # no undefined written: pid left out when recovery is off
    assert unpack(parser.encode_connect("/", "abc")) == {
        "type": 0,
        "nsp": "/",
        "data": {"sid": "abc"},
    }
    assert unpack(parser.encode_connect_error("/", "no", {"a": 1})) == {
        "type": 4,
        "nsp": "/",
        "data": {"message": "no", "data": {"a": 1}},
    }
    assert unpack(parser.encode_disconnect("/")) == {"type": 1, "nsp": "/"}


def test_msgpack_encoding_limits_and_refusals() -> None:
    parser = MsgpackParser()
    with pytest.raises(PacketTooLarge):
        parser.encode_event("/", "big", [b"x" * 100], max_bytes=50)
    with pytest.raises(LocalProtocolError, match="cannot be emitted"):
        parser.encode_event("/", "connect", [])
    with pytest.raises(LocalProtocolError, match="msgpack"):
        parser.encode_event("/", "x", [decimal.Decimal(1)])


def test_msgpack_transcodes_what_the_builtin_parser_encoded() -> None:
    """What the Redis adapters hand over (another node's broadcast re-encoded as JSON)."""
    parser = MsgpackParser()
    parts = encode_event("/chat", "x", [b"\x01", {"b": b"\x02"}, 3])
    assert len(parts) == 3  # text and two attachments
    assert parser.transcode(parts) == parser.encode_event(
        "/chat", "x", [b"\x01", {"b": b"\x02"}, 3]
    )
    assert parser.transcode(encode_ack("/", 5, ["ok"])) == parser.encode_ack("/", 5, ["ok"])


# -- the session speaking a parser -----------------------------------------------------------


def test_parser_session_speaks_msgpack() -> None:
    session = ParserSession(SessionConfig(), 0.0, MsgpackParser())
    assert session.receive_message(CLIENT_CONNECT) == NamespaceConnectRequested("/", None)
    connect = session.accept_namespace("/", "sid1")  # type: ignore[arg-type]
    assert unpack(connect)["data"] == {"sid": "sid1"}
    event = msgpack.packb({"type": 2, "nsp": "/", "data": ["hi", 1], "id": 0})
    assert session.receive_message(event) == EventReceived("/", "sid1", "hi", [1], 0)  # type: ignore[arg-type]
    ack_id, (message,) = session.send_event_with_ack("/", "q", [b"\x01"], now=0.0)
    assert unpack(message) == {"type": 2, "nsp": "/", "data": ["q", b"\x01"], "id": ack_id}
    reply = msgpack.packb({"type": 3, "nsp": "/", "id": ack_id, "data": ["a"]})
    assert session.receive_message(reply) == AckReceived("/", "sid1", ack_id, ["a"])  # type: ignore[arg-type]


def test_a_packet_too_large_leaves_no_pending_ack() -> None:
    session = ParserSession(SessionConfig(max_emit_bytes=40), 0.0, MsgpackParser())
    session.receive_message(CLIENT_CONNECT)
    session.accept_namespace("/", "s")  # type: ignore[arg-type]
    with pytest.raises(PacketTooLarge):
        session.send_event_with_ack("/", "x", ["y" * 100], now=0.0, timeout=1.0)
    assert session.next_deadline() is None  # no ack deadline registered
    _, (message,) = session.send_event_with_ack("/", "x", [], now=0.0)
    assert unpack(message)["id"] == 0  # the id was not used up


def test_make_parser() -> None:
    assert make_parser() is None
    assert isinstance(make_parser("msgpack"), MsgpackParser)
    assert isinstance(make_parser(json=json), JSONParser)
    with pytest.raises(ValueError, match="unknown parser"):
        make_parser("yaml")
    with pytest.raises(ValueError, match="json="):
        make_parser("msgpack", json=json)
    with pytest.raises(TypeError, match="dumps"):
        make_parser(json=object())


# -- JSON with your codec ---------------------------------------------------------------------


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int
    y: int


def test_the_default_json_parser_names_the_hook() -> None:
    with pytest.raises(LocalProtocolError, match=r"Server\(json="):
        encode_event("/", "x", [datetime.datetime.now()])


def test_jsoncodec_with_extended_default() -> None:
    parser = JSONParser(JSONCodec(default=extended_default))
    value = [
        WHEN,
        decimal.Decimal("1.10"),
        uuid.UUID(int=1),
        Point(1, 2),
        Color.RED,
        datetime.date(2024, 1, 2),
    ]
    (text,) = parser.encode_event("/", "x", value)
    assert text.startswith("2[")
    assert json.loads(text[1:]) == [
        "x",
        "2024-01-02T03:04:05.006000+00:00",
        "1.10",
        "00000000-0000-0000-0000-000000000001",
        {"x": 1, "y": 2},
        "red",
        "2024-01-02",
    ]


def test_json_codec_keeps_bytes_as_attachments() -> None:
    parser = JSONParser(JSONCodec(default=extended_default))
    parts = parser.encode_event("/chat", "x", [b"\x01", {"d": decimal.Decimal(2)}], 3)
    assert parts == ['51-/chat,3["x",{"_placeholder":true,"num":0},{"d":"2"}]', b"\x01"]
    assert parser.encode_ack("/", 1, [b"\x02"]) == [
        '61-1[{"_placeholder":true,"num":0}]',
        b"\x02",
    ]
    with pytest.raises(LocalProtocolError, match="JSON codec"):
        JSONParser(JSONCodec()).encode_event("/", "x", [WHEN])
    with pytest.raises(PacketTooLarge):
        parser.encode_event("/", "x", [b"x" * 100], max_bytes=50)


def test_json_codec_decodes_with_its_loads() -> None:
    calls: list[str] = []

    class Codec:
        def dumps(self, obj: Any) -> str:
            return json.dumps(obj)

        def loads(self, text: str) -> Any:
            calls.append(text)
            return json.loads(text)

    decoder = JSONParser(Codec()).decoder(10, 1000)
    assert decoder.receive_text_event('2["a",1]') == ("a", [1], None)  # (the hot path's form)
    assert decoder.receive_text('2["b"]') == Event("/", "b", [])
    assert decoder.receive_text('0/chat,{"t":1}') == Connect("/chat", {"t": 1})
    assert calls == ['["a",1]', '["b"]', '{"t":1}']
    with pytest.raises(PacketError, match="invalid JSON"):
        JSONParser(Codec()).decoder(10, 1000).receive_text("2[nope")


def test_orjson_as_the_codec() -> None:
    orjson = pytest.importorskip("orjson")
    parser = JSONParser(orjson)
    parts = parser.encode_event("/", "x", [WHEN, uuid.UUID(int=1), Point(1, 2), b"\x09"])
    assert parts == [
        '51-["x","2024-01-02T03:04:05.006000+00:00","00000000-0000-0000-0000-000000000001",'
        '{"x":1,"y":2},{"_placeholder":true,"num":0}]',
        b"\x09",
    ]
    decoder = parser.decoder(10, 1000)
    assert decoder.receive_text('2["é",{"a":[1.5]}]') == Event("/", "é", [{"a": [1.5]}])
    with pytest.raises(PacketError, match="reserved"):
        decoder.receive_text('2["connect"]')

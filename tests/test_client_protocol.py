"""The client's sans-IO parts: pyserver.engineio.client (OPEN packet, request targets,
heartbeat) and pyserver.socketio.client (CONNECT packets, backoff, the inbox's delivery
rules, the send buffer, ack values, the hot path for acks). Plain functions, no I/O."""

from __future__ import annotations

import pytest

from pyserver.engineio.client import Heartbeat, engine_target, parse_open
from pyserver.engineio.packets import Packet, PacketError, PacketType
from pyserver.socketio.client import (
    Backoff,
    BufferFull,
    Delivery,
    Inbox,
    Received,
    SendBuffer,
    ack_args,
    client_decoder,
    connect_message,
    connect_packet,
    parse_connected,
    plain_ack,
    reply_value,
)
from pyserver.socketio.decoder import PacketDecoder
from pyserver.socketio.packets import Ack, Connect
from pyserver.socketio.packets import PacketError as SioPacketError

OPEN = (
    '{"sid":"abc","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,'
    '"maxPayload":1000000}'
)


def test_parse_open() -> None:
    info = parse_open(Packet(PacketType.OPEN, OPEN))
    assert info.sid == "abc" and info.upgrades == ("websocket",)
    assert (info.ping_interval, info.ping_timeout, info.max_payload) == (25.0, 20.0, 1_000_000)


@pytest.mark.parametrize(
    "data",
    [
        "not json",
        "[]",
        '{"upgrades":[],"pingInterval":1,"pingTimeout":1}',
        '{"sid":"a","upgrades":"websocket","pingInterval":1,"pingTimeout":1}',
        '{"sid":"a","upgrades":[],"pingInterval":0,"pingTimeout":1}',
        '{"sid":"a","upgrades":[],"pingInterval":1,"pingTimeout":1.5}',
    ],
)
def test_parse_open_refuses(data: str) -> None:
    with pytest.raises(PacketError):
        parse_open(Packet(PacketType.OPEN, data))
    with pytest.raises(PacketError):
        parse_open(Packet(PacketType.MESSAGE, OPEN))


def test_engine_target_keeps_the_application_query_but_not_its_engine_keys() -> None:
    target = engine_target(
        "/socket.io/", [("room", "a b"), ("EIO", "3"), ("sid", "x")], transport="polling", sid="s"
    )
    assert target == "/socket.io/?room=a+b&EIO=4&transport=polling&sid=s"


def test_heartbeat_deadline_moves_with_each_ping() -> None:
    info = parse_open(Packet(PacketType.OPEN, OPEN))
    heartbeat = Heartbeat(info, now=100.0)
    assert heartbeat.deadline == 145.0 and not heartbeat.expired(144.9)
    heartbeat.ping_received(now=120.0)
    assert heartbeat.deadline == 165.0 and not heartbeat.expired(150.0)
    assert heartbeat.expired(165.0)


def test_connect_packet() -> None:
    assert connect_packet("/", None, None, None) == "0"
    assert connect_packet("/chat", {"token": "é"}, None, None) == '0/chat,{"token":"é"}'
    # recovery: pid and offset first, auth after (socket.io-client's order)
    assert (
        connect_packet("/", {"token": "t"}, "p1", "o9") == '0{"pid":"p1","offset":"o9","token":"t"}'
    )
    assert connect_packet("/", None, "p1", None) == '0{"pid":"p1","offset":null}'


def test_parse_connected() -> None:
    decoder = PacketDecoder()
    packet = decoder.receive_text('0/chat,{"sid":"s1","pid":"p1"}')
    assert isinstance(packet, Connect)
    assert parse_connected(packet) == ("s1", "p1")
    assert parse_connected(Connect("/", {"sid": "s2"})) == ("s2", None)
    with pytest.raises(SioPacketError):
        parse_connected(Connect("/", {"pid": "p"}))


def test_backoff_is_socket_io_clients() -> None:
    backoff = Backoff()  # 1 s, 5 s, factor 2, jitter 0.5
    # rand 0: no deviation; doubling from 1 s, capped at 5 s
    assert [backoff.duration(0.0) for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    backoff.reset()
    # int(rand * 10) odd: up by rand * jitter; even: down
    assert backoff.duration(0.15) == 1.075
    assert backoff.duration(0.25) == 1.75
    assert backoff.attempts == 2
    backoff.reset()
    assert backoff.attempts == 0
    # a first delay over the cap is capped, as in socket.io-client
    assert Backoff(min=30.0, max=5.0).duration(0.0) == 5.0
    with pytest.raises(ValueError):
        Backoff(jitter=2.0)


def test_inbox_keeps_until_a_handler_then_delivers_in_order() -> None:
    inbox = Inbox()
    events = [Received("a", [1]), Received("b", [2]), Received("a", [3])]
    assert [inbox.arrive(e) for e in events] == [Delivery.KEPT] * 3
    assert [e.args for e in inbox.add_handler("a")] == [[1], [3]]
    assert inbox.arrive(Received("a", [4])) is Delivery.HANDLER
    assert [e.name for e in inbox] == ["b"]


def test_inbox_waiter_takes_the_oldest_kept_or_the_next() -> None:
    inbox = Inbox()
    inbox.arrive(Received("w", [1]))
    inbox.arrive(Received("w", [2]))
    taken = inbox.add_waiter("w")
    assert taken is not None and taken.args == [1]
    assert inbox.add_waiter("x") is None
    inbox.add_handler("x")
    assert inbox.arrive(Received("x", [])) is Delivery.WAITER  # a waiter goes before a handler
    assert inbox.arrive(Received("x", [])) is Delivery.HANDLER
    assert inbox.add_waiter("y") is None
    inbox.remove_waiter("y")
    assert inbox.arrive(Received("y", [])) is Delivery.KEPT


def test_inbox_iteration_takes_what_was_kept_first() -> None:
    inbox = Inbox()
    inbox.arrive(Received("a", [1]))
    inbox.arrive(Received("b", [2]))
    inbox.start_iteration()
    assert inbox.arrive(Received("c", [3])) is Delivery.ITERATION
    got = []
    while (event := inbox.pop_for_iteration()) is not None:
        got.append(event.args[0])
    assert got == [1, 2, 3]


def test_inbox_is_bounded_dropping_the_oldest() -> None:
    inbox = Inbox(max_events=3)
    for i in range(5):
        inbox.arrive(Received("e", [i]))
    assert [e.args[0] for e in inbox] == [2, 3, 4] and inbox.dropped == 2
    inbox.start_iteration()
    inbox.arrive(Received("e", [5]))
    assert [e.args[0] for e in inbox] == [3, 4, 5] and inbox.dropped == 3


def test_send_buffer_is_bounded() -> None:
    buffer = SendBuffer(max_packets=2)
    buffer.add(["2a"])
    buffer.add(["2b"])
    with pytest.raises(BufferFull):
        buffer.add(["2c"])
    assert buffer.drain() == [["2a"], ["2b"]] and len(buffer) == 0


def test_ack_values_as_the_server_gives_them() -> None:
    assert ack_args(None) == [] and ack_args((1, 2)) == [1, 2] and ack_args([1, 2]) == [[1, 2]]
    assert reply_value([]) is None and reply_value([5]) == 5 and reply_value([1, b"x"]) == (1, b"x")


@pytest.mark.parametrize(
    "text",
    [
        '30["x"]',
        "3123[]",
        '37[1,"two",{"three":[3]},null,true,1.5]',
        "3007[0]",
        '3999999999999999[""]',  # 15 digits
        '31["caf\u00e9 \\\\ \\"q\\" \u2603"]',  # non-ASCII, escaped quotes/backslashes
    ],
)
def test_plain_ack_reads_what_the_decoder_reads(text: str) -> None:
    packet = PacketDecoder().receive_text(text)
    assert type(packet) is Ack and packet.namespace == "/"
    assert plain_ack(text) == (packet.ack_id, packet.args)


@pytest.mark.parametrize(
    "text",
    [
        '3["no id"]',
        "3x[1]",
        "3\u0661[1]",  # a digit, but not ASCII
        '31 ["space"]',
        '31["x"] ',  # whitespace after: the decoder's full decode decides
        '31["x"]junk',
        '31{"not":"a list"}',
        "31[1,",
        '31["\\ud800"]',  # a lone surrogate: the decoder mends it
        '31["\\u00e9"]',  # any \\u escape goes to the decoder
        '3/chat,1["x"]',
        '361-["x",{"_placeholder":true,"num":0}]',
        "3" + "1" * 16 + "[1]",  # 16 digits: the decoder's range check
        '21["event"]',
        "",
    ],
)
def test_plain_ack_leaves_anything_else_to_the_decoder(text: str) -> None:
    assert plain_ack(text) is None


# -- other parsers (parser="msgpack", json=codec) ----------------------------------------------


def test_connect_message_in_msgpack() -> None:
    """The CONNECT a msgpack client sends is one binary message the server's msgpack decoder
    reads as the same CONNECT (auth, then recovery's pid and offset)."""
    pytest.importorskip("msgpack")
    from pyserver.socketio.msgpack_parser import MsgpackParser

    parser = MsgpackParser()
    plain = connect_message(parser, "/chat", None, None, None)
    assert type(plain) is bytes
    assert parser.decoder(0, 0).receive_binary(plain) == Connect("/chat")
    again = connect_message(parser, "/", {"token": "t"}, "p1", "o2")
    assert parser.decoder(0, 0).receive_binary(again) == Connect(
        "/", {"pid": "p1", "offset": "o2", "token": "t"}
    )
    assert connect_message(None, "/", {"a": 1}, None, None) == '0{"a":1}'


def test_client_decoder_reads_a_msgpack_connect_error_in_full() -> None:
    """The server's CONNECT_ERROR ``{message, data}`` (what Node's and pyserver's msgpack
    servers send): the client's decoder gives both (the server-role decoder gives neither)."""
    pytest.importorskip("msgpack")
    from pyserver.socketio.msgpack_parser import MsgpackParser
    from pyserver.socketio.packets import ConnectError

    parser = MsgpackParser()
    refusal = parser.encode_connect_error("/admin", "Authentication error", {"why": b"\x01"})
    decoder = client_decoder(parser, 10, 1000)
    assert decoder.receive_binary(refusal) == ConnectError(
        "/admin", "Authentication error", {"why": b"\x01"}
    )
    plain = parser.encode_connect_error("/", "nope")
    assert client_decoder(parser, 10, 1000).receive_binary(plain) == ConnectError("/", "nope")
    # everything else as the parser's own decoder reads it
    event = parser.encode_event("/", "hi", [1, b"\x02"], 7)[0]
    assert type(event) is bytes
    assert decoder.receive_binary(event) == parser.decoder(0, 0).receive_binary(event)


def test_client_decoder_for_the_builtin_parser_and_a_codec() -> None:
    from pyserver.socketio.parsers import JSONCodec, JSONParser

    assert type(client_decoder(None, 10, 1000)) is PacketDecoder
    decoder = client_decoder(JSONParser(JSONCodec()), 10, 1000)
    assert decoder.receive_text('3/x,4["a"]') == Ack("/x", 4, ["a"])

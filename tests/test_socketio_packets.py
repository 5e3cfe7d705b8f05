"""The Socket.IO v5 packet codec: the protocol document's examples, round trips, every error."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyserver.socketio import (
    MAX_ACK_ID,
    RESERVED_EVENTS,
    Ack,
    Connect,
    ConnectError,
    DecoderState,
    Disconnect,
    Event,
    LocalProtocolError,
    Packet,
    PacketDecoder,
    PacketError,
    PacketType,
    RemoteProtocolError,
    Sid,
    encode_ack,
    encode_connect,
    encode_connect_error,
    encode_disconnect,
    encode_event,
)


def decode(*messages: str | bytes, decoder: PacketDecoder | None = None) -> Packet | None:
    """Feed messages in order; return what the last one produced."""
    decoder = decoder or PacketDecoder()
    result: Packet | None = None
    for message in messages:
        if isinstance(message, str):
            result = decoder.receive_text(message)
        else:
            result = decoder.receive_binary(message)
    return result


def placeholder(num: int) -> str:
    return '{"_placeholder":true,"num":' + str(num) + "}"


P0, P1 = placeholder(0), placeholder(1)


# ------------------------------------------------------------------ the protocol document


@pytest.mark.parametrize(
    ("wire", "packet"),
    [
        ("0", Connect("/")),
        ('0{"sid":"wZX3oN0bSVIhsaknAAAI"}', Connect("/", {"sid": "wZX3oN0bSVIhsaknAAAI"})),
        ("0/admin,", Connect("/admin")),
        ('0/admin,{"token":"123"}', Connect("/admin", {"token": "123"})),
        ('4{"message":"Not authorized"}', ConnectError("/", "Not authorized")),
        ('2["foo"]', Event("/", "foo", [])),
        ('2["hello",1]', Event("/", "hello", [1])),
        ('2/admin,["bar"]', Event("/admin", "bar", [])),
        ('212["foo"]', Event("/", "foo", [], 12)),
        ('2/admin,13["foo"]', Event("/admin", "foo", [], 13)),
        ('2/admin,456["project:delete",123]', Event("/admin", "project:delete", [123], 456)),
        ("312[]", Ack("/", 12, [])),
        ('3/admin,13["bar"]', Ack("/admin", 13, ["bar"])),
        ("3/admin,456[]", Ack("/admin", 456, [])),
        ('314["bar"]', Ack("/", 14, ["bar"])),
        ("1", Disconnect("/")),
        ("1/admin,", Disconnect("/admin")),
    ],
)
def test_spec_text_examples_decode(wire: str, packet: Packet) -> None:
    assert decode(wire) == packet


@pytest.mark.parametrize(
    ("messages", "packet"),
    [
        (
            ["51-" + '["baz",' + P0 + "]", b"\x01\x02\x03\x04"],
            Event("/", "baz", [b"\x01\x02\x03\x04"]),
        ),
        (
            ['51-["hello",' + P0 + "]", b"\x01"],
            Event("/", "hello", [b"\x01"]),
        ),
        (
            [
                '52-/admin,["baz",' + P0 + "," + P1 + "]",
                b"\x01\x02",
                b"\x03\x04",
            ],
            Event("/admin", "baz", [b"\x01\x02", b"\x03\x04"]),
        ),
        (
            ['51-14["foo",' + P0 + "]", b"\x01\x02\x03\x04"],
            Event("/", "foo", [b"\x01\x02\x03\x04"], 14),
        ),
        (
            ['61-15["bar",' + P0 + "]", b"\x01\x02\x03\x04"],
            Ack("/", 15, ["bar", b"\x01\x02\x03\x04"]),
        ),
        (["61-/admin,456[" + P0 + "]", b"\xff"], Ack("/admin", 456, [b"\xff"])),
        (["61-/admin,1[" + P0 + "]", b"\xff"], Ack("/admin", 1, [b"\xff"])),
    ],
)
def test_spec_binary_examples_decode(messages: list[str | bytes], packet: Packet) -> None:
    assert decode(*messages) == packet


def test_spec_examples_encode() -> None:
    assert encode_connect("/", Sid("wZX3oN0bSVIhsaknAAAI")) == '0{"sid":"wZX3oN0bSVIhsaknAAAI"}'
    assert (
        encode_connect("/admin", Sid("oSO0OpakMV_3jnilAAAA"))
        == '0/admin,{"sid":"oSO0OpakMV_3jnilAAAA"}'
    )
    assert encode_connect_error("/", "Not authorized") == '4{"message":"Not authorized"}'
    assert encode_event("/", "foo") == ['2["foo"]']
    assert encode_event("/", "hey", ["Jude"]) == ['2["hey","Jude"]']
    assert encode_event("/admin", "bar") == ['2/admin,["bar"]']
    assert encode_event("/", "foo", (), 12) == ['212["foo"]']
    assert encode_event("/admin", "foo", [], 13) == ['2/admin,13["foo"]']
    assert encode_event("/", "baz", [b"\x01\x02\x03\x04"]) == [
        '51-["baz",' + P0 + "]",
        b"\x01\x02\x03\x04",
    ]
    assert encode_event("/admin", "baz", [b"\x01\x02", b"\x03\x04"]) == [
        '52-/admin,["baz",' + P0 + "," + P1 + "]",
        b"\x01\x02",
        b"\x03\x04",
    ]
    assert encode_event("/", "foo", [b"\x01\x02\x03\x04"], 14) == [
        '51-14["foo",' + P0 + "]",
        b"\x01\x02\x03\x04",
    ]
    assert encode_ack("/", 12, []) == ["312[]"]
    assert encode_ack("/admin", 13, ["bar"]) == ['3/admin,13["bar"]']
    assert encode_ack("/", 15, ["bar", b"\x01\x02\x03\x04"]) == [
        '61-15["bar",' + P0 + "]",
        b"\x01\x02\x03\x04",
    ]
    assert encode_ack("/admin", 1, [b"\x00"]) == ["61-/admin,1[" + P0 + "]", b"\x00"]
    assert encode_disconnect("/") == "1"
    assert encode_disconnect("/admin") == "1/admin,"


# ------------------------------------------------------------------ encoding details


def test_encode_connect_with_pid_and_connect_error_with_data() -> None:
    assert encode_connect("/", Sid("s"), pid="p") == '0{"sid":"s","pid":"p"}'
    assert (
        encode_connect_error("/chat", "nope", {"code": 7})
        == '4/chat,{"message":"nope","data":{"code":7}}'
    )


def test_encode_is_compact_and_keeps_unicode() -> None:
    assert encode_event("/", "msg", [{"a": [1, 2]}, "héllo ☃"]) == [
        '2["msg",{"a":[1,2]},"héllo ☃"]'
    ]


def test_encode_binary_types_nested_in_order() -> None:
    args = [{"a": bytearray(b"1"), "b": [memoryview(b"22"), (b"333",)]}, b"4444"]
    text, *attachments = encode_event("/", "up", args)
    p2, p3 = placeholder(2), placeholder(3)
    assert text == '54-["up",{"a":' + P0 + ',"b":[' + P1 + ",[" + p2 + "]]}," + p3 + "]"
    assert attachments == [b"1", b"22", b"333", b"4444"]
    assert all(type(a) is bytes for a in attachments)


def test_encode_tuples_become_arrays() -> None:
    assert encode_ack("/", 1, (1, (2, 3))) == ["31[1,[2,3]]"]


@pytest.mark.parametrize("event", ["connect", "disconnect", "disconnecting", "newListener"])
def test_encode_refuses_reserved_event_names(event: str) -> None:
    with pytest.raises(LocalProtocolError):
        encode_event("/", event)


@pytest.mark.parametrize(
    ("call", "args"),
    [
        (encode_event, ("/", 3)),
        (encode_event, ("admin", "e")),
        (encode_event, ("/a,b", "e")),
        (encode_event, ("/", "e", [], -1)),
        (encode_event, ("/", "e", [], MAX_ACK_ID + 1)),
        (encode_event, ("/", "e", [], True)),
        (encode_event, ("/", "e", [float("nan")])),
        (encode_event, ("/", "e", [{1, 2}])),
        (encode_ack, ("/", None, [])),
        (encode_ack, ("/", 1, [object()])),
        (encode_connect_error, ("/", "m", b"bin")),
        (encode_disconnect, ("x",)),
    ],
)
def test_encode_misuse_is_a_local_error(call: Any, args: tuple[Any, ...]) -> None:
    with pytest.raises(LocalProtocolError):
        call(*args)


def test_encode_circular_data_is_a_local_error() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(LocalProtocolError):
        encode_event("/", "e", [loop])


# ------------------------------------------------------------------ decoding details


def test_decoder_states_through_a_binary_packet() -> None:
    decoder = PacketDecoder()
    assert decoder.state is DecoderState.AWAITING_PACKET
    assert decoder.receive_text('52-["e",' + P1 + "," + P0 + "]") is None
    assert decoder.state is DecoderState.AWAITING_ATTACHMENTS
    assert decoder.attachments_missing == 2
    assert decoder.receive_binary(bytearray(b"a")) is None
    assert decoder.attachments_missing == 1
    assert decoder.receive_binary(memoryview(b"b")) == Event("/", "e", [b"b", b"a"])
    assert decoder.state is DecoderState.AWAITING_PACKET
    assert decoder.receive_text('2["next"]') == Event("/", "next", [])


def test_placeholder_in_a_plain_event_stays_an_object() -> None:
    assert decode('2["e",' + P0 + "]") == Event("/", "e", [{"_placeholder": True, "num": 0}])


def test_placeholder_used_twice_is_refused() -> None:
    # stricter than the reference parser (issue 20, attachment amplification)
    with pytest.raises(PacketError, match="two placeholders"):
        decode('51-["e",' + P0 + ',{"x":' + P0 + "}]", b"z")


def test_connect_error_forms() -> None:
    assert decode('4"plain"') == ConnectError("/", "plain")
    assert decode('4/x,{"message":"m","data":[1]}') == ConnectError("/x", "m", [1])
    assert decode('4{"data":1}') == ConnectError("/", "", 1)


def test_namespace_without_comma_runs_to_the_end() -> None:
    assert decode("0/admin") == Connect("/admin")
    assert decode("1/admin") == Disconnect("/admin")


def test_explicit_main_namespace() -> None:
    assert decode('2/,["e"]') == Event("/", "e", [])


def test_event_args_keep_json_types() -> None:
    assert decode('2["e",null,true,1.5,"s",{"k":[]}]') == Event(
        "/", "e", [None, True, 1.5, "s", {"k": []}]
    )


def test_lone_surrogates_become_replacement_characters() -> None:
    packet = decode(r'2["\ud800x","\udc00","\ud83d\ude00","\\ud800","\\\ud800"]')
    assert isinstance(packet, Event)
    assert packet.event == "\ufffdx"
    assert packet.args == ["\ufffd", "\U0001f600", "\\ud800", "\\\ufffd"]
    for arg in packet.args:
        arg.encode("utf-8")


def test_largest_ack_id() -> None:
    assert decode(f'2{MAX_ACK_ID}["e"]') == Event("/", "e", [], MAX_ACK_ID)
    assert encode_event("/", "e", [], MAX_ACK_ID) == [f'2{MAX_ACK_ID}["e"]']


def test_limits_are_configurable() -> None:
    decoder = PacketDecoder(max_attachments=20, max_attachment_bytes=4)
    body = ",".join(placeholder(i) for i in range(20))
    assert decoder.receive_text('520-["e",' + body + "]") is None
    for _ in range(3):
        decoder.receive_binary(b"a")
    with pytest.raises(PacketError, match="too large"):
        decoder.receive_binary(b"ab")
    with pytest.raises(ValueError):
        PacketDecoder(max_attachments=-1)


def test_attachment_bytes_limit_is_inclusive() -> None:
    packet = decode('51-["e",' + P0 + "]", b"abcd", decoder=PacketDecoder(max_attachment_bytes=4))
    assert packet == Event("/", "e", [b"abcd"])


def test_packet_error_is_remote_and_fails_the_decoder() -> None:
    decoder = PacketDecoder()
    with pytest.raises(RemoteProtocolError) as caught:
        decoder.receive_text("9")
    assert isinstance(caught.value, PacketError)
    assert caught.value.close_reason == "parse error"
    assert decoder.state is DecoderState.FAILED
    with pytest.raises(LocalProtocolError):
        decoder.receive_text('2["e"]')
    with pytest.raises(LocalProtocolError):
        decoder.receive_binary(b"x")


def test_sans_io_modules_import_no_io() -> None:
    root = Path(__file__).resolve().parent.parent / "pyserver"
    sources = sorted((root / "socketio").glob("*.py"))
    forbidden = re.compile(r"^\s*(import|from)\s+(trio|socket|time|asyncio)\b", re.MULTILINE)
    for source in sources:
        assert not forbidden.search(source.read_text()), source


def test_packet_types_are_the_wire_digits() -> None:
    assert [int(t) for t in PacketType] == list(range(7))
    assert PacketType(5) is PacketType.BINARY_EVENT


# ------------------------------------------------------------------ every error case


@pytest.mark.parametrize(
    ("messages", "reason"),
    [
        ([""], "empty"),
        (["7"], "unknown packet type"),
        (["x"], "unknown packet type"),
        (['\u0662["e"]'], "unknown packet type"),
        (["2"], "event payload"),
        (["2[]"], "event payload"),
        (['2{"a":1}'], "event payload"),
        (['2"e"'], "event payload"),
        (["2[1]"], "event name"),
        (["2[null]"], "event name"),
        (['2[["e"]]'], "event name"),
        (['2["connect"]'], "reserved"),
        (['2["connect_error"]'], "reserved"),
        (['2["disconnect",1]'], "reserved"),
        (['2["disconnecting"]'], "reserved"),
        (['2["newListener"]'], "reserved"),
        (['2["removeListener"]'], "reserved"),
        (['21["removeListener"]'], "reserved"),
        (['2["e"'], "JSON"),
        (['2["e"]x'], "JSON"),
        (['2["e"]]'], "JSON"),
        (['2["e",NaN]'], "JSON"),
        (['2["e",Infinity]'], "JSON"),
        (['2["e",-Infinity]'], "JSON"),
        (["2['e']"], "JSON"),
        (['2/admin["e"]'], "event payload"),
        (['2/admin,x["e"]'], "JSON"),
        (['2\u0661["e"]'], "JSON"),
        (['212345678901234567["e"]'], "ack id"),
        (['29007199254740992["e"]'], "ack id"),
        (["3[]"], "ack without ack id"),
        (["31"], "ack payload"),
        (['31{"a":1}'], "ack payload"),
        (["31null"], "ack payload"),
        (["0[]"], "connect payload"),
        (['0"tok"'], "connect payload"),
        (["0null"], "connect payload"),
        (['0/admin,{"a":1}x'], "JSON"),
        (["01"], "ack id"),
        (["1null"], "disconnect"),
        (["1{}"], "disconnect"),
        (["1/admin,{}"], "disconnect"),
        (["11"], "ack id"),
        (["4"], "connect error"),
        (["4[]"], "connect error"),
        (["41{}"], "ack id"),
        (['5["e",{}]'], "attachment count"),
        (['5-["e"]'], "attachment count"),
        (['51["e"]'], "attachment count"),
        (['5a-["e"]'], "attachment count"),
        (['50-["e"]'], "at least 1"),
        (['511-["e"]'], "too many"),
        (['51234567-["e"]'], "attachment count"),
        (['51-["connect",' + P0 + "]"], "reserved"),
        (["51-[" + P0 + "]"], "event name"),
        (['51-{"a":1}'], "event payload"),
        (["61-[" + P0 + "]"], "ack without ack id"),
        (['61-1{"a":1}'], "ack payload"),
        ([b"\x01"], "no attachment was expected"),
        (['2["e"]', b"\x01"], "no attachment was expected"),
        (['51-["e",' + P0 + "]", b"a", b"b"], "no attachment was expected"),
        (['52-["e",' + P0 + "," + P1 + "]", b"a", '2["e"]'], "text packet"),
        (['51-["e",' + P1 + "]", b"a"], "refers to no attachment"),
        (['51-["e",{"_placeholder":true,"num":-1}]', b"a"], "refers to no attachment"),
        (['51-["e",{"_placeholder":true,"num":"0"}]', b"a"], "refers to no attachment"),
        (['51-["e",{"_placeholder":true,"num":0.0}]', b"a"], "refers to no attachment"),
        (['51-["e",{"_placeholder":true,"num":true}]', b"a"], "refers to no attachment"),
        (['51-["e",{"_placeholder":true}]', b"a"], "refers to no attachment"),
        (['51-["e",{"k":[{"_placeholder":true,"num":3}]}]', b"a"], "refers to no attachment"),
        (['52-["e",' + P0 + "]", b"a", b"b"], "without a placeholder"),
        (['51-["e"]', b"a"], "without a placeholder"),
        (['2["e",' + "[" * 100_000 + "]" * 100_000 + "]"], "JSON"),
        (['2["e",1%s]' % ("0" * 5000)], "JSON"),
    ],
)
def test_bad_packets_raise_packet_error(messages: list[str | bytes], reason: str) -> None:
    with pytest.raises(PacketError, match=reason):
        decode(*messages)


def test_attachments_over_the_byte_limit() -> None:
    decoder = PacketDecoder(max_attachment_bytes=3)
    decoder.receive_text('52-["e",' + P0 + "," + P1 + "]")
    decoder.receive_binary(b"ab")
    with pytest.raises(PacketError, match="too large"):
        decoder.receive_binary(b"cd")


# ------------------------------------------------------------------ properties

_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)


def _nested(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaves,
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
        ),
        max_leaves=20,
    )


_args = _nested(_json_scalars | st.binary(max_size=20))
_placeholders = st.builds(
    lambda num: {"_placeholder": True, "num": num}, st.integers(min_value=-1, max_value=3)
)
_json_with_placeholders = _nested(_json_scalars | _placeholders)
_event_names = st.text(max_size=12).filter(lambda s: s not in RESERVED_EVENTS)
_namespaces = st.just("/") | st.text(max_size=8).map(lambda s: "/" + s.replace(",", ""))
_ack_ids = st.none() | st.integers(min_value=0, max_value=MAX_ACK_ID)


@given(_namespaces, _event_names, st.lists(_args, max_size=5), _ack_ids)
@settings(max_examples=300)
def test_event_round_trip(namespace: str, event: str, args: list[Any], ack_id: int | None) -> None:
    messages = encode_event(namespace, event, args, ack_id)
    assert all(isinstance(m, bytes) for m in messages[1:])
    binary = len(messages) > 1
    assert messages[0][0] == ("5" if binary else "2")
    decoder = PacketDecoder(max_attachments=1000, max_attachment_bytes=10**6)
    assert decode(*messages, decoder=decoder) == Event(namespace, event, args, ack_id)
    assert decoder.state is DecoderState.AWAITING_PACKET


@given(_namespaces, st.integers(min_value=0, max_value=MAX_ACK_ID), st.lists(_args, max_size=5))
@settings(max_examples=200)
def test_ack_round_trip(namespace: str, ack_id: int, args: list[Any]) -> None:
    messages = encode_ack(namespace, ack_id, args)
    decoder = PacketDecoder(max_attachments=1000)
    assert decode(*messages, decoder=decoder) == Ack(namespace, ack_id, args)


@given(_namespaces, st.text(max_size=20), st.none() | st.text(max_size=20))
def test_connect_round_trip(namespace: str, sid: str, pid: str | None) -> None:
    expected = {"sid": sid} if pid is None else {"sid": sid, "pid": pid}
    assert decode(encode_connect(namespace, Sid(sid), pid)) == Connect(namespace, expected)


@given(_namespaces, st.text(max_size=20), st.none() | _json_scalars)
def test_connect_error_round_trip(namespace: str, message: str, data: Any) -> None:
    assert decode(encode_connect_error(namespace, message, data)) == ConnectError(
        namespace, message, data
    )


@given(_namespaces)
def test_disconnect_round_trip(namespace: str) -> None:
    assert decode(encode_disconnect(namespace)) == Disconnect(namespace)


_wire_texts = st.one_of(
    st.text(),
    st.text(st.characters(codec=None, exclude_categories=()), max_size=30),
    st.text(alphabet='0123456-/,[]{}":_placeholdrnum\\ud83ftx', max_size=40),
    st.builds(
        lambda head, body: head + json.dumps(body),
        st.sampled_from(["0", "1", "2", "3", "4", "51-", "61-", "52-/a,", "2/a,7", "31", "61-9"]),
        _json_with_placeholders,
    ),
)
_frames = st.lists(st.one_of(_wire_texts, st.binary(max_size=8)), max_size=6)


@given(_frames)
@settings(max_examples=500)
def test_fuzz_decoder_raises_only_packet_error(frames: list[str | bytes]) -> None:
    decoder = PacketDecoder()
    for frame in frames:
        try:
            if isinstance(frame, str):
                packet = decoder.receive_text(frame)
            else:
                packet = decoder.receive_binary(frame)
        except PacketError:
            assert decoder.state is DecoderState.FAILED
            return
        if packet is not None:
            assert type(packet) in (Connect, Disconnect, Event, Ack, ConnectError)
            assert packet.namespace.startswith("/")
            if isinstance(packet, Event):
                json.dumps(packet.args, default=bytes.hex, ensure_ascii=False).encode("utf-8")

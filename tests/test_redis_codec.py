"""The Redis adapter's wire format (pyserver.redis.codec) against the bytes Node's
@socket.io/redis-adapter 8.x wrote on a real Redis (docs: notes/redis-adapter-wire.md §1),
and the heartbeat table's stale rule (pyserver.redis.nodes); both sans-IO."""

from __future__ import annotations

import datetime as dt

import msgpack  # type: ignore[import-untyped]
import pytest

from pyserver.redis import codec
from pyserver.redis.codec import Channels, CodecError, RequestType
from pyserver.redis.nodes import NodeTable, heartbeat_message


def s(text: str) -> bytes:
    """A msgpack fixstr."""
    raw = text.encode()
    assert len(raw) < 32
    return bytes([0xA0 | len(raw)]) + raw


# io.emit("hello", 1, "two", {three:3}, Buffer.from([1,2]), new Date(0), null) [live]
LIVE_SAMPLE_1 = (
    b"\x93" + s("-qRwOy")
    + b"\x83" + s("type") + b"\x02"
    + s("data") + b"\x97" + s("hello") + b"\x01" + s("two") + b"\x81" + s("three") + b"\x03"
    + b"\xc4\x02\x01\x02" + b"\xd6\xff\x00\x00\x00\x00" + b"\xc0"
    + s("nsp") + s("/")
    + b"\x83" + s("rooms") + b"\x90" + s("except") + b"\x90" + s("flags") + b"\x80"
)  # fmt: skip

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def test_live_sample_1_is_encoded_byte_for_byte() -> None:
    data = ["hello", 1, "two", {"three": 3}, b"\x01\x02", EPOCH, None]
    assert codec.encode_broadcast("-qRwOy", "/", data, [], [], {}) == LIVE_SAMPLE_1


def test_live_sample_1_decodes() -> None:
    message = codec.decode_broadcast(LIVE_SAMPLE_1)
    assert message.uid == "-qRwOy"
    assert message.nsp == "/"
    assert message.data == ["hello", 1, "two", {"three": 3}, b"\x01\x02", EPOCH, None]
    assert message.rooms == frozenset() and message.except_rooms == frozenset()
    assert not message.volatile and message.compress
    # what a Socket.IO client gets from a Node server: the date as JSON.stringify writes it
    assert codec.for_client(message.data)[5] == "1970-01-01T00:00:00.000Z"
    assert codec.may_need_conversion(LIVE_SAMPLE_1)


def test_live_sample_2_one_room_volatile_float() -> None:
    ch = Channels("socket.io", "/")
    assert ch.broadcast(["r1"]) == "socket.io#/#r1#"
    payload = codec.encode_broadcast(
        "abcdef", "/", ["room-ev", 1.5], ["r1"], ["nobody"], {"volatile": True, "compress": False}
    )
    assert b"\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00" in payload  # float64 1.5
    message = codec.decode_broadcast(payload)
    assert message.rooms == {"r1"} and message.except_rooms == {"nobody"}
    assert message.volatile and not message.compress
    assert ch.room_of("socket.io#/#r1#") == "r1"
    assert ch.room_of("socket.io#/#") == ""
    assert ch.room_of("socket.io#/chat#r1#") is None
    assert not codec.may_need_conversion(payload)


def test_live_sample_3_two_rooms_use_the_namespace_channel() -> None:
    assert Channels("socket.io", "/").broadcast(["r1", "r2"]) == "socket.io#/#"
    assert Channels("socket.io", "/").broadcast([]) == "socket.io#/#"


def test_channel_names() -> None:
    ch = Channels("socket.io", "/chat")
    assert ch.request == "socket.io-request#/chat#"
    assert ch.response == "socket.io-response#/chat#"
    assert ch.specific_response("-qRwOy") == "socket.io-response#/chat#-qRwOy#"
    assert ch.pattern == "socket.io#/chat#*"
    assert Channels("k", "/a*b?[c]").pattern == "k#/a\\*b\\?\\[c\\]#*"
    assert codec.heartbeat_channel("socket.io") == "socket.io-heartbeat#"


def test_node_variants_are_accepted() -> None:
    # no flags, no nsp (means "/"), numeric rooms, the emitter's uid
    payload = msgpack.packb(
        ["emitter", {"type": 2, "data": ["ev", 1]}, {"rooms": [123, "x"], "except": [1.0]}],
        use_bin_type=True,
    )
    message = codec.decode_broadcast(payload)
    assert message.uid == "emitter" and message.nsp == "/"
    assert message.rooms == {"123", "x"} and message.except_rooms == {"1"}
    assert not message.volatile and message.compress
    assert codec.decode_broadcast(msgpack.packb(["u", {"data": ["e"], "nsp": "/x"}])).nsp == "/x"


def test_notepack_extensions() -> None:
    undefined = b"\xd4\x00\x00"
    array_buffer = b"\xc7\x03\x00abc"  # ext 8, type 0: an ArrayBuffer
    timestamp = b"\xd6\xff\x00\x00\x00\x01"
    other = b"\xd4\x05\x07"
    decoded = codec.decode(b"\x94" + undefined + array_buffer + timestamp + other)
    assert decoded[:3] == [None, b"abc", EPOCH + dt.timedelta(seconds=1)]
    assert decoded[3] == msgpack.ExtType(5, b"\x07")
    assert codec.for_client(decoded) == [None, b"abc", "1970-01-01T00:00:01.000Z", None]


def test_requests_json_or_msgpack_by_first_byte() -> None:
    fetch = {
        "uid": "abcdef",
        "requestId": "ghijkl",
        "type": 5,
        "opts": {"rooms": ["r1"], "except": []},
    }
    raw = codec.encode_json(fetch)
    assert raw == (
        b'{"uid":"abcdef","requestId":"ghijkl","type":5,"opts":{"rooms":["r1"],"except":[]}}'
    )
    assert codec.decode(raw) == fetch
    broadcast = {
        "uid": "abcdef",
        "requestId": "r",
        "type": RequestType.BROADCAST,
        "packet": {"type": 2, "data": ["ask", b"\x01"], "nsp": "/"},
        "opts": {"rooms": [], "except": [], "flags": {"timeout": 5000}},
    }
    packed = codec.encode_msgpack(broadcast)
    assert packed[0] & 0xF0 == 0x80  # a msgpack map, as Node writes it
    assert codec.decode(packed) == broadcast


def test_json_buffers_both_ways() -> None:
    assert codec.encode_json({"data": ["ev", b"\x01\x02"]}) == (
        b'{"data":["ev",{"type":"Buffer","data":[1,2]}]}'
    )
    assert codec.decode(b'{"data":["ev",{"type":"Buffer","data":[1,2]}]}') == {
        "data": ["ev", b"\x01\x02"]
    }
    # not a Buffer: left alone
    assert codec.decode(b'{"a":{"type":"Buffer","data":[300]}}') == {
        "a": {"type": "Buffer", "data": [300]}
    }


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"{not json",
        b"\xc1",  # never used in msgpack
        b"\x92\xa1u\x81\xa4data\x90",  # empty data
        b"\x92\x01\x80",  # uid is not a string
        b"\x91\xa1u",  # no packet
        msgpack.packb(["u", {"data": [1, 2]}]),  # event name not a string
        msgpack.packb({"uid": "u"}),
        b"\x93\xa1u\x80",  # truncated
    ],
)
def test_malformed_broadcasts_are_codec_errors(payload: bytes) -> None:
    with pytest.raises(CodecError):
        codec.decode_broadcast(payload)


def test_malformed_requests_are_codec_errors() -> None:
    for payload in (b"{", b"\xc1", b"\x93\xa1u"):
        with pytest.raises(CodecError):
            codec.decode(payload)


def test_unencodable_values_are_local_errors() -> None:
    with pytest.raises(TypeError):
        codec.encode_json({"x": object()})
    with pytest.raises(TypeError):
        codec.encode_msgpack({"x": object()})


def test_uids_look_like_uid2() -> None:
    from pyserver.trio.redis.remote import new_uid  # drawn by the shell, not the codec

    uids = {new_uid() for _ in range(50)}
    assert len(uids) == 50
    assert all(len(u) == 6 and u.replace("-", "").replace("_", "").isalnum() for u in uids)


def test_node_table_stale_rule() -> None:
    table = NodeTable("me", max_nodes=3)
    table.heartbeat(heartbeat_message("a", 1.0), now=100.0)
    table.heartbeat(heartbeat_message("b", 0.5), now=100.0)
    table.heartbeat(heartbeat_message("me", 1.0), now=100.0)  # our own: ignored
    assert "a" in table and "b" in table and "me" not in table
    assert table.stale(now=100.9, listening_since=0.0) == []
    assert table.stale(now=101.1, listening_since=0.0) == ["b"]  # 2 x 0.5 s
    assert sorted(table.stale(now=102.5, listening_since=0.0)) == ["a", "b"]
    # we were away ourselves: counted from when we listen again
    assert table.stale(now=102.5, listening_since=102.0) == []
    table.heartbeat(heartbeat_message("b", 0.5), now=102.4)
    assert table.stale(now=102.5, listening_since=0.0) == ["a"]
    # bounded: the node unheard of longest goes
    table.heartbeat(heartbeat_message("c", 1.0), now=103.0)
    table.heartbeat(heartbeat_message("d", 1.0), now=104.0)
    assert len(table) == 3 and "a" not in table
    # intervals are clamped, malformed heartbeats refused
    table.heartbeat(b'{"uid":"e","interval":1e9}', now=105.0)
    assert table.nodes["e"][1] == 3600.0
    for bad in (b"[1]", b'{"uid":1,"interval":1}', b'{"uid":"x"}', b"\xc1"):
        with pytest.raises(CodecError):
            table.heartbeat(bad, now=0.0)


def test_the_codec_and_node_table_do_not_load_trio() -> None:
    import subprocess
    import sys

    code = (
        "import sys, pyserver.redis.codec, pyserver.redis.nodes\n"
        "assert 'trio' not in sys.modules and 'asyncio' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

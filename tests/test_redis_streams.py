"""The streams adapter's wire (sans-IO, :mod:`pyserver.redis.streams`): stream entries as Node's
``@socket.io/redis-streams-adapter`` 0.3 writes and reads them (the live sample of the wire
notes), pub/sub messages, sessions, offsets and which stored broadcasts a session missed."""

from __future__ import annotations

import base64

import msgpack  # type: ignore[import-untyped]
import pytest

from pyserver.redis.codec import CodecError
from pyserver.redis.streams import (
    ClusterMessage,
    MessageType,
    channel,
    decode_entry,
    decode_message,
    decode_options,
    decode_session,
    encode_message,
    encode_options,
    encode_session,
    entry_fields,
    next_offset,
    offset_key,
    should_include,
    valid_offset,
)


def test_a_broadcast_entry_is_the_live_sample() -> None:
    data = {
        "packet": {"type": 2, "data": ["e2", {"x": 1}]},
        "opts": encode_options(["csr-room"], [], {}),
    }
    fields = entry_fields(ClusterMessage("803ba476875b7bf7", "/", MessageType.BROADCAST, data))
    assert fields == [
        b"uid", b"803ba476875b7bf7", b"nsp", b"/", b"type", b"3", b"data",
        b'{"packet":{"type":2,"data":["e2",{"x":1}]},'
        b'"opts":{"rooms":["csr-room"],"except":[],"flags":{}}}',
    ]  # fmt: skip
    decoded = decode_entry(dict(zip(fields[::2], fields[1::2], strict=True)))
    assert decoded == ClusterMessage("803ba476875b7bf7", "/", 3, data)


def test_binary_data_is_base64_msgpack_and_back() -> None:
    data = {"packet": {"type": 2, "data": ["bin", b"\x00\x01"]}, "opts": encode_options([], [], {})}
    fields = entry_fields(ClusterMessage("u", "/", MessageType.BROADCAST, data))
    raw = fields[fields.index(b"data") + 1]
    assert msgpack.unpackb(base64.b64decode(raw)) == data
    assert decode_entry(dict(zip(fields[::2], fields[1::2], strict=True))) == ClusterMessage(
        "u", "/", 3, data
    )
    # a room operation never holds binary: JSON (Node's rule: only types that may)
    join = entry_fields(ClusterMessage("u", "/", MessageType.SOCKETS_JOIN, {"rooms": ["a"]}))
    assert join[-1] == b'{"rooms":["a"]}'


def test_entries_node_skips_or_cannot_read() -> None:
    assert decode_entry({b"uid": b"u", b"type": b"2"}) is None  # no nsp: skipped
    heartbeat = decode_entry({b"uid": b"u", b"nsp": b"/", b"type": b"2"})
    assert heartbeat == ClusterMessage("u", "/", 2, None)
    with pytest.raises(CodecError):
        decode_entry({b"nsp": b"/", b"type": b"x"})
    with pytest.raises(CodecError):
        decode_entry({b"nsp": b"/", b"type": b"3", b"data": b"not base64!"})


def test_pubsub_messages_are_msgpack_maps() -> None:
    message = ClusterMessage("u", "/chat", MessageType.FETCH_SOCKETS, {"requestId": "r"})
    payload = encode_message(message)
    assert msgpack.unpackb(payload) == {"uid": "u", "nsp": "/chat", "type": 7,
                                        "data": {"requestId": "r"}}  # fmt: skip
    assert decode_message(payload) == message
    with pytest.raises(CodecError):
        decode_message(msgpack.packb([1, 2]))
    assert channel("p", "/") == "p#/#"
    assert channel("p", "/", "abc") == "p#/#abc#"


def test_options_decode_leniently() -> None:
    assert decode_options({"rooms": ["a", 12], "except": ["b"], "flags": {"volatile": True}}) == (
        frozenset({"a", "12"}),
        frozenset({"b"}),
        {"volatile": True},
    )
    assert decode_options(None) == (frozenset(), frozenset(), {})


def test_sessions_round_trip_as_node_writes_them() -> None:
    raw = encode_session("sid", "pid", {"sid", "room"}, {"u": "bob"})
    assert msgpack.unpackb(base64.b64decode(raw)) == {
        "sid": "sid", "pid": "pid", "rooms": ["room", "sid"], "data": {"u": "bob"},
    }  # fmt: skip
    session = decode_session(raw)
    assert (session.sid, session.pid, session.rooms, session.data) == (
        "sid", "pid", ("room", "sid"), {"u": "bob"},
    )  # fmt: skip
    with pytest.raises(CodecError):
        decode_session(base64.b64encode(msgpack.packb({"sid": 1})))


def test_offsets() -> None:
    assert valid_offset("1795699821457-1")
    for bad in ("abc", "1-", "-1", "1-2-3", "1 - 2", "9" * 30 + "-1", ""):
        assert not valid_offset(bad)
    assert next_offset("1795699821457-1") == "1795699821457-2"
    assert offset_key("10-2") < offset_key("10-10") < offset_key("11-0")


def test_which_stored_broadcasts_a_session_missed() -> None:
    mine = ["sid", "r"]
    assert should_include(mine, [], [])  # to everyone
    assert should_include(mine, ["r", "other"], [])
    assert not should_include(mine, ["other"], [])
    assert not should_include(mine, [], ["r"])  # excepted
    assert not should_include(mine, ["r"], ["sid"])

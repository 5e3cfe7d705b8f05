"""Fuzzing the decoders that face the network (issue 19, item 2), with hypothesis.

Each target takes arbitrary input, and mutations of a seed corpus built from valid encodings
(the test vectors: what the encoders produce), and holds one contract: the decoder returns,
or raises its documented error (a :class:`~pyserver.errors.ProtocolError`: the Engine.IO and
Socket.IO ``PacketError``, ``RespProtocolError``, the adapter's ``CodecError``); nothing
else escapes, and what it accepts stays within its bounds. Targets: the Engine.IO packet and
polling-payload decoders, the Socket.IO decoder fed a sequence of messages (text headers
with binary attachments), the RESP reader fed in chunks, and the adapter codecs (requests,
broadcasts, cluster messages, sharded messages, sessions).

The budget: ``PYSERVER_FUZZ_EXAMPLES`` examples per target (default 400: the bounded run of
scripts/test.sh, seconds in all); the README's development loop gives the longer local run.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyserver.engineio.packets import Packet, PacketType, decode_packet, decode_payload
from pyserver.engineio.packets import encode_payload as eio_encode_payload
from pyserver.errors import ProtocolError
from pyserver.redis import codec, streams
from pyserver.redis.resp import RespReader
from pyserver.socketio.decoder import PacketDecoder
from pyserver.socketio.packets import encode_ack, encode_connect, encode_event

EXAMPLES = int(os.environ.get("PYSERVER_FUZZ_EXAMPLES", "400"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def mutated(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    """A seed with a few random edits (overwrite, insert, delete, cut, splice), or raw
    bytes: coverage comes from the seeds' structure, surprise from the edits."""

    @st.composite
    def edit(draw: st.DrawFn) -> bytes:
        data = bytearray(draw(st.sampled_from(seeds)))
        for _ in range(draw(st.integers(0, 6))):
            op = draw(st.integers(0, 4))
            pos = draw(st.integers(0, len(data)))
            if op == 0 and pos < len(data):
                data[pos] = draw(st.integers(0, 255))
            elif op == 1:
                data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
            elif op == 2:
                del data[pos : pos + draw(st.integers(1, 8))]
            elif op == 3:
                del data[pos:]
            else:
                other = draw(st.sampled_from(seeds))
                data[pos:] = other[draw(st.integers(0, len(other))) :]
        return bytes(data)

    return st.one_of(edit(), st.binary(max_size=200))


def as_text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def contract(decode: Callable[[], Any]) -> Any:
    """Run ``decode``: its value, or None when it raised a ProtocolError (anything else
    escapes, and fails the target)."""
    try:
        return decode()
    except ProtocolError:
        return None


# -- Engine.IO ------------------------------------------------------------------------------

EIO_SEEDS = [
    b"0" + b'{"sid":"abc","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000}',
    b"2",
    b"3probe",
    b"4hello",
    b"4\xc3\xa9\xe2\x9c\x93",
    b"bAQID",
    b"5",
    b"6",
    b"1",
    eio_encode_payload(
        [Packet(PacketType.MESSAGE, "a"), Packet(PacketType.MESSAGE, b"\x01")]
    ).encode(),
    eio_encode_payload(
        [Packet(PacketType.PING, "probe"), Packet(PacketType.MESSAGE, "\x1e")]
    ).encode(),
]


@FUZZ
@given(mutated(EIO_SEEDS), st.booleans())
def test_fuzz_engineio_packet(data: bytes, binary: bool) -> None:
    packet = contract(lambda: decode_packet(data if binary else as_text(data)))
    if packet is not None:
        assert isinstance(packet.type, PacketType)


@FUZZ
@given(mutated(EIO_SEEDS), st.booleans())
def test_fuzz_engineio_payload(data: bytes, binary: bool) -> None:
    packets = contract(lambda: decode_payload(data if binary else as_text(data), max_packets=16))
    if packets is not None:
        assert len(packets) <= 16


# -- Socket.IO (a sequence of messages, with binary attachments) -------------------------


def _sio_seeds() -> list[bytes]:
    seeds: list[bytes] = []
    for parts in (
        encode_event("/", "chat", ["hi", {"n": 1}], None),
        encode_event("/admin", "file", [b"\x00\x01", {"b": b"xyz"}], 7),
        encode_ack("/", 3, [b"bin", "text"]),
        encode_ack("/x", 12, [None, [1, 2, 3]]),
        [encode_connect("/", "sid123")],
    ):
        for part in parts if isinstance(parts, list) else [parts]:
            seeds.append(part.encode() if isinstance(part, str) else bytes(part))
    seeds += [
        b'0{"token":"x"}',
        b"1/admin,",
        b'4/nsp,{"message":"no"}',
        b'51-["a",{"_placeholder":true,"num":0}]',
    ]
    return seeds


SIO_SEEDS = _sio_seeds()


@FUZZ
@given(st.lists(st.tuples(st.booleans(), mutated(SIO_SEEDS)), min_size=1, max_size=6))
def test_fuzz_socketio_decoder(messages: list[tuple[bool, bytes]]) -> None:
    decoder = PacketDecoder(max_attachments=4, max_attachment_bytes=4096)
    for binary, data in messages:
        feed = decoder.receive_binary if binary else decoder.receive_text
        result = contract(lambda: feed(data if binary else as_text(data)))  # noqa: B023
        if result is None and decoder.state.name == "FAILED":
            return  # a failed decoder stays failed: the connection closes
        assert decoder.attachments_missing <= 4


# -- RESP -----------------------------------------------------------------------------------

RESP_SEEDS = [
    b"+OK\r\n",
    b"-ERR wrong\r\n",
    b":12345\r\n",
    b"$5\r\nhello\r\n",
    b"$-1\r\n",
    b"*3\r\n$7\r\nmessage\r\n$4\r\nchan\r\n$3\r\nabc\r\n",
    b"*2\r\n*1\r\n:1\r\n$0\r\n\r\n",
    b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nx\r\n",
    b"*-1\r\n",
]


@FUZZ
@given(mutated(RESP_SEEDS), st.integers(1, 16))
def test_fuzz_resp_reader(data: bytes, chunk: int) -> None:
    reader = RespReader(max_bulk=1024)
    for i in range(0, len(data), chunk):
        try:
            reader.feed(data[i : i + chunk])
            reader.replies()
        except ProtocolError:
            return
        assert reader.buffered <= 1024 + 64 * 1024 + 16 * chunk


# -- the adapter codecs ---------------------------------------------------------------------


def _codec_seeds() -> list[bytes]:
    seeds = [
        codec.encode_msgpack({"type": 2, "uid": "u", "data": [1, "a", b"b"]}),
        codec.encode_json({"type": 4, "requestId": "r", "data": {"x": [1, 2]}}),
        codec.encode_msgpack(
            [
                "uid",
                {"type": 2, "data": ["ev", 1], "nsp": "/"},
                {"rooms": ["a"], "except": [], "flags": {}},
            ]
        ),
        streams.encode_session("sid", "pid", ["r1", "r2"], {"k": "v"}),
    ]
    return seeds


CODEC_SEEDS = _codec_seeds()
CODEC_DECODERS: list[Callable[[bytes], Any]] = [
    codec.decode,
    codec.decode_broadcast,
    streams.decode_message,
    streams.decode_sharded,
    streams.decode_session,
]


@FUZZ
@given(mutated(CODEC_SEEDS), st.sampled_from(CODEC_DECODERS))
def test_fuzz_adapter_codecs(data: bytes, decode: Callable[[bytes], Any]) -> None:
    contract(lambda: decode(data))

"""permessage-deflate (RFC 7692) in the Rust codec against CPython's zlib as the reference.

``deflate_raw``/``inflate_raw`` both ways, the Decoder and the Encoder with a negotiated
``Deflate`` (context takeover, windows, RSV1 rules), deflate bombs, and the
``negotiate_deflate``/``accept_deflate`` header logic on its own (the peers' handshake code
checks it in test_frames_interop.py).
"""

from __future__ import annotations

import json
import random
import zlib

import pytest
from helpers.framesref import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_TEXT,
    deflate_ref,
    frame_ref,
    inflate_ref,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyserver import _frames as F
from pyserver._frames import _testing as T

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MASK = bytes.fromhex("37fa213d")
WINDOWS = list(range(9, 16))


def chat_json(n_bytes: int, seed: int = 0) -> bytes:
    rng = random.Random(seed)
    names = ["ana", "bo", "chen", "dmitri", "eve", "fatima"]
    words = "hello there how is the drawing going see you in the lobby gg".split()
    out = bytearray()
    while len(out) < n_bytes:
        msg = {
            "type": "chat",
            "room": f"room-{rng.randint(1, 9)}",
            "from": rng.choice(names),
            "ts": 1_700_000_000 + rng.randint(0, 10**6),
            "text": " ".join(rng.choice(words) for _ in range(rng.randint(2, 12))),
        }
        out += json.dumps(msg).encode() + b"\n"
    return bytes(out[:n_bytes])


payloads = st.one_of(
    st.binary(max_size=3000),
    st.text(max_size=1000).map(str.encode),
    st.integers(0, 20_000).map(lambda n: chat_json(n, n)),
)


# --------------------------------------------------------------------------- raw streams


def test_rfc7692_hello_vectors() -> None:
    deflated = bytes.fromhex("f248cdc9c90700")
    assert T.inflate_raw(deflated, max_size=100) == b"Hello"
    assert T.deflate_raw(b"Hello") == deflated
    assert F.encode_message("Hello", deflate_window_bits=15) == bytes.fromhex("c107") + deflated
    # the same message in two fragments (RFC 7692 7.2.3.1 style), masked, to a server
    dec = F.Decoder(deflate=F.Deflate())
    wire = frame_ref(OP_TEXT, deflated[:3], fin=False, rsv1=True, mask=MASK) + frame_ref(
        OP_CONTINUATION, deflated[3:], mask=MASK
    )
    assert dec.feed(wire) == ["Hello"]


@SETTINGS
@given(data=payloads, level=st.integers(0, 9), window=st.sampled_from(WINDOWS))
def test_deflate_raw_inflates_with_zlib(data: bytes, level: int, window: int) -> None:
    out = T.deflate_raw(data, level=level, window_bits=window)
    assert not out.endswith(b"\x00\x00\xff\xff")
    assert inflate_ref(out, window_bits=window) == data


@SETTINGS
@given(data=payloads, level=st.integers(0, 9), window=st.sampled_from(WINDOWS))
def test_inflate_raw_reads_zlib(data: bytes, level: int, window: int) -> None:
    assert (
        T.inflate_raw(
            deflate_ref(data, level=level, window_bits=window),
            max_size=len(data),
            window_bits=window,
        )
        == data
    )


@pytest.mark.parametrize("window", WINDOWS)
def test_deflate_raw_respects_a_small_window(window: int) -> None:
    """Repeats 3000 bytes apart must not become back-references past the window."""
    block = random.Random(window).randbytes(3000)
    data = block * 4
    out = T.deflate_raw(data, window_bits=window)
    assert inflate_ref(out, window_bits=window) == data


def test_deflate_raw_compresses_chat_json() -> None:
    data = chat_json(16_384)
    assert len(T.deflate_raw(data)) < len(data) // 3


def test_inflate_raw_size_limit_is_1009() -> None:
    bomb = deflate_ref(bytes(10_000_000))
    assert len(bomb) < 20_000
    with pytest.raises(F.FrameError) as info:
        T.inflate_raw(bomb, max_size=1 << 20)
    assert info.value.code == 1009
    assert T.inflate_raw(deflate_ref(bytes(1000)), max_size=1000) == bytes(1000)
    with pytest.raises(F.FrameError) as info:
        T.inflate_raw(deflate_ref(bytes(1001)), max_size=1000)
    assert info.value.code == 1009


@pytest.mark.parametrize(
    "corrupt",
    [b"\xff\xff\xff\xff", b"\x07\x00", b"\x00\x05\x00\x00\x00"],  # BTYPE=11; LEN != ~NLEN
)
def test_inflate_raw_corrupt_stream_is_1007(corrupt: bytes) -> None:
    with pytest.raises(F.FrameError) as info:
        T.inflate_raw(corrupt, max_size=1 << 20)
    assert info.value.code == 1007


# --------------------------------------------------------------------------- Decoder + deflate


@SETTINGS
@given(
    msgs=st.lists(st.tuples(st.booleans(), payloads, st.booleans()), max_size=5),
    takeover=st.booleans(),
    window=st.sampled_from(WINDOWS),
    rng=st.randoms(use_true_random=False),
)
def test_decoder_inflates_reference_frames(
    msgs: list[tuple[bool, bytes, bool]],
    takeover: bool,
    window: int,
    rng: random.Random,
) -> None:
    """A zlib client, with or without context takeover, compressing some messages, fragmenting
    some (RSV1 on the first frame only), all fed in random chunk splits."""
    agreed = F.Deflate(client_no_context_takeover=not takeover, client_max_window_bits=window)
    comp = zlib.compressobj(6, zlib.DEFLATED, -window)
    wire = bytearray()
    want: list[object] = []
    for is_text, raw, compress in msgs:
        data = raw.decode() if is_text and _utf8(raw) else raw
        is_text = isinstance(data, str)
        body = raw
        if compress:
            if not takeover:
                comp = zlib.compressobj(6, zlib.DEFLATED, -window)
            body = (comp.compress(raw) + comp.flush(zlib.Z_SYNC_FLUSH))[:-4]
        cut = rng.randint(0, len(body))
        parts = [body[:cut], body[cut:]] if rng.random() < 0.5 else [body]
        for i, part in enumerate(parts):
            opcode = OP_CONTINUATION if i else (OP_TEXT if is_text else OP_BINARY)
            wire += frame_ref(
                opcode,
                part,
                fin=i == len(parts) - 1,
                rsv1=compress and i == 0,
                mask=rng.randbytes(4),
            )
        want.append(data)
    dec = F.Decoder(deflate=agreed)
    got: list[object] = []
    data_all = bytes(wire)
    at = 0
    while at < len(data_all):
        step = rng.randint(1, 5000)
        got.extend(dec.feed(data_all[at : at + step]))
        at += step
    assert got == want


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode()
    except UnicodeDecodeError:
        return False
    return True


def test_decoder_deflate_bomb_is_1009() -> None:
    bomb = deflate_ref(bytes(50_000_000))
    dec = F.Decoder(deflate=F.Deflate(), max_frame_size=1 << 20, max_message_size=1 << 20)
    with pytest.raises(F.FrameError) as info:
        dec.feed(frame_ref(OP_BINARY, bomb, rsv1=True, mask=MASK))
    assert info.value.code == 1009


def test_decoder_deflate_bomb_in_fragments_is_1009() -> None:
    """Each fragment inflates under the limit; the message does not. Error before FIN."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    dec = F.Decoder(deflate=F.Deflate(), max_message_size=1 << 20)
    first = comp.compress(bytes(700_000)) + comp.flush(zlib.Z_SYNC_FLUSH)
    assert dec.feed(frame_ref(OP_BINARY, first, fin=False, rsv1=True, mask=MASK)) == []
    second = comp.compress(bytes(700_000)) + comp.flush(zlib.Z_SYNC_FLUSH)
    with pytest.raises(F.FrameError) as info:
        dec.feed(frame_ref(OP_CONTINUATION, second, fin=False, mask=MASK))
    assert info.value.code == 1009


def test_decoder_inflated_message_at_limit_is_fine() -> None:
    dec = F.Decoder(deflate=F.Deflate(), max_message_size=100_000)
    body = deflate_ref(b"a" * 100_000)
    assert dec.feed(frame_ref(OP_TEXT, body, rsv1=True, mask=MASK)) == ["a" * 100_000]


def test_decoder_bad_utf8_after_inflate_is_1007() -> None:
    dec = F.Decoder(deflate=F.Deflate())
    with pytest.raises(F.FrameError) as info:
        dec.feed(frame_ref(OP_TEXT, deflate_ref(b"ok\xff"), rsv1=True, mask=MASK))
    assert info.value.code == 1007


def test_decoder_corrupt_deflate_stream_is_1007() -> None:
    dec = F.Decoder(deflate=F.Deflate())
    with pytest.raises(F.FrameError) as info:
        dec.feed(frame_ref(OP_BINARY, b"\xff\xff\xff\xff", rsv1=True, mask=MASK))
    assert info.value.code == 1007


@pytest.mark.parametrize("opcode", [OP_PING, OP_CLOSE])
def test_rsv1_on_control_frame_is_1002(opcode: int) -> None:
    dec = F.Decoder(deflate=F.Deflate())
    with pytest.raises(F.FrameError) as info:
        dec.feed(frame_ref(opcode, b"", rsv1=True, mask=MASK))
    assert info.value.code == 1002


def test_rsv1_on_continuation_is_1002() -> None:
    body = deflate_ref(b"hello hello")
    dec = F.Decoder(deflate=F.Deflate())
    wire = frame_ref(OP_TEXT, body[:2], fin=False, rsv1=True, mask=MASK) + frame_ref(
        OP_CONTINUATION, body[2:], rsv1=True, mask=MASK
    )
    with pytest.raises(F.FrameError) as info:
        dec.feed(wire)
    assert info.value.code == 1002


def test_rsv2_rsv3_stay_errors_with_deflate() -> None:
    for kw in ({"rsv2": True}, {"rsv3": True}):
        dec = F.Decoder(deflate=F.Deflate())
        with pytest.raises(F.FrameError) as info:
            dec.feed(frame_ref(OP_TEXT, b"x", mask=MASK, **kw))
        assert info.value.code == 1002


def test_client_decoder_uses_server_window_and_takeover() -> None:
    """The client role inflates the server's stream: server_* parameters apply."""
    agreed = F.Deflate(server_no_context_takeover=False, server_max_window_bits=10)
    comp = zlib.compressobj(6, zlib.DEFLATED, -10)
    dec = F.Decoder(client=True, deflate=agreed)
    block = chat_json(3000, 9)
    for _ in range(3):  # context takeover: later messages refer to earlier ones
        body = (comp.compress(block) + comp.flush(zlib.Z_SYNC_FLUSH))[:-4]
        assert dec.feed(frame_ref(OP_TEXT, body, rsv1=True)) == [block.decode()]


# --------------------------------------------------------------------------- Encoder + deflate


def frame_body(frame: bytes) -> tuple[int, bytes]:
    """(first byte, payload) of an unmasked or masked single frame."""
    size = frame[1] & 0x7F
    at = 2 + {126: 2, 127: 8}.get(size, 0)
    if frame[1] & 0x80:
        key = frame[at : at + 4]
        return frame[0], T.apply_mask_simple(frame[at + 4 :], key)
    return frame[0], frame[at:]


@pytest.mark.parametrize("client", [False, True], ids=["server", "client"])
@pytest.mark.parametrize("no_takeover", [False, True])
@pytest.mark.parametrize("window", [9, 12, 15])
def test_encoder_deflate_inflates_with_zlib(client: bool, no_takeover: bool, window: int) -> None:
    if client:
        agreed = F.Deflate(client_no_context_takeover=no_takeover, client_max_window_bits=window)
    else:
        agreed = F.Deflate(server_no_context_takeover=no_takeover, server_max_window_bits=window)
    enc = F.Encoder(client=client, deflate=agreed)
    shared = zlib.decompressobj(-window)
    block = random.Random(window).randbytes(1500)  # repeats farther apart than 2**9
    for i in range(6):
        msg = (block * 3).hex() if i % 2 else block * 3
        frame = enc.text(msg) if isinstance(msg, str) else enc.binary(msg)
        first, body = frame_body(frame)
        assert first & 0x0F == (OP_TEXT if isinstance(msg, str) else OP_BINARY)
        raw = msg.encode() if isinstance(msg, str) else msg
        if not first & 0x40:
            # a sender may send a message uncompressed (random bytes in a small window grow)
            assert isinstance(msg, bytes), "hex text always compresses: RSV1 expected"
            assert body == raw
        elif no_takeover:  # each message must inflate on its own
            assert inflate_ref(body, window_bits=window) == raw
        else:
            assert shared.decompress(body + b"\x00\x00\xff\xff") == raw


@pytest.mark.parametrize("client", [False, True], ids=["server", "client"])
@pytest.mark.parametrize("no_takeover", [False, True])
@pytest.mark.parametrize("threshold", [0, 1])
def test_encoder_deflate_empty_and_tiny_messages(
    client: bool, no_takeover: bool, threshold: int
) -> None:
    """Empty messages between others: with context takeover a sync flush with no new input
    still has to emit the 00 block header, or the peer's inflater desynchronises."""
    if client:
        agreed = F.Deflate(client_no_context_takeover=no_takeover)
    else:
        agreed = F.Deflate(server_no_context_takeover=no_takeover)
    enc = F.Encoder(client=client, deflate=agreed, compress_threshold=threshold)
    shared = zlib.decompressobj(-15)
    for msg in ["", "", "a", "", b"", "abc", "", "abcabcabc"]:
        frame = enc.text(msg) if isinstance(msg, str) else enc.binary(msg)
        first, body = frame_body(frame)
        raw = msg.encode() if isinstance(msg, str) else msg
        if first & 0x40:
            got = shared.decompress(body + b"\x00\x00\xff\xff")
            if no_takeover:
                assert inflate_ref(body) == raw
        else:
            got = body
        assert got == raw, (msg, frame.hex())


def test_encoder_threshold_and_compress_flag() -> None:
    enc = F.Encoder(deflate=F.Deflate(), compress_threshold=128)
    small = enc.text("x" * 127)
    assert small == frame_ref(OP_TEXT, b"x" * 127), "below the threshold: sent as is"
    big = enc.text("x" * 128)
    assert big[0] == 0xC1
    assert inflate_ref(frame_body(big)[1]) == b"x" * 128
    assert enc.binary(b"y" * 500, compress=False) == frame_ref(OP_BINARY, b"y" * 500)
    # control frames are never compressed
    assert enc.ping(b"p" * 125) == frame_ref(OP_PING, b"p" * 125)
    # without a negotiated Deflate nothing is compressed
    assert F.Encoder().text("x" * 1000) == frame_ref(OP_TEXT, b"x" * 1000)


@SETTINGS
@given(data=payloads, window=st.sampled_from(WINDOWS), level=st.integers(1, 9))
def test_encode_message_deflate_is_context_free(data: bytes, window: int, level: int) -> None:
    frame = F.encode_message(data, deflate_window_bits=window, compression_level=level)
    first, body = frame_body(frame)
    assert first == 0xC2
    assert inflate_ref(body, window_bits=window) == data
    # and the same frame decodes in a server-role client Decoder with that window
    dec = F.Decoder(
        client=True,
        deflate=F.Deflate(server_max_window_bits=window, server_no_context_takeover=True),
    )
    assert dec.feed(frame) == [data]


# --------------------------------------------------------------------------- negotiation


def params(d: F.Deflate | None) -> tuple[bool, bool, int, int] | None:
    if d is None:
        return None
    return (
        d.server_no_context_takeover,
        d.client_no_context_takeover,
        d.server_max_window_bits,
        d.client_max_window_bits,
    )


def test_deflate_defaults() -> None:
    assert params(F.Deflate()) == (False, False, 15, 15)


@pytest.mark.parametrize("offers", ["", "x-webkit-deflate-frame", "deflate-stream, foo; a=1"])
def test_negotiate_without_permessage_deflate_is_none(offers: str) -> None:
    assert F.negotiate_deflate(offers) is None


def test_negotiate_plain_offer() -> None:
    got = F.negotiate_deflate("permessage-deflate")
    assert params(got) == (True, False, 15, 15)
    got = F.negotiate_deflate("permessage-deflate", server_no_context_takeover=False)
    assert params(got) == (False, False, 15, 15)


def test_negotiate_limits_the_server_window_to_the_offer() -> None:
    got = F.negotiate_deflate("permessage-deflate; server_max_window_bits=10")
    assert got is not None
    assert got.server_max_window_bits <= 10
    assert "server_max_window_bits" in got.response_header()


def test_negotiate_client_window_only_when_offered() -> None:
    """RFC 7692 7.1.2.2: the server may limit the client window only if the client said
    client_max_window_bits."""
    got = F.negotiate_deflate("permessage-deflate", client_max_window_bits=10)
    if got is not None:
        assert "client_max_window_bits" not in got.response_header()
        assert got.client_max_window_bits == 15
    got = F.negotiate_deflate(
        "permessage-deflate; client_max_window_bits", client_max_window_bits=10
    )
    assert got is not None
    assert got.client_max_window_bits == 10
    assert "client_max_window_bits=10" in got.response_header()


def test_negotiate_honours_client_no_context_takeover_request() -> None:
    got = F.negotiate_deflate(
        "permessage-deflate; server_no_context_takeover", server_no_context_takeover=False
    )
    assert got is not None
    assert got.server_no_context_takeover
    assert "server_no_context_takeover" in got.response_header()


@pytest.mark.parametrize(
    "bad_offer",
    [
        "permessage-deflate; unknown_param",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; client_max_window_bits=99",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; server_no_context_takeover=1",
    ],
)
def test_negotiate_declines_invalid_offer_and_takes_the_next(bad_offer: str) -> None:
    """RFC 7692 5.1: an offer with an unknown or invalid parameter is declined; the next
    acceptable offer in the list is picked."""
    assert F.negotiate_deflate(bad_offer) is None
    got = F.negotiate_deflate(f"{bad_offer}, permessage-deflate; client_max_window_bits=12")
    assert got is not None
    assert got.client_max_window_bits == 12


def test_negotiate_quoted_value() -> None:
    got = F.negotiate_deflate('permessage-deflate; client_max_window_bits="10"')
    assert got is not None
    assert got.client_max_window_bits == 10


def test_negotiate_malformed_header_is_value_error() -> None:
    with pytest.raises(ValueError):
        F.negotiate_deflate('permessage-deflate; client_max_window_bits="10')


@pytest.mark.parametrize(
    "offered",
    [
        F.Deflate(),
        F.Deflate(server_no_context_takeover=True, client_no_context_takeover=True),
        F.Deflate(server_max_window_bits=10, client_max_window_bits=11),
    ],
    ids=params,
)
def test_offer_header_negotiates_back_to_itself(offered: F.Deflate) -> None:
    """Our own server, wishing for nothing, agrees to exactly what our client offered, and
    our client accepts that answer unchanged."""
    agreed = F.negotiate_deflate(
        offered.offer_header(),
        server_no_context_takeover=offered.server_no_context_takeover,
        client_no_context_takeover=offered.client_no_context_takeover,
    )
    assert params(agreed) == params(offered)
    assert agreed is not None
    assert params(F.accept_deflate(agreed.response_header(), offered)) == params(offered)


@pytest.mark.parametrize(
    "answer",
    [
        "permessage-deflate; server_max_window_bits=12",  # wider than offered
        "permessage-deflate; unknown_param",
        "permessage-deflate; server_max_window_bits=abc",
        "x-webkit-deflate-frame",
        "permessage-deflate, permessage-deflate",
        "permessage-deflate; client_max_window_bits=16",
    ],
)
def test_accept_deflate_rejects_bad_answers(answer: str) -> None:
    with pytest.raises(ValueError):
        F.accept_deflate(answer, F.Deflate(server_max_window_bits=10))


def test_accept_deflate_without_server_no_context_takeover_when_offered() -> None:
    """websockets' client refuses such an answer, wsproto's takes it; either way we must not
    believe the server resets its context when it did not say so."""
    offered = F.Deflate(server_no_context_takeover=True)
    try:
        lax = F.accept_deflate("permessage-deflate", offered)
    except ValueError:
        pass
    else:
        assert not lax.server_no_context_takeover
    got = F.accept_deflate("permessage-deflate; server_no_context_takeover", offered)
    assert got.server_no_context_takeover


def test_accept_deflate_takes_the_servers_limits() -> None:
    got = F.accept_deflate(
        "permessage-deflate; server_max_window_bits=9; client_no_context_takeover",
        F.Deflate(),
    )
    assert got.server_max_window_bits == 9
    assert got.client_no_context_takeover

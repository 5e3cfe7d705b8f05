"""The Rust codec against the pure-Python reference in ``helpers.framesref`` (RFC 6455 5.2, 5.3).

Also every RFC violation the decoder must refuse, with the close code it must carry.
"""

from __future__ import annotations

import itertools
import random
import struct

import pytest
from helpers.framesref import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    close_payload_ref,
    frame_ref,
    header_ref,
    mask_ref,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyserver import _frames as F
from pyserver._frames import _testing as T

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MASK = bytes.fromhex("37fa213d")
BOUNDARY_LENGTHS = [0, 1, 124, 125, 126, 127, 65534, 65535, 65536, 65537]

masks = st.binary(min_size=4, max_size=4)


def norm(msg: F.Message) -> object:
    """Messages as plain comparable values."""
    if isinstance(msg, str | bytes):
        return msg
    if isinstance(msg, F.Ping):
        return ("ping", msg.payload)
    if isinstance(msg, F.Pong):
        return ("pong", msg.payload)
    assert isinstance(msg, F.Close)
    return ("close", msg.code, msg.reason)


def feed_all(dec: F.Decoder, chunks: list[bytes]) -> list[object]:
    out: list[object] = []
    for chunk in chunks:
        out.extend(norm(m) for m in dec.feed(chunk))
    return out


def payload_of(length: int, seed: int = 0) -> bytes:
    return random.Random(seed ^ length).randbytes(length)


# --------------------------------------------------------------------------- constants


def test_opcodes_match_rfc() -> None:
    assert (F.OP_CONTINUATION, F.OP_TEXT, F.OP_BINARY) == (0x0, 0x1, 0x2)
    assert (F.OP_CLOSE, F.OP_PING, F.OP_PONG) == (0x8, 0x9, 0xA)


# --------------------------------------------------------------------------- masking


def test_rfc_masked_hello_vector() -> None:
    want = bytes.fromhex("818537fa213d7f9f4d5158")
    assert T.encode_frame(F.OP_TEXT, b"Hello", mask=MASK) == want
    assert frame_ref(OP_TEXT, b"Hello", mask=MASK) == want
    assert T.apply_mask(b"Hello", MASK) == bytes.fromhex("7f9f4d5158")
    assert F.Decoder().feed(want) == ["Hello"]


def test_mask_every_length_and_alignment() -> None:
    """Exhaustive over short lengths and all 8 start alignments (word-wise edge cases)."""
    buf = bytearray(random.Random(1).randbytes(200))
    mask = bytes([0x01, 0x80, 0xFE, 0x5A])
    for start in range(8):
        for length in range(0, 80):
            view = memoryview(buf)[start : start + length]
            want = mask_ref(view, mask)
            assert T.apply_mask(view, mask) == want, (start, length)
            assert T.apply_mask_simple(view, mask) == want, (start, length)


@SETTINGS
@given(
    data=st.binary(max_size=3000),
    mask=masks,
    start=st.integers(0, 15),
    kind=st.sampled_from(["bytes", "bytearray", "memoryview", "readonly-view"]),
)
def test_mask_matches_reference(data: bytes, mask: bytes, start: int, kind: str) -> None:
    padded = bytes(start) + data + b"\xaa" * 3  # a slice that starts and ends mid-word
    arg: bytes | bytearray | memoryview
    if kind == "bytes":
        arg = data
    elif kind == "bytearray":
        arg = bytearray(data)
    elif kind == "memoryview":
        arg = memoryview(bytearray(padded))[start : start + len(data)]
    else:
        arg = memoryview(padded)[start : start + len(data)]
    want = mask_ref(data, mask)
    got = T.apply_mask(arg, mask)
    assert type(got) is bytes
    assert got == want
    assert T.apply_mask_simple(arg, mask) == want
    assert T.apply_mask(got, mask) == data  # an involution
    assert bytes(arg) == data  # the input is not modified in place


@pytest.mark.parametrize("bad", [b"", b"abc", b"abcde"])
def test_mask_key_must_be_four_bytes(bad: bytes) -> None:
    with pytest.raises((ValueError, TypeError)):
        T.apply_mask(b"data", bad)
    with pytest.raises((ValueError, TypeError)):
        T.apply_mask_simple(b"data", bad)


def test_mask_large_buffers() -> None:
    data = payload_of(1 << 20, 7)
    assert T.apply_mask(data, MASK) == T.apply_mask_simple(data, MASK)
    # spot-check against the byte loop away from the start (the loop is slow on 1 MiB)
    got = T.apply_mask(memoryview(data)[3:], MASK)
    assert got[:1000] == mask_ref(data[3:1003], MASK)
    tail = len(data) - 3 - 997
    assert got[-997:] == mask_ref(data[-997:], MASK[tail % 4 :] + MASK[: tail % 4])


# --------------------------------------------------------------------------- encode_frame


@SETTINGS
@given(
    opcode=st.integers(0, 15),
    length=st.sampled_from(BOUNDARY_LENGTHS) | st.integers(0, 400),
    seed=st.integers(0, 2**32),
    fin=st.booleans(),
    rsv=st.tuples(st.booleans(), st.booleans(), st.booleans()),
    mask=st.none() | masks,
)
def test_encode_frame_matches_reference(
    opcode: int,
    length: int,
    seed: int,
    fin: bool,
    rsv: tuple[bool, bool, bool],
    mask: bytes | None,
) -> None:
    payload = payload_of(length, seed)
    got = T.encode_frame(opcode, payload, fin=fin, rsv1=rsv[0], rsv2=rsv[1], rsv3=rsv[2], mask=mask)
    want = frame_ref(opcode, payload, fin=fin, rsv1=rsv[0], rsv2=rsv[1], rsv3=rsv[2], mask=mask)
    head = header_ref(opcode, length, fin=fin, rsv1=rsv[0], rsv2=rsv[1], rsv3=rsv[2], mask=mask)
    assert got[: len(head)] == head
    assert got == want


# --------------------------------------------------------------------------- encode_message


def text_of_utf8_length(n: int, seed: int) -> str:
    """A str whose UTF-8 encoding is exactly ``n`` bytes, mixing 1- to 4-byte characters."""
    rng = random.Random(seed)
    pool = {1: "aZ~ ", 2: "éßЖ", 3: "€中ह", 4: "😀𝄞"}
    parts: list[str] = []
    left = n
    while left:
        width = rng.choice([w for w in pool if w <= left])
        parts.append(rng.choice(pool[width]))
        left -= width
    text = "".join(parts)
    assert len(text.encode()) == n
    return text


@pytest.mark.parametrize("length", BOUNDARY_LENGTHS)
def test_encode_message_boundaries(length: int) -> None:
    text = text_of_utf8_length(length, length)
    raw = payload_of(length)
    assert F.encode_message(text) == frame_ref(OP_TEXT, text.encode())
    assert F.encode_message(raw) == frame_ref(OP_BINARY, raw)
    assert F.encode_message(text.encode(), text=True) == frame_ref(OP_TEXT, text.encode())
    assert F.encode_message(raw, text=False) == frame_ref(OP_BINARY, raw)
    # and the server encoder agrees with the broadcast path
    enc = F.Encoder()
    assert enc.text(text, compress=False) == frame_ref(OP_TEXT, text.encode())
    assert enc.binary(raw, compress=False) == frame_ref(OP_BINARY, raw)


@SETTINGS
@given(text=st.text(max_size=300), raw=st.binary(max_size=300))
def test_encode_message_random(text: str, raw: bytes) -> None:
    assert F.encode_message(text) == frame_ref(OP_TEXT, text.encode())
    assert F.encode_message(raw) == frame_ref(OP_BINARY, raw)


def test_encoder_control_frames_match_reference() -> None:
    enc = F.Encoder()
    assert enc.ping(b"abc") == frame_ref(OP_PING, b"abc")
    assert enc.pong(b"") == frame_ref(OP_PONG, b"")
    assert enc.close(1000, "bye") == frame_ref(OP_CLOSE, close_payload_ref(1000, "bye"))
    assert enc.close(None) == frame_ref(OP_CLOSE, b"")
    assert enc.close(4000, "é") == frame_ref(OP_CLOSE, close_payload_ref(4000, "é"))


def unmask_client_frame(frame: bytes) -> tuple[bytes, bytes]:
    """Split a masked frame into (header without mask bit and key, unmasked payload)."""
    assert frame[1] & 0x80, "client frames must be masked"
    size = frame[1] & 0x7F
    at = 2 + {126: 2, 127: 8}.get(size, 0)
    key = frame[at : at + 4]
    head = bytes([frame[0], frame[1] & 0x7F]) + frame[2:at]
    return head, mask_ref(frame[at + 4 :], key)


@pytest.mark.parametrize("length", [0, 5, 125, 126, 65535, 65536])
def test_client_encoder_masks_with_fresh_keys(length: int) -> None:
    enc = F.Encoder(client=True)
    text = text_of_utf8_length(length, 3)
    keys = set()
    for _ in range(4):
        frame = enc.text(text)
        head, payload = unmask_client_frame(frame)
        assert head + payload == frame_ref(OP_TEXT, text.encode())
        keys.add(frame[len(head) : len(head) + 4])
    assert len(keys) > 1, "every frame needs a fresh masking key"
    head, payload = unmask_client_frame(enc.ping(b"p"))
    assert head + payload == frame_ref(OP_PING, b"p")


# --------------------------------------------------------------------------- decoding


def split_randomly(data: bytes, rng: random.Random, max_cuts: int = 12) -> list[bytes]:
    cuts = sorted(rng.randint(0, len(data)) for _ in range(rng.randint(0, max_cuts)))
    bounds = [0, *cuts, len(data)]
    chunks = [data[a:b] for a, b in itertools.pairwise(bounds)]
    while chunks and not chunks[-1]:  # nothing may be fed after the final Close
        chunks.pop()
    return chunks  # empty chunks before the end are kept: feeding b"" must be harmless


data_messages = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200),
    st.sampled_from(BOUNDARY_LENGTHS).map(lambda n: payload_of(n)),
)


@SETTINGS
@given(
    msgs=st.lists(data_messages, max_size=6),
    rng=st.randoms(use_true_random=False),
    client=st.booleans(),
)
def test_decoder_reassembles_reference_frames(
    msgs: list[str | bytes], rng: random.Random, client: bool
) -> None:
    """Fragmented reference frames with pings between fragments, fed in random chunks."""
    wire = bytearray()
    want: list[object] = []
    for msg in msgs:
        raw = msg.encode() if isinstance(msg, str) else msg
        # cut anywhere, even inside a UTF-8 sequence (legal across fragments)
        cuts = sorted(rng.randint(0, len(raw)) for _ in range(rng.randint(0, 3)))
        parts = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=False)]
        for i, part in enumerate(parts):
            opcode = OP_CONTINUATION if i else (OP_TEXT if isinstance(msg, str) else OP_BINARY)
            mask = None if client else rng.randbytes(4)
            wire += frame_ref(opcode, part, fin=i == len(parts) - 1, mask=mask)
            if i == len(parts) - 1:
                want.append(msg)  # complete with its final fragment
            if rng.random() < 0.3:
                ping = rng.randbytes(rng.randint(0, 125))
                wire += frame_ref(OP_PING, ping, mask=None if client else rng.randbytes(4))
                want.append(("ping", ping))
    close = close_payload_ref(1000, "done")
    wire += frame_ref(OP_CLOSE, close, mask=None if client else b"\x00\x01\x02\x03")
    want.append(("close", 1000, "done"))

    dec = F.Decoder(client=client)
    assert feed_all(dec, split_randomly(bytes(wire), rng)) == want


def test_decoder_buffered_and_partial_header() -> None:
    frame = frame_ref(OP_BINARY, b"x" * 300, mask=MASK)
    dec = F.Decoder()
    for i in range(len(frame) - 1):
        assert dec.feed(frame[i : i + 1]) == []
    assert dec.buffered > 0
    assert dec.feed(frame[-1:]) == [b"x" * 300]
    assert dec.buffered == 0


def test_decoder_accepts_every_buffer_type() -> None:
    frame = frame_ref(OP_TEXT, b"hi", mask=MASK)
    assert F.Decoder().feed(bytearray(frame)) == ["hi"]
    assert F.Decoder().feed(memoryview(b"??" + frame)[2:]) == ["hi"]


@pytest.mark.parametrize(
    ("payload", "want"),
    [
        (b"", ("close", None, "")),
        (close_payload_ref(1000), ("close", 1000, "")),
        (close_payload_ref(1001, "going"), ("close", 1001, "going")),
        (close_payload_ref(3000, "é"), ("close", 3000, "é")),
        (close_payload_ref(4999, "x" * 123), ("close", 4999, "x" * 123)),
    ],
)
def test_decoder_close_frames(payload: bytes, want: object) -> None:
    dec = F.Decoder()
    assert feed_all(dec, [frame_ref(OP_CLOSE, payload, mask=MASK)]) == [want]
    with pytest.raises(F.FrameError):
        dec.feed(frame_ref(OP_TEXT, b"late", mask=MASK))


# --------------------------------------------------------------------------- violations


def expect_error(dec: F.Decoder, data: bytes, code: int | set[int]) -> F.FrameError:
    with pytest.raises(F.FrameError) as info:
        dec.feed(data)
    codes = {code} if isinstance(code, int) else code
    assert info.value.code in codes, (info.value.code, info.value.reason)
    assert isinstance(info.value.reason, str)
    return info.value


def test_unmasked_frame_to_server_is_1002() -> None:
    expect_error(F.Decoder(), frame_ref(OP_TEXT, b"hi"), 1002)
    expect_error(F.Decoder(), frame_ref(OP_PING, b""), 1002)


def test_masked_frame_to_client_is_1002() -> None:
    expect_error(F.Decoder(client=True), frame_ref(OP_TEXT, b"hi", mask=MASK), 1002)


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_reserved_opcode_is_1002(opcode: int) -> None:
    expect_error(F.Decoder(), frame_ref(opcode, b"", mask=MASK), 1002)


@pytest.mark.parametrize("rsv", [(True, False, False), (False, True, False), (False, False, True)])
@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY, OP_PING])
def test_rsv_bits_without_extension_are_1002(rsv: tuple[bool, bool, bool], opcode: int) -> None:
    frame = frame_ref(opcode, b"a", rsv1=rsv[0], rsv2=rsv[1], rsv3=rsv[2], mask=MASK)
    expect_error(F.Decoder(), frame, 1002)


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
def test_control_frame_over_125_is_1002(opcode: int) -> None:
    payload = close_payload_ref(1000, "x" * 124) if opcode == OP_CLOSE else b"x" * 126
    expect_error(F.Decoder(), frame_ref(opcode, payload, mask=MASK), 1002)


def test_control_frame_of_125_is_fine() -> None:
    dec = F.Decoder()
    assert feed_all(dec, [frame_ref(OP_PING, b"x" * 125, mask=MASK)]) == [("ping", b"x" * 125)]


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
def test_fragmented_control_frame_is_1002(opcode: int) -> None:
    expect_error(F.Decoder(), frame_ref(opcode, b"", fin=False, mask=MASK), 1002)


def test_continuation_without_start_is_1002() -> None:
    expect_error(F.Decoder(), frame_ref(OP_CONTINUATION, b"x", mask=MASK), 1002)


def test_new_message_inside_fragmented_message_is_1002() -> None:
    wire = frame_ref(OP_TEXT, b"a", fin=False, mask=MASK) + frame_ref(OP_BINARY, b"b", mask=MASK)
    expect_error(F.Decoder(), wire, 1002)


@pytest.mark.parametrize(
    "code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]
)
def test_bad_close_code_is_1002(code: int) -> None:
    expect_error(F.Decoder(), frame_ref(OP_CLOSE, struct.pack("!H", code), mask=MASK), 1002)


def test_one_byte_close_payload_is_1002() -> None:
    expect_error(F.Decoder(), frame_ref(OP_CLOSE, b"\x03", mask=MASK), 1002)


def test_close_reason_bad_utf8() -> None:
    payload = struct.pack("!H", 1000) + b"\xff"
    expect_error(F.Decoder(), frame_ref(OP_CLOSE, payload, mask=MASK), {1002, 1007})


@pytest.mark.parametrize(
    "payload",
    [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"abc\x80", b"\xe2\x82"],
)
def test_bad_utf8_text_is_1007(payload: bytes) -> None:
    expect_error(F.Decoder(), frame_ref(OP_TEXT, payload, mask=MASK), 1007)


def test_utf8_split_across_fragments_is_fine() -> None:
    euro = "€".encode()
    wire = (
        frame_ref(OP_TEXT, b"a" + euro[:1], fin=False, mask=MASK)
        + frame_ref(OP_CONTINUATION, euro[1:2], fin=False, mask=MASK)
        + frame_ref(OP_CONTINUATION, euro[2:] + b"b", mask=MASK)
    )
    assert F.Decoder().feed(wire) == ["a€b"]


def test_bad_utf8_across_fragments_fails_before_message_ends() -> None:
    """\\xe2\\x82 is a valid start; \\x28 can never follow it. No final frame is ever sent."""
    dec = F.Decoder()
    assert dec.feed(frame_ref(OP_TEXT, b"ok \xe2\x82", fin=False, mask=MASK)) == []
    expect_error(dec, frame_ref(OP_CONTINUATION, b"\x28 more", fin=False, mask=MASK), 1007)


def test_bad_utf8_fails_at_first_impossible_byte_within_one_fragment() -> None:
    dec = F.Decoder()
    expect_error(dec, frame_ref(OP_TEXT, b"ok\xff" + b"a" * 1000, fin=False, mask=MASK), 1007)


def test_truncated_utf8_at_message_end_is_1007() -> None:
    dec = F.Decoder()
    assert dec.feed(frame_ref(OP_TEXT, b"ok \xe2", fin=False, mask=MASK)) == []
    expect_error(dec, frame_ref(OP_CONTINUATION, b"\x82", fin=True, mask=MASK), 1007)


def test_frame_too_big_fails_from_the_header() -> None:
    """Only the header of a huge frame arrives; the payload never does."""
    for length in [1001, 1 << 16, 1 << 40]:
        dec = F.Decoder(max_frame_size=1000, max_message_size=10_000)
        expect_error(dec, header_ref(OP_BINARY, length, mask=MASK), 1009)
    dec = F.Decoder(max_frame_size=1000)
    assert dec.feed(frame_ref(OP_BINARY, b"x" * 1000, mask=MASK)) == [b"x" * 1000]


def test_message_too_big_fails_from_the_header() -> None:
    dec = F.Decoder(max_frame_size=1000, max_message_size=2500)
    assert dec.feed(frame_ref(OP_BINARY, b"x" * 1000, fin=False, mask=MASK)) == []
    assert dec.feed(frame_ref(OP_CONTINUATION, b"x" * 1000, fin=False, mask=MASK)) == []
    expect_error(dec, header_ref(OP_CONTINUATION, 501, fin=True, mask=MASK), 1009)


def test_message_at_the_limit_is_fine() -> None:
    dec = F.Decoder(max_frame_size=1000, max_message_size=2500)
    wire = (
        frame_ref(OP_TEXT, b"x" * 1000, fin=False, mask=MASK)
        + frame_ref(OP_CONTINUATION, b"x" * 1000, fin=False, mask=MASK)
        + frame_ref(OP_CONTINUATION, b"x" * 500, mask=MASK)
    )
    assert dec.feed(wire) == ["x" * 2500]


def test_error_carries_messages_decoded_before_it() -> None:
    wire = (
        frame_ref(OP_TEXT, b"one", mask=MASK)
        + frame_ref(OP_PING, b"p", mask=MASK)
        + frame_ref(OP_BINARY, b"two", mask=MASK)
        + frame_ref(OP_TEXT, b"bad\xff", mask=MASK)
        + frame_ref(OP_TEXT, b"never", mask=MASK)
    )
    err = expect_error(F.Decoder(), wire, 1007)
    assert [norm(m) for m in err.messages] == ["one", ("ping", b"p"), b"two"]


def test_error_messages_only_from_the_same_feed() -> None:
    dec = F.Decoder()
    assert dec.feed(frame_ref(OP_TEXT, b"earlier", mask=MASK)) == ["earlier"]
    wire = frame_ref(OP_BINARY, b"now", mask=MASK) + frame_ref(5, b"", mask=MASK)
    err = expect_error(dec, wire, 1002)
    assert [norm(m) for m in err.messages] == [b"now"]


def test_decoder_refuses_input_after_an_error() -> None:
    dec = F.Decoder()
    expect_error(dec, frame_ref(OP_TEXT, b"\xff", mask=MASK), 1007)
    with pytest.raises(F.FrameError):
        dec.feed(frame_ref(OP_TEXT, b"fine", mask=MASK))


def test_frame_error_is_an_exception_with_fields() -> None:
    assert issubclass(F.FrameError, Exception)
    err = expect_error(F.Decoder(), frame_ref(OP_TEXT, b"hi"), 1002)
    assert err.messages == []
    assert err.reason

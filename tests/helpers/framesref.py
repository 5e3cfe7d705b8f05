"""A tiny pure-Python reference for RFC 6455 section 5.2, written from the RFC text.

Deliberately naive: a byte loop for the mask and a literal transcription of the header
layout. The Rust codec is tested against it; nothing here is used by pyserver itself.
"""

from __future__ import annotations

import struct
import zlib

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA


def mask_ref(data: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """RFC 6455 5.3: ``transformed[i] = original[i] XOR mask[i MOD 4]``."""
    assert len(mask) == 4
    raw = bytes(data)
    return bytes(raw[i] ^ mask[i % 4] for i in range(len(raw)))


def header_ref(
    opcode: int,
    length: int,
    *,
    fin: bool = True,
    rsv1: bool = False,
    rsv2: bool = False,
    rsv3: bool = False,
    mask: bytes | None = None,
) -> bytes:
    """The frame header (everything before the payload), with the minimal length form."""
    assert 0 <= opcode <= 0xF
    first = (fin << 7) | (rsv1 << 6) | (rsv2 << 5) | (rsv3 << 4) | opcode
    mask_bit = 0x80 if mask is not None else 0
    if length <= 125:
        out = struct.pack("!BB", first, mask_bit | length)
    elif length <= 0xFFFF:
        out = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        assert length < 1 << 63
        out = struct.pack("!BBQ", first, mask_bit | 127, length)
    if mask is not None:
        assert len(mask) == 4
        out += mask
    return out


def frame_ref(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv1: bool = False,
    rsv2: bool = False,
    rsv3: bool = False,
    mask: bytes | None = None,
) -> bytes:
    """A whole frame: header plus the (masked, if ``mask``) payload."""
    head = header_ref(opcode, len(payload), fin=fin, rsv1=rsv1, rsv2=rsv2, rsv3=rsv3, mask=mask)
    return head + (mask_ref(payload, mask) if mask is not None else bytes(payload))


def close_payload_ref(code: int | None, reason: str = "") -> bytes:
    """RFC 6455 5.5.1: a 2-byte big-endian code then the UTF-8 reason, or nothing."""
    if code is None:
        return b""
    return struct.pack("!H", code) + reason.encode()


def deflate_ref(data: bytes, *, level: int = 6, window_bits: int = 15) -> bytes:
    """RFC 7692 7.2.1 with CPython's zlib: raw deflate, sync flush, drop 00 00 ff ff."""
    comp = zlib.compressobj(level, zlib.DEFLATED, -window_bits)
    out = comp.compress(data) + comp.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def inflate_ref(data: bytes, *, window_bits: int = 15) -> bytes:
    """RFC 7692 7.2.2 with CPython's zlib: append 00 00 ff ff and inflate."""
    return zlib.decompressobj(-window_bits).decompress(data + b"\x00\x00\xff\xff")

"""Writes the fuzz targets' seed corpora (rust_frames/fuzz/corpus/<target>/seed-*) from the
test vectors: frames as the tests build them (text, binary, fragmented, control, close, masked
and not, compressed with permessage-deflate), each behind the targets' control byte(s).

    .venv/bin/python rust_frames/fuzz/make_seeds.py
"""

from __future__ import annotations

from pathlib import Path

from pyserver._frames._testing import deflate_raw, encode_frame

HERE = Path(__file__).resolve().parent
MASK = b"\x37\xfa\x21\x3d"


def frames(mask: bytes | None) -> list[bytes]:
    text = "héllo wörld ✓".encode()
    return [
        encode_frame(1, text, mask=mask),
        encode_frame(2, bytes(range(256)), mask=mask),
        encode_frame(1, b"frag", fin=False, mask=mask) + encode_frame(0, b"ment", mask=mask),
        encode_frame(9, b"ping", mask=mask) + encode_frame(10, b"", mask=mask),
        encode_frame(8, b"\x03\xe8bye", mask=mask),
        encode_frame(2, b"x" * 70000, mask=mask),
        encode_frame(1, b"\xff\xfe", mask=mask),
    ]


def deflated(mask: bytes | None) -> list[bytes]:
    one = deflate_raw(b"a compressed message, " * 20)
    return [
        encode_frame(1, one, rsv1=True, mask=mask),
        encode_frame(2, one[:5], rsv1=True, fin=False, mask=mask)
        + encode_frame(0, one[5:], mask=mask),
        encode_frame(1, deflate_raw(b"\0" * 100000), rsv1=True, mask=mask),
        encode_frame(1, b"\x00", rsv1=True, mask=mask),
    ]


def write(target: str, seeds: list[bytes]) -> None:
    out = HERE / "corpus" / target
    out.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(seeds):
        (out / f"seed-{i:02d}").write_bytes(seed)


def main() -> None:
    # control byte: bit 0 = role (0 server: masked input), the rest the read size
    write("frame_decoder", [bytes([c]) + f for c, m in ((0, MASK), (1, None), (8, MASK))
                            for f in frames(m)])  # fmt: skip
    write("frame_decoder_deflate", [bytes([p, c]) + f for p, c, m in ((7, 0, MASK), (0, 1, None))
                                    for f in deflated(m) + frames(m)])  # fmt: skip
    plain = [b"hello", b"x" * 5000, bytes(range(256)) * 40]
    write("inflate", [bytes([7 | (k << 3)]) + deflate_raw(d) for k, d in enumerate(plain)])


if __name__ == "__main__":
    main()

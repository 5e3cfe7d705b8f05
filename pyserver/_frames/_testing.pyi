"""``pyserver._frames._testing``: the parts of the Rust codec only tests and benchmarks call.

A raw frame with any header bits (to build what a broken peer sends), the word-wise masker
and its byte-loop reference, and one message deflated or inflated on its own (the codec's
compression without a connection). The server never calls them; they stay apart so the
codec's API (:mod:`pyserver._frames`) is what the server uses.
"""

def encode_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv1: bool = False,
    rsv2: bool = False,
    rsv3: bool = False,
    mask: bytes | None = None,
) -> bytes:
    """One raw frame, no checks beyond field widths (for tests and fuzzing). ``mask`` is 4 bytes."""

def apply_mask(data: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """XOR ``data`` with the 4-byte ``mask``, word-wise (the fast path)."""

def apply_mask_simple(data: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """The same result with a plain byte loop (the reference for tests)."""

def deflate_raw(data: bytes, *, level: int = 6, window_bits: int = 15) -> bytes:
    """One message compressed as permessage-deflate sends it (no context, trailing
    00 00 ff ff removed)."""

def inflate_raw(data: bytes, *, max_size: int, window_bits: int = 15) -> bytes:
    """The inverse of deflate_raw; FrameError(1009) past ``max_size``, FrameError(1007) on a
    corrupt stream."""

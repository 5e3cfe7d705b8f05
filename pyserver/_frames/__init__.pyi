"""The Rust WebSocket frame codec (crate ``rust_frames``), RFC 6455 and RFC 7692.

Sans-IO: bytes in, messages out; bytes to send out of the encoders. No clock, no sockets.
What only the tests and benchmarks call (raw frames, the maskers, one-shot deflate) is in
the submodule :mod:`pyserver._frames._testing`.
"""

from typing import Final, final

from pyserver.errors import RemoteProtocolError

OP_CONTINUATION: Final[int]
OP_TEXT: Final[int]
OP_BINARY: Final[int]
OP_CLOSE: Final[int]
OP_PING: Final[int]
OP_PONG: Final[int]

class FrameError(RemoteProtocolError):
    """The peer broke RFC 6455 or RFC 7692. ``code`` is the close code to answer with
    (1002 protocol error, 1007 invalid payload data, 1009 message too big), ``reason`` the
    close reason; as a :class:`pyserver.errors.RemoteProtocolError` (its base, imported when
    this module is) the same wire answer is ``close_code`` and ``close_reason``.
    ``messages`` holds the complete messages decoded from the same ``feed`` call before the
    error."""

    code: int
    reason: str
    close_code: int
    messages: list[Message]

@final
class Ping:
    payload: bytes
    def __init__(self, payload: bytes = b"") -> None: ...

@final
class Pong:
    payload: bytes
    def __init__(self, payload: bytes = b"") -> None: ...

@final
class Close:
    """A close frame. ``code`` is None when the frame had no payload (1005 on the API)."""

    code: int | None
    reason: str
    def __init__(self, code: int | None = None, reason: str = "") -> None: ...

Message = str | bytes | Ping | Pong | Close

@final
class Deflate:
    """Negotiated permessage-deflate parameters (RFC 7692 section 7.1)."""

    server_no_context_takeover: bool
    client_no_context_takeover: bool
    server_max_window_bits: int
    client_max_window_bits: int
    def __init__(
        self,
        *,
        server_no_context_takeover: bool = False,
        client_no_context_takeover: bool = False,
        server_max_window_bits: int = 15,
        client_max_window_bits: int = 15,
    ) -> None: ...
    def response_header(self) -> str:
        """The server's ``Sec-WebSocket-Extensions`` answer for these parameters."""
    def offer_header(self) -> str:
        """A client's ``Sec-WebSocket-Extensions`` offer for these parameters."""

def negotiate_deflate(
    offers: str,
    *,
    server_no_context_takeover: bool = True,
    client_no_context_takeover: bool = False,
    server_max_window_bits: int = 15,
    client_max_window_bits: int = 15,
) -> Deflate | None:
    """Server side: pick the first acceptable permessage-deflate offer from the client's
    ``Sec-WebSocket-Extensions`` header value(s) (joined with ", ") and return the agreed
    parameters, or None when no offer is acceptable or none was made. The keyword arguments
    are the server's wishes/limits. Raises ValueError when the header is syntactically
    malformed (the handshake then fails with 400)."""

def accept_deflate(response: str, offered: Deflate) -> Deflate:
    """Client side: validate the server's answer against what was offered; ValueError if
    the answer is not acceptable."""

@final
class Decoder:
    """Incremental frame decoder. ``client=False`` (the server role) requires masked frames;
    ``client=True`` requires unmasked frames."""

    def __init__(
        self,
        *,
        client: bool = False,
        max_frame_size: int = 1 << 20,
        max_message_size: int = 1 << 20,
        deflate: Deflate | None = None,
    ) -> None: ...
    def feed(self, data: bytes | bytearray | memoryview) -> list[Message]:
        """Decode every complete message in ``data`` plus what was buffered before. Text
        messages come out as ``str``, binary as ``bytes``; control frames as Ping, Pong,
        Close. Partial frames stay buffered. Raises FrameError on any violation; after an
        error or a Close the decoder refuses further input with FrameError."""
    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete frame or message."""
    @property
    def wanted(self) -> int:
        """How many more bytes the buffered incomplete frame needs (0 when none is)."""

@final
class Encoder:
    """Frame encoder. ``client=False`` writes unmasked server frames; ``client=True`` masks
    every frame with a fresh random key. With ``deflate``, data messages of at least
    ``compress_threshold`` bytes are compressed (RSV1 on the first frame only) at zlib's
    ``compression_level`` (0-9, or -1 for zlib's default, 6; else ValueError); a message
    sent with ``compress=False`` never is."""

    def __init__(
        self,
        *,
        client: bool = False,
        deflate: Deflate | None = None,
        compression_level: int = 6,
        compress_threshold: int = 128,
    ) -> None: ...
    def text(self, data: str | bytes, *, compress: bool = True) -> bytes:
        """One text message (bytes must already be UTF-8; they are not checked)."""
    def binary(self, data: bytes | bytearray | memoryview, *, compress: bool = True) -> bytes: ...
    def ping(self, payload: bytes = b"") -> bytes: ...
    def pong(self, payload: bytes = b"") -> bytes: ...
    def close(self, code: int | None = 1000, reason: str = "") -> bytes: ...

def write_many(fds: list[int], data: bytes) -> list[tuple[int, int]]:
    """The broadcast fan-out (Unix): ``data`` written to each descriptor of ``fds`` (open
    non-blocking sockets the caller owns) with one ``write(2)`` each, retried only on
    EINTR. Returns ``(index, written)`` for each descriptor that did not take all of it
    (``written`` is 0 when it took nothing or the write failed)."""

def write_each(fds: list[int], datas: list[bytes]) -> list[tuple[int, int]]:
    """The fan-out of queued writes (Unix): ``datas[i]`` written to ``fds[i]`` (open
    non-blocking sockets the caller owns) with one ``write(2)`` each, retried only on
    EINTR. Returns ``(index, written)`` for each descriptor that did not take all of its
    data (``written`` is 0 when it took nothing or the write failed). ValueError unless
    there is one data per descriptor."""

def encode_message(
    data: str | bytes,
    *,
    text: bool | None = None,
    deflate_window_bits: int | None = None,
    compression_level: int = 6,
) -> bytes:
    """A whole unmasked (server role) frame for one message: ``str`` is a text message,
    ``bytes`` a binary one unless ``text=True`` (then the bytes must already be UTF-8). With
    ``deflate_window_bits`` the payload is compressed without context takeover, so the same
    frame can go to every peer that negotiated ``server_no_context_takeover`` with at least
    that window, at ``compression_level`` (0-9, or -1 for zlib's default). This is the
    broadcast path: encode once, send to many."""

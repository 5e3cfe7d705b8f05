"""One server-side WebSocket connection after the handshake, sans-IO.

Bytes from the peer go in through :meth:`WebSocketConnection.receive_data`, which returns the
data messages (``str`` for text, ``bytes`` for binary) in order; control frames are handled
here. Frames to send come out of the ``encoder`` (data, the hot path) and of ``pending``
(pongs, close frames, pings: the shell moves them to its outbox after every call). The clock
comes in as ``now``; :meth:`next_deadline` says when :meth:`handle_timeout` wants calling.

States (:class:`ConnectionState`) and their rules:

* ``OPEN``: data flows both ways.
  - peer Ping -> a Pong with the same payload goes to ``pending``, in place of a Pong still
    there: only the latest Ping is answered (RFC 6455 5.5.3 allows it), so a call holds at
    most one Pong however many Pings its bytes carry (a ping flood queues no more).
  - peer Close -> its code is echoed (an empty close if it sent none), state ``CLOSED``
    (the server closes TCP first once the echo is written, RFC 6455 7.1.1).
  - :meth:`close` -> our Close goes out, state ``CLOSING`` until ``now + close_timeout``.
  - a decoding error (``FrameError``, a :class:`~pyserver.errors.RemoteProtocolError` whose
    wire answer is ``close_code``/``close_reason``) -> a Close with that code and reason,
    state ``CLOSED`` ("fail the WebSocket connection", 7.1.7); ``failure`` keeps the code
    and reason for the log.
  - optional keepalive: a Ping every ``ping_interval``; no Pong within ``ping_timeout`` ->
    Close 1011, state ``CLOSED``.
* ``CLOSING``: data messages still delivered; the peer's Close -> ``CLOSED``; the close
  deadline passing -> ``CLOSED`` (abort: the shell drops TCP).
* ``CLOSED``: nothing more is read or sent except what is already in ``pending``.
  End of stream in any state -> ``CLOSED`` with code 1006.
"""

from __future__ import annotations

import enum

from pyserver import _frames
from pyserver.errors import LocalProtocolError

__all__ = ["PONG_HEAD", "ConnectionState", "WebSocketConnection"]

_Ping = _frames.Ping
_Pong = _frames.Pong
_Close = _frames.Close
_FrameError = _frames.FrameError
#: The first byte of every Pong this side sends (FIN, opcode 0xA; control frames are never
#: fragmented nor compressed): how a Pong is told from other frames in ``pending``.
PONG_HEAD = 0x8A


class ConnectionState(enum.Enum):
    OPEN = "open"
    CLOSING = "closing"  # we sent a Close and wait for the peer's
    CLOSED = "closed"


_OPEN = ConnectionState.OPEN
_CLOSING = ConnectionState.CLOSING
_CLOSED = ConnectionState.CLOSED

# Codes an endpoint may put in a Close frame (RFC 6455 7.4.1, IANA registry, 3000-4999).
_SENDABLE = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})


def _valid_code(code: int) -> bool:
    return code in _SENDABLE or 3000 <= code <= 4999


_ENCODERS: dict[tuple[int, int], _frames.Encoder] = {}


def _shared_encoder(compression_level: int, compress_threshold: int) -> _frames.Encoder:
    """The stateless server encoder (no deflate), one per setting."""
    key = (compression_level, compress_threshold)
    encoder = _ENCODERS.get(key)
    if encoder is None:
        encoder = _ENCODERS[key] = _frames.Encoder(
            client=False, compression_level=compression_level, compress_threshold=compress_threshold
        )
    return encoder


class WebSocketConnection:
    """The protocol state of one server-side WebSocket (see the module docstring)."""

    __slots__ = (
        "_close_deadline",
        "_decoder",
        "_ping_deadline",
        "_ping_interval",
        "_ping_timeout",
        "_pong_deadline",
        "close_code",
        "close_reason",
        "close_timeout",
        "deflate",
        "encoder",
        "failure",
        "pending",
        "state",
    )

    def __init__(
        self,
        *,
        deflate: _frames.Deflate | None = None,
        max_message_size: int = 1 << 20,
        ping_interval: float | None = None,
        ping_timeout: float | None = None,
        close_timeout: float = 5.0,
        compression_level: int = 6,
        compress_threshold: int = 128,
        now: float = 0.0,
    ) -> None:
        self._decoder = _frames.Decoder(
            client=False,
            max_frame_size=max_message_size,
            max_message_size=max_message_size,
            deflate=deflate,
        )
        #: The frame encoder: ``encoder.text(s)`` / ``encoder.binary(b)`` are the send path.
        #: Without permessage-deflate a server encoder has no state (no mask, no compressor),
        #: so every such connection shares one.
        self.encoder = (
            _shared_encoder(compression_level, compress_threshold)
            if deflate is None
            else _frames.Encoder(
                client=False,
                deflate=deflate,
                compression_level=compression_level,
                compress_threshold=compress_threshold,
            )
        )
        self.deflate = deflate
        self.state = _OPEN
        #: Control frames to write, in order; the shell empties it after each call.
        self.pending: list[bytes] = []
        #: The code and reason of the first Close sent or received (1006: none, TCP ended).
        self.close_code: int | None = None
        self.close_reason = ""
        #: (close code, reason) when the peer broke the protocol or a keepalive timed out.
        self.failure: tuple[int, str] | None = None
        #: How long to wait for the peer's Close after ours (the shell also uses it to
        #: bound the lingering close after a protocol failure).
        self.close_timeout = close_timeout
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout if ping_timeout is not None else ping_interval
        self._ping_deadline = now + ping_interval if ping_interval else None
        self._pong_deadline: float | None = None
        self._close_deadline: float | None = None

    # -- receiving ---------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[str | bytes]:
        """Feed bytes from the peer; return the complete data messages, in order."""
        if self.state is _CLOSED:
            return []
        try:
            messages = self._decoder.feed(data)
        except _FrameError as exc:
            messages = exc.messages
            error: _frames.FrameError | None = exc
        else:
            error = None
            for message in messages:
                cls = message.__class__
                if cls is not str and cls is not bytes:
                    break
            else:
                return messages  # type: ignore[return-value]  # the fast path: data only
        out = self._handle_controls(messages)
        if error is not None:
            self._fail(error.code, error.reason)
        return out

    @property
    def wanted(self) -> int:
        """How many more bytes the frame being received needs (0 when none is partial), so
        the shell can read a large frame's rest in one call."""
        return self._decoder.wanted

    def _handle_controls(self, messages: list[_frames.Message]) -> list[str | bytes]:
        out: list[str | bytes] = []
        for message in messages:
            if isinstance(message, (str, bytes)):
                out.append(message)
            elif isinstance(message, _Ping):
                if self.state is _OPEN:
                    self._answer_ping(message.payload)
            elif isinstance(message, _Pong):
                self._pong_deadline = None
            elif isinstance(message, _Close):
                self._receive_close(message)
                break
        return out

    def _answer_ping(self, payload: bytes) -> None:
        """Queue the Pong for ``payload``, replacing a Pong not yet taken from ``pending``
        (which holds a few control frames at most: the scan is short)."""
        pong = self.encoder.pong(payload)
        pending = self.pending
        for index, frame in enumerate(pending):
            if frame[0] == PONG_HEAD:
                pending[index] = pong
                return
        pending.append(pong)

    def _receive_close(self, close: _frames.Close) -> None:
        if self.state is _OPEN:
            self.close_code = close.code if close.code is not None else 1005
            self.close_reason = close.reason
            self.pending.append(self.encoder.close(close.code, close.reason))
        self.state = _CLOSED

    def receive_eof(self) -> None:
        """The peer's TCP stream ended (or broke)."""
        if self.state is not _CLOSED:
            self.state = _CLOSED
            if self.close_code is None:
                self.close_code = 1006
                self.close_reason = "connection lost"

    def _fail(self, code: int, reason: str) -> None:
        if self.state is _OPEN:
            self.close_code = code
            self.close_reason = reason
            self.pending.append(self.encoder.close(code, reason))
        self.failure = (code, reason)
        self.state = _CLOSED

    # -- sending -----------------------------------------------------------------------

    def send(self, message: str | bytes) -> bytes:
        """One data message as a frame (``str`` text, ``bytes`` binary)."""
        if self.state is not _OPEN:
            raise LocalProtocolError(f"cannot send in state {self.state.name}")
        if isinstance(message, str):
            return self.encoder.text(message)
        return self.encoder.binary(message)

    def close(self, code: int = 1000, reason: str = "", *, now: float) -> None:
        """Start the close handshake: our Close goes to ``pending``. A no-op unless OPEN."""
        if not _valid_code(code):
            raise LocalProtocolError(f"close code {code} cannot be sent")
        if len(reason.encode()) > 123:
            raise LocalProtocolError("close reason longer than 123 bytes")
        if self.state is not _OPEN:
            return
        self.close_code = code
        self.close_reason = reason
        self.pending.append(self.encoder.close(code, reason))
        self.state = _CLOSING
        self._close_deadline = now + self.close_timeout

    def abort(self, code: int = 1006, reason: str = "aborted") -> None:
        """Give up without a handshake (the stream broke, or the shell dropped it)."""
        if self.state is not _CLOSED:
            self.state = _CLOSED
            if self.close_code is None:
                self.close_code = code
                self.close_reason = reason

    # -- timers ------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timeout` should be called next (None: never)."""
        if self.state is _CLOSING:
            return self._close_deadline
        if self.state is _CLOSED:
            return None
        if self._pong_deadline is not None:
            return self._pong_deadline
        return self._ping_deadline

    def handle_timeout(self, now: float) -> None:
        """Run the timers that are due at ``now``."""
        if self.state is _CLOSING:
            if self._close_deadline is not None and now >= self._close_deadline:
                self.state = _CLOSED  # the peer never answered our Close: abort
            return
        if self.state is not _OPEN:
            return
        if self._pong_deadline is not None:
            if now >= self._pong_deadline:
                self._fail(1011, "keepalive ping timeout")
            return
        if self._ping_deadline is not None and now >= self._ping_deadline:
            self.pending.append(self.encoder.ping(b""))
            assert self._ping_interval is not None
            self._ping_deadline = now + self._ping_interval
            if self._ping_timeout:
                self._pong_deadline = now + self._ping_timeout

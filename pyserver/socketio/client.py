"""The client side of Socket.IO v5, sans-IO: what the Trio client
(:mod:`pyserver.trio.client`) decides without doing I/O.

* :func:`connect_packet`: the CONNECT a client sends, with its ``auth`` and, when it had a
  session with connection state recovery, ``pid`` and ``offset`` (as socket.io-client 4
  does: ``{pid, offset, ...auth}``).
* :func:`parse_connected`: the server's CONNECT answer, ``{"sid": ..., "pid": ...}``.
* :class:`Backoff`: socket.io-client's reconnection delays (the ``backo2`` rule): attempt
  ``n`` (from 0) waits ``min * factor**n`` ms, moved by up to ``jitter`` of itself up or down
  (the caller gives the random draw, in ``[0, 1)``), capped at ``max``.
* :class:`Inbox`: where a received event goes. Events are delivered in arrival order to, in
  this order of preference: a waiter for that name (``wait_for``), the handler registered for
  it, the socket's iteration (``async for``) once it has started; otherwise they are *kept*
  and given, in order, to the first of those that appears for them. What is kept and what
  waits for the iteration is bounded by ``max_events`` together; when full, the oldest event
  is dropped (and counted in ``dropped``), so a server that sends events nobody asked for
  cannot grow the client without bound.
* :class:`SendBuffer`: emits made while the socket is not connected, sent in order once it
  is; bounded (``BufferFull`` past ``max_packets``), volatile emits are never buffered.
* Ack values: a handler's return value is the ack (``None``: no argument, a tuple: several,
  anything else: one), and an ack's arguments are returned the same way (:func:`ack_args`,
  :func:`reply_value`), as pyserver's server does.
* :func:`plain_ack`: the client's hot path for the most common answer, an ACK on ``"/"``
  without attachments (``3<id>[...]``), read without the packet decoder's general path (the
  built-in parser's only: a client with another parser never takes it).
* Other parsers (``parser="msgpack"``, ``json=codec``, the server's
  :mod:`pyserver.socketio.parsers`, reused as they are): :func:`connect_message` is the
  CONNECT a client sends in that parser, :func:`client_decoder` the decoder of what a server
  sends (the parser's own decoder, and for msgpack a CONNECT_ERROR's ``{message, data}``
  read in full, which the server-role check leaves out).
"""

from __future__ import annotations

import enum
import json
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pyserver.errors import PyserverError
from pyserver.socketio.decoder import PacketDecoder
from pyserver.socketio.packets import Connect, ConnectError, Packet, PacketError
from pyserver.socketio.parsers import Parser, PayloadDecoder

__all__ = [
    "Backoff",
    "BufferFull",
    "ConnectionLost",
    "Delivery",
    "Inbox",
    "Received",
    "SendBuffer",
    "ack_args",
    "client_decoder",
    "connect_message",
    "connect_packet",
    "parse_connected",
    "plain_ack",
    "reply_value",
]


class ConnectionLost(PyserverError):
    """The connection to the server could not be made, or was lost and not made again
    (reconnection off or out of attempts). ``reason`` says why in Engine.IO's words ("ping
    timeout", "transport close", "transport error", "parse error", ...); the underlying error,
    if any, is the ``__cause__``."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class BufferFull(PyserverError):
    """An emit found its bounded buffer full (the socket is disconnected, or the server reads
    slower than the application emits): nothing of it was queued."""


def connect_packet(
    namespace: str, auth: dict[str, Any] | None, pid: str | None, offset: str | None
) -> str:
    """The CONNECT text for ``namespace``; with a recovery ``pid``, ``pid`` and ``offset`` go
    first and ``auth`` after them (a key of ``auth`` wins, as in socket.io-client)."""
    payload: dict[str, Any] | None = auth
    if pid is not None:
        payload = {"pid": pid, "offset": offset, **(auth or {})}
    head = "0" if namespace == "/" else f"0{namespace},"
    if payload is None:
        return head
    return head + json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def connect_message(
    parser: Parser | None,
    namespace: str,
    auth: dict[str, Any] | None,
    pid: str | None,
    offset: str | None,
) -> str | bytes:
    """:func:`connect_packet` in ``parser`` (None: the built-in one): the same CONNECT,
    re-encoded by the parser's :meth:`~pyserver.socketio.parsers.Parser.transcode` (for
    msgpack one binary message ``{type: 0, nsp, data: auth}``, without ``data`` when there is
    no auth, as socket.io-msgpack-parser's client writes it)."""
    text = connect_packet(namespace, auth, pid, offset)
    if parser is None:
        return text
    (message,) = parser.transcode([text])
    return message


class _MsgpackClientDecoder:
    """The msgpack parser's decoder in the client role: what it decodes, as it decodes it,
    except a CONNECT_ERROR, whose ``data`` (the server's ``{message, data}``) the server-role
    check reduces to ``""`` (clients do not send one). That packet is read again here: its
    ``data`` map goes back through the parser's own decoder, as the single argument of an
    ACK, so that its values (bytes, dates) come out as in any event."""

    __slots__ = ("_inner", "_parser")

    def __init__(self, parser: Parser, inner: PayloadDecoder) -> None:
        self._parser = parser
        self._inner = inner

    def receive_text_event(self, text: str) -> tuple[str, list[Any], int | None] | Packet | None:
        return self._inner.receive_text_event(text)

    def receive_text(self, text: str) -> Packet | None:
        return self._inner.receive_text(text)

    def receive_binary(self, data: bytes | bytearray | memoryview) -> Packet | None:
        packet = self._inner.receive_binary(data)
        if type(packet) is not ConnectError:
            return packet
        import msgpack  # type: ignore[import-untyped]  # (there: the parser imported it)

        raw = msgpack.unpackb(data, raw=False, strict_map_key=False)  # (ext types kept)
        payload = raw.get("data")
        if type(payload) is str:  # (an older server's plain message)
            return ConnectError(packet.namespace, payload)
        if type(payload) is not dict:
            return packet
        ack = self._parser.encode_ack("/", 0, [payload])[0]
        assert type(ack) is bytes
        reread = self._parser.decoder(0, 0).receive_binary(ack)
        full = reread.args[0]  # type: ignore[union-attr]
        message = full.get("message")
        return ConnectError(
            packet.namespace, message if type(message) is str else "", full.get("data")
        )


def client_decoder(
    parser: Parser | None, max_attachments: int, max_attachment_bytes: int
) -> PayloadDecoder:
    """A decoder of what the server sends, for a client speaking ``parser`` (None: the
    built-in :class:`PacketDecoder`); see the module docstring."""
    if parser is None:
        return PacketDecoder(
            max_attachments=max_attachments, max_attachment_bytes=max_attachment_bytes
        )
    inner = parser.decoder(max_attachments, max_attachment_bytes)
    if parser.name == "msgpack":
        return _MsgpackClientDecoder(parser, inner)
    return inner


def parse_connected(packet: Connect) -> tuple[str, str | None]:
    """``(sid, pid)`` of the server's CONNECT answer; :class:`PacketError` without a sid."""
    data = packet.auth or {}
    sid = data.get("sid")
    if type(sid) is not str or not sid:
        raise PacketError("CONNECT answer without a sid")
    pid = data.get("pid")
    return sid, pid if type(pid) is str else None


def ack_args(result: Any) -> list[Any]:
    """The ack arguments for a handler's return value."""
    if result is None:
        return []
    if type(result) is tuple:
        return list(result)
    return [result]


def reply_value(args: list[Any]) -> Any:
    """An ack's arguments as ``emit_with_ack`` returns them: one as itself, several as a
    tuple, none as ``None``."""
    if not args:
        return None
    if len(args) == 1:
        return args[0]
    return tuple(args)


_SCAN: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
"""json's scanner (C when available): one JSON value at an index, no whitespace."""


def plain_ack(text: str) -> tuple[int, list[Any]] | None:
    """``(ack_id, args)`` when ``text`` is an ACK on ``"/"`` that the packet decoder would
    read as exactly that, else ``None`` (the caller then gives ``text`` to the decoder, which
    reads it or refuses it as it always does).

    Only what is plainly fine takes this way: ``3``, an id of at most 15 ASCII digits, then a
    JSON array that fills the rest of the text with no ``\\u`` escape in it (lone surrogates
    are the decoder's to mend). Worth it: an acked round trip decodes one of these, and the
    general path (type table, regular expressions, a packet object) is ~2 us of it."""
    if not text.startswith("3") or "\\u" in text:
        return None
    pos = text.find("[", 1, 17)
    if pos < 2:
        return None
    digits = text[1:pos]
    if not (digits.isdigit() and digits.isascii()):
        return None
    try:
        args, end = _SCAN(text, pos)
    except (StopIteration, ValueError, RecursionError):
        return None
    if end != len(text) or type(args) is not list:
        return None
    return int(digits), args


class Backoff:
    """socket.io-client's reconnection delay (seconds): see the module docstring."""

    __slots__ = ("attempts", "factor", "jitter", "max", "min")

    def __init__(
        self, min: float = 1.0, max: float = 5.0, factor: float = 2.0, jitter: float = 0.5
    ) -> None:
        if min < 0 or max < 0 or factor < 1 or not 0 <= jitter <= 1:
            raise ValueError("need min >= 0, max >= 0, factor >= 1 and 0 <= jitter <= 1")
        self.min, self.max, self.factor, self.jitter = min, max, factor, jitter
        self.attempts = 0

    def duration(self, rand: float) -> float:
        """The delay before the next attempt; ``rand`` is a uniform draw in ``[0, 1)``."""
        ms = self.min * 1000 * self.factor**self.attempts
        self.attempts += 1
        if self.jitter:
            deviation = int(rand * self.jitter * ms)
            ms = ms - deviation if int(rand * 10) & 1 == 0 else ms + deviation
        return int(min(ms, self.max * 1000)) / 1000

    def reset(self) -> None:
        self.attempts = 0


@dataclass(slots=True)
class Received:
    """One event as received: ``name(*args)``, with ``ack_id`` when the server wants an ack."""

    name: str
    args: list[Any]
    ack_id: int | None = None


class Delivery(enum.Enum):
    """Where :meth:`Inbox.arrive` sent an event."""

    WAITER = "waiter"
    HANDLER = "handler"
    ITERATION = "iteration"
    KEPT = "kept"


class Inbox:
    """The delivery rules of the module docstring, as a data structure the shell drives.

    The shell tells it what exists (:meth:`add_waiter`, :meth:`add_handler`,
    :meth:`start_iteration`) and each event that arrives (:meth:`arrive`), and acts on what
    comes back; events for the iteration wait in ``for_iteration``, kept ones in ``kept``.
    """

    __slots__ = (
        "dropped",
        "for_iteration",
        "handlers",
        "iterating",
        "kept",
        "max_events",
        "waiters",
    )

    def __init__(self, max_events: int = 1024) -> None:
        if max_events < 1:
            raise ValueError("max_events must be at least 1")
        self.max_events = max_events
        self.kept: deque[Received] = deque()
        self.for_iteration: deque[Received] = deque()
        self.handlers: set[str] = set()
        self.waiters: dict[str, int] = {}
        self.iterating = False
        self.dropped = 0

    def _make_room(self) -> None:
        while len(self.kept) + len(self.for_iteration) >= self.max_events:
            # the oldest of the two: kept events arrived before any still waiting for the
            # iteration only if the iteration has not started (then for_iteration is empty)
            (self.kept or self.for_iteration).popleft()
            self.dropped += 1

    def arrive(self, event: Received) -> Delivery:
        """Route one event; WAITER and HANDLER are the shell's to deliver now."""
        name = event.name
        if name in self.waiters:
            left = self.waiters[name] - 1
            if left:
                self.waiters[name] = left
            else:
                del self.waiters[name]
            return Delivery.WAITER
        if name in self.handlers:
            return Delivery.HANDLER
        self._make_room()
        if self.iterating:
            self.for_iteration.append(event)
            return Delivery.ITERATION
        self.kept.append(event)
        return Delivery.KEPT

    def take_kept(self, name: str, limit: int | None = None) -> list[Received]:
        """Remove and return, in order, up to ``limit`` kept events called ``name``."""
        taken: list[Received] = []
        if not self.kept:
            return taken
        rest: deque[Received] = deque()
        for event in self.kept:
            if event.name == name and (limit is None or len(taken) < limit):
                taken.append(event)
            else:
                rest.append(event)
        self.kept = rest
        return taken

    def add_waiter(self, name: str) -> Received | None:
        """A one-shot waiter for ``name``: the oldest kept (or iteration-bound) event of that
        name if there is one, else ``None`` and the next ``name`` that arrives is its."""
        for queue in (self.kept, self.for_iteration):
            for i, event in enumerate(queue):
                if event.name == name:
                    del queue[i]
                    return event
        self.waiters[name] = self.waiters.get(name, 0) + 1
        return None

    def remove_waiter(self, name: str) -> None:
        """A waiter gave up (timeout, cancellation) before its event came."""
        left = self.waiters.get(name, 0) - 1
        if left > 0:
            self.waiters[name] = left
        else:
            self.waiters.pop(name, None)

    def add_handler(self, name: str) -> list[Received]:
        """A handler for ``name`` exists now: the kept events it must get first, in order."""
        self.handlers.add(name)
        return self.take_kept(name)

    def remove_handler(self, name: str) -> None:
        self.handlers.discard(name)

    def start_iteration(self) -> None:
        """The iteration started: every kept event goes to it, in order."""
        if not self.iterating:
            self.iterating = True
            self.kept, self.for_iteration = deque(), self.kept

    def pop_for_iteration(self) -> Received | None:
        return self.for_iteration.popleft() if self.for_iteration else None

    def __iter__(self) -> Iterator[Received]:
        yield from self.kept
        yield from self.for_iteration


class SendBuffer:
    """Encoded emits waiting for the socket to be connected (module docstring)."""

    __slots__ = ("max_packets", "packets")

    def __init__(self, max_packets: int = 1024) -> None:
        self.max_packets = max_packets
        self.packets: deque[list[str | bytes]] = deque()

    def add(self, packet: list[str | bytes]) -> None:
        if len(self.packets) >= self.max_packets:
            raise BufferFull(
                f"{len(self.packets)} emits already wait for the connection (max_buffered_emits)"
            )
        self.packets.append(packet)

    def drain(self) -> list[list[str | bytes]]:
        packets = list(self.packets)
        self.packets.clear()
        return packets

    def __len__(self) -> int:
        return len(self.packets)

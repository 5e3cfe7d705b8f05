"""Connection state recovery (sans-IO): what a namespace keeps so that a client whose
connection dropped gets its socket back, with what it missed.

This is the Node server's ``connectionStateRecovery`` (socket.io 4.6+), as the official
clients speak it:

* With recovery on, the CONNECT reply carries a private session id, ``{"sid", "pid"}``, and
  every EVENT packet the server sends without an ack id (and not volatile) gets one more
  argument at its end, a string *offset*. The client remembers the last offset it handled.
* When a socket leaves for a reason that may be temporary (:data:`RECOVERABLE_REASONS`: the
  transport went away, a heartbeat was missed, the server shut down), its session is kept:
  id, pid, rooms and ``data``.
* A client reconnecting sends ``{"pid", "offset", ...auth}`` in its CONNECT. If the session
  is still kept and every packet after ``offset`` is still kept, the socket comes back with
  its id, rooms and data, and the packets it missed (those whose rooms it was in) are sent to
  it before the CONNECT reply, as the Node server does (the client hands them to its
  listeners before "connect").

A :class:`RecoveryStore` is one namespace's memory of this. It takes ``now`` from its
caller and never reads the clock. Unlike the Node server's, it is bounded in count and size as
well as in time (``max_packets``, ``max_packet_bytes``, ``max_sessions``): past a bound the
oldest go first, and a
client whose offset went with them gets a new socket (``recovered`` false), which is what
happens in Node after ``maxDisconnectionDuration``. A kept session is handed out once: a
second CONNECT with the same pid gets a new socket, so no two sockets can share an id.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from pyserver.socketio.packets import Sid

__all__ = [
    "RECOVERABLE_REASONS",
    "RecoveredSession",
    "RecoveryStore",
    "StateRecovery",
]

RECOVERABLE_REASONS = frozenset(
    {
        "transport error",
        "transport close",
        "forced close",
        "ping timeout",
        "server shutting down",
        "forced server close",
    }
)
"""Why a socket may leave and still be recovered (the Node server's list): the client did
not mean to leave. A client or server namespace disconnect is final."""

_MAX_OFFSET_CHARS = 24
"""Longer offsets are not ours (ours are 8 + at most 16 characters): refused unparsed."""


@dataclass(frozen=True, slots=True)
class StateRecovery:
    """``Server(connection_state_recovery=StateRecovery(...))`` (or ``True`` for these
    defaults)."""

    max_disconnection_duration: float = 120.0
    """Seconds a session and the packets sent meanwhile are kept (Node's default: 2 min)."""
    skip_middlewares: bool = True
    """A recovered socket skips the namespace's connection middleware (as in Node)."""
    max_packets: int = 50_000
    """Packets kept per namespace at most; past it the oldest are dropped."""
    max_packet_bytes: int = 64 << 20
    """Encoded size of the packets kept per namespace at most (text characters plus binary
    attachment bytes); past it the oldest are dropped."""
    max_sessions: int = 10_000
    """Disconnected sessions kept per namespace at most; past it the oldest are dropped."""

    def __post_init__(self) -> None:
        if self.max_disconnection_duration <= 0:
            raise ValueError("max_disconnection_duration must be > 0")
        if self.max_packets < 1 or self.max_sessions < 1 or self.max_packet_bytes < 1:
            raise ValueError("max_packets, max_packet_bytes and max_sessions must be >= 1")


@dataclass(frozen=True, slots=True)
class RecoveredSession:
    """A socket to bring back: its id, pid, rooms (its own room included) and data, and the
    packets it missed in the order they were sent, each as it was encoded and sent then (its
    Engine.IO messages: the text packet, then its binary attachments)."""

    sid: Sid
    pid: str
    rooms: frozenset[str]
    data: Any
    missed: list[list[str | bytes]]
    disconnected_at: float


class _Packet(NamedTuple):
    seq: int
    rooms: frozenset[str]
    except_rooms: frozenset[str]
    parts: list[str | bytes]  # as encoded and sent (the offset is inside)
    sent_at: float
    size: int


class _Session(NamedTuple):
    sid: Sid
    pid: str
    rooms: frozenset[str]
    data: Any
    disconnected_at: float


class RecoveryStore:
    """The packets sent and the sessions left in one namespace, for
    :attr:`StateRecovery.max_disconnection_duration` (and the count bounds).

    ``prefix`` starts every offset this store gives (a random string from the caller), so an
    offset from another store or an earlier run is never mistaken for one of ours.
    """

    __slots__ = ("_bytes", "_next_seq", "_packets", "_prefix", "_sessions", "config")

    def __init__(self, config: StateRecovery, prefix: str) -> None:
        self.config = config
        self._prefix = prefix
        self._next_seq = 0
        self._packets: deque[_Packet] = deque()
        self._bytes = 0  # the sizes of the packets kept
        self._sessions: dict[str, _Session] = {}  # by pid, oldest first

    # -- packets -----------------------------------------------------------------------------

    def stamp(self, args: Sequence[Any]) -> list[Any]:
        """``args`` with the offset of the next packet added at their end. Nothing is kept
        until :meth:`keep` (so a packet that fails to encode leaves no trace)."""
        return [*args, f"{self._prefix}{self._next_seq:x}"]

    def keep(
        self,
        parts: list[str | bytes],
        rooms: frozenset[str],
        except_rooms: frozenset[str],
        now: float,
    ) -> None:
        """Keep the EVENT packet whose arguments :meth:`stamp` gave just before, as encoded
        (``parts``: what every recipient got, so a replay is neither encoded again nor
        changed by later changes to the arguments), sent to ``rooms`` (every socket when
        empty) minus ``except_rooms``. Its size (characters and bytes of the parts) counts
        against ``max_packet_bytes``; a packet larger than that whole budget is not kept,
        and the packets before it go (nobody can recover past it)."""
        size = 0
        for part in parts:
            size += len(part)
        self._expire_packets(now)
        packets = self._packets
        config = self.config
        while packets and (
            len(packets) >= config.max_packets or self._bytes + size > config.max_packet_bytes
        ):
            self._bytes -= packets.popleft().size
        seq = self._next_seq
        self._next_seq = seq + 1
        if size <= config.max_packet_bytes:
            packets.append(_Packet(seq, rooms, except_rooms, parts, now, size))
            self._bytes += size

    @property
    def packets_kept(self) -> int:
        return len(self._packets)

    @property
    def bytes_kept(self) -> int:
        return self._bytes

    @property
    def sessions_kept(self) -> int:
        return len(self._sessions)

    def expire(self, now: float) -> None:
        """Forget the sessions and packets older than the window (the shell calls this
        periodically, so an idle store keeps nothing much longer than the window says)."""
        self._expire_sessions(now)
        self._expire_packets(now)

    def _expire_packets(self, now: float) -> None:
        packets = self._packets
        oldest = now - self.config.max_disconnection_duration
        while packets and packets[0].sent_at < oldest:
            self._bytes -= packets.popleft().size

    def _seq_of(self, offset: str) -> int | None:
        prefix = self._prefix
        if len(offset) > _MAX_OFFSET_CHARS or not offset.startswith(prefix):
            return None
        digits = offset[len(prefix) :]
        if not digits or digits.strip("0123456789abcdef"):
            return None
        return int(digits, 16)

    # -- sessions ----------------------------------------------------------------------------

    def persist(self, sid: Sid, pid: str, rooms: frozenset[str], data: Any, now: float) -> None:
        """Keep the session of a socket that left for a recoverable reason."""
        sessions = self._sessions
        self._expire_sessions(now)
        sessions.pop(pid, None)
        if len(sessions) >= self.config.max_sessions:
            del sessions[next(iter(sessions))]
        sessions[pid] = _Session(sid, pid, rooms, data, now)

    def _expire_sessions(self, now: float) -> None:
        sessions = self._sessions
        oldest = now - self.config.max_disconnection_duration
        while sessions:
            pid, session = next(iter(sessions.items()))
            if session.disconnected_at >= oldest:
                break
            del sessions[pid]

    def restore(self, pid: str, offset: str, now: float) -> RecoveredSession | None:
        """The session ``pid`` and what it missed after ``offset``, or None when it cannot be
        recovered: unknown or expired session, or an offset that is not ours, or after which
        a packet is no longer kept. The session is handed out once (taken from the store)."""
        self._expire_sessions(now)
        session = self._sessions.pop(pid, None)
        if session is None:
            return None
        if session.disconnected_at < now - self.config.max_disconnection_duration:
            return None  # (a session put back may sit after younger ones)
        seq = self._seq_of(offset)
        if seq is None or seq >= self._next_seq:
            return None
        self._expire_packets(now)
        packets = self._packets
        first = packets[0].seq if packets else self._next_seq
        if seq < first - 1:  # a packet after the offset is gone
            return None
        rooms = session.rooms
        missed = [
            packet.parts
            for packet in packets
            if packet.seq > seq
            and (not packet.rooms or not rooms.isdisjoint(packet.rooms))
            and rooms.isdisjoint(packet.except_rooms)
        ]
        return RecoveredSession(
            session.sid, session.pid, rooms, session.data, missed, session.disconnected_at
        )

    def put_back(self, session: RecoveredSession) -> None:
        """Keep again a session that :meth:`restore` gave out but that was not used (its
        connection was refused or closed first), as it was."""
        if session.pid not in self._sessions and len(self._sessions) < self.config.max_sessions:
            self._sessions[session.pid] = _Session(
                session.sid, session.pid, session.rooms, session.data, session.disconnected_at
            )

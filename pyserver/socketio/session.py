"""The Socket.IO v5 state of one Engine.IO connection (sans-IO: messages and ``now`` in).

One :class:`Session` per Engine.IO session. It never reads a clock and never touches a
socket: the shell feeds it each Engine.IO message with :meth:`Session.receive_message`,
sends what its ``accept_*`` / ``send_*`` methods return, and calls
:meth:`Session.handle_timeout` at :meth:`Session.next_deadline`.

Rules (socket.io-protocol v5 and the reference server, socket.io ``lib/client.ts``):

* **States** (:class:`SessionState`): ``AWAITING_CONNECT`` -> ``OPEN`` once the shell accepts
  a first namespace -> ``CLOSED`` (final). Input after ``CLOSED`` is dropped.
* **Connect timeout.** If no namespace is accepted within ``connect_timeout`` of the session's
  start, :meth:`~Session.handle_timeout` reports :class:`ConnectTimedOut` and the session
  closes (the shell closes the Engine.IO session). A refused CONNECT does not stop the clock.
* **CONNECT** for a namespace that is neither connected nor awaiting an answer ->
  :class:`NamespaceConnectRequested`; the shell answers with :meth:`~Session.accept_namespace`
  or :meth:`~Session.refuse_namespace` (an unknown namespace is refused with "Invalid
  namespace", by the shell). A repeated CONNECT (a client calling ``connect()`` twice) is
  dropped.
* **EVENT / ACK / DISCONNECT** on a namespace the client is not connected to (never joined,
  still awaiting the shell's answer, left, or before any CONNECT) -> :class:`NamespaceNotJoined`
  and ``CLOSED``, as the reference server does (``Client.ondecoded``: "invalid state", then
  ``close()``): the shell closes the Engine.IO session with "forced close" and every socket
  leaves with "forced server close". This includes a packet that was legitimately in flight
  when the server disconnected that socket (an event the client emitted before the server's
  DISCONNECT reached it): the reference server closes the connection then too, and so do we.
  On a connected namespace, an ACK is reported only for an ack id this session sent on that
  namespace and still waits for; a late or unknown one is dropped.
* **DISCONNECT** on a connected namespace -> :class:`NamespaceLeft` (reason
  ``client namespace disconnect``), listing the ack ids that will now never be answered.
* **Violations** -> :class:`ProtocolViolation` and ``CLOSED``; the shell closes the Engine.IO
  session with reason "parse error": any :class:`~pyserver.socketio.packets.PacketError`, and a
  CONNECT_ERROR from the client (only servers send it; the reference server ignores it).
* **Sending** is bounded by ``SessionConfig.max_emit_bytes``: an event or an ack whose text
  and attachments add up to more raises
  :class:`~pyserver.socketio.packets.PacketTooLarge` and nothing of it is sent.
* **Acks we wait for** get ids from one counter per session; each may carry a deadline, after
  which :class:`AckTimedOut` is reported once and a late answer is dropped.
"""

from __future__ import annotations

import enum
import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, TypeAlias

from pyserver.socketio.decoder import PacketDecoder
from pyserver.socketio.packets import (
    MAX_ACK_ID,
    Ack,
    Connect,
    ConnectError,
    Disconnect,
    Event,
    LocalProtocolError,
    PacketError,
    Sid,
    encode_ack,
    encode_connect,
    encode_connect_error,
    encode_disconnect,
    encode_event,
)

__all__ = [
    "DEFAULT_MAX_EMIT_BYTES",
    "AckReceived",
    "AckTimedOut",
    "ConnectTimedOut",
    "EventReceived",
    "LeaveReason",
    "NamespaceConnectRequested",
    "NamespaceLeft",
    "NamespaceNotJoined",
    "ProtocolViolation",
    "Session",
    "SessionConfig",
    "SessionEvent",
    "SessionState",
]


DEFAULT_MAX_EMIT_BYTES: Final = 16 << 20
"""The default bound of one outgoing packet (16 MiB): four times a WebSocket outbox's default
(``ws_max_outbox_bytes``), so it refuses only what no recipient could have queued anyway."""


class SessionState(enum.Enum):
    AWAITING_CONNECT = "awaiting connect"
    OPEN = "open"
    CLOSED = "closed"


class LeaveReason(enum.StrEnum):
    """Why a socket left its namespace, named as the reference server names it."""

    CLIENT_NAMESPACE_DISCONNECT = "client namespace disconnect"
    SERVER_NAMESPACE_DISCONNECT = "server namespace disconnect"


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Per-server settings (seconds, bytes). One instance is shared by its sessions."""

    connect_timeout: float = 45.0
    max_attachments: int = 10
    max_attachment_bytes: int = 1_000_000
    max_emit_bytes: int | None = DEFAULT_MAX_EMIT_BYTES
    """The most one outgoing packet may hold (text characters and attachment bytes), checked
    before anything is sent or built for a recipient; ``None``: no bound."""

    def __post_init__(self) -> None:
        if self.connect_timeout <= 0:
            raise ValueError("connect_timeout must be > 0")
        if self.max_attachments < 0 or self.max_attachment_bytes < 0:
            raise ValueError("attachment limits must not be negative")
        if self.max_emit_bytes is not None and self.max_emit_bytes < 1:
            raise ValueError("max_emit_bytes must be >= 1 (or None)")


@dataclass(frozen=True, slots=True)
class NamespaceConnectRequested:
    """The client asks to join ``namespace``; answer with accept_ or refuse_namespace."""

    namespace: str
    auth: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class EventReceived:
    """Socket ``sid`` emitted ``event(*args)``; answer with send_ack if ``ack_id`` is set."""

    namespace: str
    sid: Sid
    event: str
    args: list[Any]
    ack_id: int | None


@dataclass(frozen=True, slots=True)
class AckReceived:
    """Socket ``sid`` answered the event we sent with ``ack_id``."""

    namespace: str
    sid: Sid
    ack_id: int
    args: list[Any]


@dataclass(frozen=True, slots=True)
class AckTimedOut:
    """No answer to the event we sent with ``ack_id`` before its deadline."""

    namespace: str
    sid: Sid
    ack_id: int


@dataclass(frozen=True, slots=True)
class NamespaceLeft:
    """Socket ``sid`` left ``namespace``; ``abandoned_acks`` will never be answered."""

    namespace: str
    sid: Sid
    reason: str
    abandoned_acks: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class ConnectTimedOut:
    """No namespace was joined in time: close the Engine.IO session."""


@dataclass(frozen=True, slots=True)
class ProtocolViolation:
    """The client broke the protocol: close the Engine.IO session with reason "parse error"."""

    detail: str


@dataclass(frozen=True, slots=True)
class NamespaceNotJoined:
    """The client sent ``packet`` ("EVENT", "ACK" or "DISCONNECT") for ``namespace``, which it
    is not connected to: close the Engine.IO session ("forced close"), as the reference
    server does for a packet in an invalid state."""

    namespace: str
    packet: str


SessionEvent: TypeAlias = (
    NamespaceConnectRequested
    | EventReceived
    | AckReceived
    | AckTimedOut
    | NamespaceLeft
    | ConnectTimedOut
    | ProtocolViolation
    | NamespaceNotJoined
)


@dataclass(slots=True)
class _PendingAck:
    namespace: str
    deadline: float | None


class Session:
    """The Socket.IO state of one connection. See the module docstring for its rules."""

    __slots__ = (
        "_ack_deadlines",
        "_connect_deadline",
        "_decoder",
        "_next_ack_id",
        "_pending_acks",
        "_requested",
        "_sockets",
        "config",
        "state",
    )

    def __init__(self, config: SessionConfig, now: float) -> None:
        self.config = config
        self.state = SessionState.AWAITING_CONNECT
        self._decoder = PacketDecoder(
            max_attachments=config.max_attachments,
            max_attachment_bytes=config.max_attachment_bytes,
        )
        self._connect_deadline: float | None = now + config.connect_timeout
        self._sockets: dict[str, Sid] = {}
        self._requested: set[str] = set()
        self._pending_acks: dict[int, _PendingAck] = {}
        self._ack_deadlines: list[tuple[float, int]] = []  # a heap; stale entries skipped
        self._next_ack_id = 0

    @property
    def sockets(self) -> Mapping[str, Sid]:
        """Connected namespaces and the sid of this client's socket in each (read-only)."""
        return MappingProxyType(self._sockets)

    # ------------------------------------------------------------------ incoming

    def receive_message(self, data: str | bytes) -> SessionEvent | None:
        """Take one Engine.IO message; return what it means, or ``None`` (nothing yet/dropped)."""
        if self.state is SessionState.CLOSED:
            return None
        try:
            if type(data) is str:
                packet = self._decoder.receive_text_event(data)
                if isinstance(packet, tuple):  # the hot path: an EVENT on "/"
                    sid = self._sockets.get("/")
                    if sid is None:
                        return self._not_joined("/", "EVENT")
                    return EventReceived("/", sid, *packet)
            elif isinstance(data, str):
                packet = self._decoder.receive_text(data)
            else:
                packet = self._decoder.receive_binary(data)
        except PacketError as exc:
            return self._violation(str(exc))
        if packet is None:
            return None
        namespace = packet.namespace
        if type(packet) is Event:
            sid = self._sockets.get(namespace)
            if sid is None:
                return self._not_joined(namespace, "EVENT")
            return EventReceived(namespace, sid, packet.event, packet.args, packet.ack_id)
        if type(packet) is Ack:
            return self._ack_received(packet)
        if type(packet) is Connect:
            if namespace in self._sockets or namespace in self._requested:
                return None
            self._requested.add(namespace)
            return NamespaceConnectRequested(namespace, packet.auth)
        if type(packet) is Disconnect:
            if namespace not in self._sockets:
                return self._not_joined(namespace, "DISCONNECT")
            return self._leave(namespace, LeaveReason.CLIENT_NAMESPACE_DISCONNECT)
        assert type(packet) is ConnectError
        return self._violation("CONNECT_ERROR from a client")

    def _ack_received(self, packet: Ack) -> AckReceived | NamespaceNotJoined | None:
        sid = self._sockets.get(packet.namespace)
        if sid is None:
            return self._not_joined(packet.namespace, "ACK")
        pending = self._pending_acks.get(packet.ack_id)
        if pending is None or pending.namespace != packet.namespace:
            return None
        del self._pending_acks[packet.ack_id]
        return AckReceived(packet.namespace, sid, packet.ack_id, packet.args)

    def _violation(self, detail: str) -> ProtocolViolation:
        self._close()
        return ProtocolViolation(detail)

    def _not_joined(self, namespace: str, packet: str) -> NamespaceNotJoined:
        self._close()
        return NamespaceNotJoined(namespace, packet)

    def _close(self) -> None:
        self.state = SessionState.CLOSED
        self._connect_deadline = None
        self._requested.clear()
        self._pending_acks.clear()
        self._ack_deadlines.clear()

    def _leave(self, namespace: str, reason: str) -> NamespaceLeft:
        sid = self._sockets.pop(namespace)
        abandoned = tuple(
            ack_id
            for ack_id, pending in self._pending_acks.items()
            if pending.namespace == namespace
        )
        for ack_id in abandoned:
            del self._pending_acks[ack_id]
        return NamespaceLeft(namespace, sid, reason, abandoned)

    # ------------------------------------------------------------------ namespace answers

    def accept_namespace(self, namespace: str, sid: Sid, pid: str | None = None) -> str:
        """Admit the client to ``namespace`` as socket ``sid``: the CONNECT packet to send."""
        self._take_request(namespace)
        self._sockets[namespace] = sid
        self.state = SessionState.OPEN
        self._connect_deadline = None
        return encode_connect(namespace, sid, pid)

    def refuse_namespace(self, namespace: str, message: str, data: Any = None) -> str:
        """Refuse ``namespace``: the CONNECT_ERROR packet to send."""
        self._take_request(namespace)
        return encode_connect_error(namespace, message, data)

    def _take_request(self, namespace: str) -> None:
        self._check_open()
        if namespace not in self._requested:
            raise LocalProtocolError(f"the client did not ask to join {namespace!r}")
        self._requested.discard(namespace)

    def disconnect_namespace(self, namespace: str) -> tuple[str, NamespaceLeft]:
        """Server-side disconnect of the client's socket in ``namespace``.

        Returns the DISCONNECT packet to send and the :class:`NamespaceLeft` it amounts to.
        """
        self._sid_in(namespace)
        return encode_disconnect(namespace), self._leave(
            namespace, LeaveReason.SERVER_NAMESPACE_DISCONNECT
        )

    def connection_lost(self, reason: str) -> list[NamespaceLeft]:
        """The Engine.IO session ended (``reason`` as it names it): every socket leaves."""
        if self.state is SessionState.CLOSED:
            return []
        left = [self._leave(namespace, reason) for namespace in list(self._sockets)]
        self._close()
        return left

    # ------------------------------------------------------------------ sending

    def send_event(self, namespace: str, event: str, args: Sequence[Any] = ()) -> list[str | bytes]:
        """The messages emitting ``event(*args)`` to the client's socket in ``namespace``."""
        self._sid_in(namespace)
        return encode_event(namespace, event, args, max_bytes=self.config.max_emit_bytes)

    def send_event_with_ack(
        self,
        namespace: str,
        event: str,
        args: Sequence[Any] = (),
        *,
        now: float,
        timeout: float | None = None,
    ) -> tuple[int, list[str | bytes]]:
        """Emit asking for an answer: the ack id (see :class:`AckReceived`) and the messages.

        With ``timeout``, :class:`AckTimedOut` is reported at ``now + timeout`` if no answer
        came by then.
        """
        self._sid_in(namespace)
        ack_id = self._next_ack_id
        messages = encode_event(
            namespace, event, args, ack_id, max_bytes=self.config.max_emit_bytes
        )
        self._next_ack_id = 0 if ack_id == MAX_ACK_ID else ack_id + 1
        deadline = None if timeout is None else now + timeout
        self._pending_acks[ack_id] = _PendingAck(namespace, deadline)
        if deadline is not None:
            heap = self._ack_deadlines
            if len(heap) > 2 * len(self._pending_acks) + 64:  # mostly answered acks: compact
                heap[:] = [entry for entry in heap if not self._is_stale(entry)]
                heapq.heapify(heap)
            heapq.heappush(heap, (deadline, ack_id))
        return ack_id, messages

    def send_ack(self, namespace: str, ack_id: int, args: Sequence[Any] = ()) -> list[str | bytes]:
        """The messages answering the client's event that carried ``ack_id``."""
        if self.state is SessionState.CLOSED or namespace not in self._sockets:
            self._sid_in(namespace)  # raises the right LocalProtocolError
        return encode_ack(namespace, ack_id, args, max_bytes=self.config.max_emit_bytes)

    def _check_open(self) -> None:
        if self.state is SessionState.CLOSED:
            raise LocalProtocolError("the session is closed")

    def _sid_in(self, namespace: str) -> Sid:
        self._check_open()
        sid = self._sockets.get(namespace)
        if sid is None:
            raise LocalProtocolError(f"the client is not connected to {namespace!r}")
        return sid

    # ------------------------------------------------------------------ time

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timeout` must next be called, if ever."""
        heap = self._ack_deadlines
        while heap and self._is_stale(heap[0]):
            heapq.heappop(heap)
        ack_deadline = heap[0][0] if heap else None
        if self._connect_deadline is None or ack_deadline is None:
            return ack_deadline if self._connect_deadline is None else self._connect_deadline
        return min(self._connect_deadline, ack_deadline)

    def _is_stale(self, entry: tuple[float, int]) -> bool:
        pending = self._pending_acks.get(entry[1])
        return pending is None or pending.deadline != entry[0]

    def handle_timeout(self, now: float) -> list[SessionEvent]:
        """Report what is due at ``now``: a connect timeout, or acks that timed out."""
        if self._connect_deadline is not None and now >= self._connect_deadline:
            self._close()
            return [ConnectTimedOut()]
        events: list[SessionEvent] = []
        heap = self._ack_deadlines
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            if self._is_stale(entry):
                continue
            pending = self._pending_acks.pop(entry[1])
            events.append(
                AckTimedOut(pending.namespace, self._sockets[pending.namespace], entry[1])
            )
        return events

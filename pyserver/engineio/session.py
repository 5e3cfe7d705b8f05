"""The Engine.IO v4 session state machine (sans-IO: packets and ``now`` in, events out).

One :class:`Session` per Engine.IO session id. It never reads a clock, never touches a
socket and never imports trio: the shell passes ``now`` (seconds, any monotonic origin),
feeds it what arrived, takes the packets it queued, and calls :meth:`Session.handle_timeout`
at :meth:`Session.next_deadline`. Its vocabulary (ids, states, close reasons, the events it
returns, :class:`SessionConfig`) is in :mod:`pyserver.engineio.events`, re-exported here.

Rules (engine.io-protocol README and the reference server, engine.io ``lib/socket.ts``):

* **States.** ``SessionState.OPEN`` -> ``CLOSING`` (only a local ``close()`` on polling:
  queued packets and a ``1`` still have to leave with a GET) -> ``CLOSED``. ``CLOSED`` is
  final and produces exactly one :class:`SessionClosed` event.
* **Open.** The constructor queues the open packet ``0{"sid", "upgrades", "pingInterval",
  "pingTimeout", "maxPayload"}`` (milliseconds; ``upgrades`` is ``["websocket"]`` on polling
  when upgrades are allowed, ``[]`` on WebSocket).
* **Heartbeat** (server-driven in v4). ``pingInterval`` after the open (and after each pong)
  the session queues ``2`` and waits ``pingTimeout`` for ``3`` (counted from when the ping
  was due, at least half of it from when it left); no pong -> closed with "ping timeout".
  A ping from the client is a "transport error" (wrong heartbeat direction).
* **Incoming.** ``4`` -> :class:`MessageReceived`; ``3`` re-arms the heartbeat; ``1`` ->
  closed with "transport close"; ``0``, ``5``, ``6`` are ignored as the reference does; an
  undecodable packet or payload -> closed with "parse error". Packets arriving while not
  ``OPEN`` are dropped.
* **Polling.** At most one GET waits at a time (``PollState``); a second GET closes the
  session with "transport error" (the shell answers it 400) and the waiting GET gets ``1``.
  A GET is answered as soon as packets are queued. When the session closes, a waiting GET
  gets ``1`` (server-side close) or ``6`` (the client sent ``1``).
* **Upgrade** (``UpgradeState``): a WebSocket opened with this sid starts ``PROBING``;
  ``2probe`` on it is answered ``3probe`` (``PROBED``) and any GET is then answered at once
  (``6`` when nothing is queued) so the client's poll ends; ``5`` switches the transport to
  WebSocket (``UPGRADED``, :class:`UpgradeCompleted`) and the shell flushes the queue over it.
  Anything else on the probe, or no ``5`` within ``upgrade_timeout``, fails the probe
  (:class:`ProbeFailed`; the session continues on polling). Only one upgrade per session.
* **Bounded queue.** The outgoing queue holds at most ``max_queued_packets`` packets and
  ``max_queued_bytes`` bytes (counted in characters for text); past that the session is a
  slow consumer and closes with "transport error" (detail "outgoing queue full").
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pyserver.engineio.events import (
    CloseReason,
    EioSid,
    Event,
    HeartbeatState,
    MessageReceived,
    PollState,
    ProbeFailed,
    SessionClosed,
    SessionConfig,
    SessionState,
    Transport,
    UpgradeCompleted,
    UpgradeState,
)
from pyserver.engineio.packets import (
    Packet,
    PacketError,
    PacketType,
    decode_packet,
    decode_payload,
    encode_payload,
)
from pyserver.errors import LocalProtocolError

__all__ = [
    "CloseReason",
    "EioSid",
    "Event",
    "LocalProtocolError",
    "MessageReceived",
    "PollState",
    "ProbeFailed",
    "Session",
    "SessionClosed",
    "SessionConfig",
    "SessionState",
    "Transport",
    "UpgradeCompleted",
    "UpgradeState",
]


_NO_EVENTS: tuple[Event, ...] = ()


_NO_PACKETS: list[Packet] = []  # shared: never appended to
_PING = Packet(PacketType.PING)
_CLOSE = Packet(PacketType.CLOSE)
_NOOP = Packet(PacketType.NOOP)
_PONG_PROBE = Packet(PacketType.PONG, "probe")


class Session:
    """The state of one Engine.IO session. See the module docstring for its rules."""

    #: The Engine.IO protocol revision it speaks (``SessionV3`` of
    #: :mod:`pyserver.engineio.v3` says 3).
    protocol = 4
    #: Its decoders: one WebSocket message, and the body of a polling POST (``SessionV3``
    #: gives v3's; message packets on a WebSocket never reach them: see ``receive_data``).
    decode_message = staticmethod(decode_packet)
    decode_body = staticmethod(decode_payload)

    __slots__ = (
        "_close_deadline",
        "_heartbeat",
        "_heartbeat_deadline",
        "_outbox",
        "_probe_outbox",
        "_queued_bytes",
        "_upgrade_deadline",
        "close_reason",
        "config",
        "poll_state",
        "sid",
        "state",
        "transport",
        "upgrade_state",
    )

    def __init__(
        self, sid: EioSid, transport: Transport, config: SessionConfig, now: float
    ) -> None:
        self.sid = sid
        self.transport = transport
        self.config = config
        self.state = SessionState.OPEN
        self.upgrade_state = UpgradeState.NONE
        self.poll_state = PollState.IDLE
        self.close_reason: SessionClosed | None = None
        # plain lists (an empty deque costs over 500 bytes, an empty list 56): on WebSocket
        # the queue is almost always empty, and only an upgrade uses the probe's
        self._outbox: list[Packet] = []
        self._probe_outbox: list[Packet] = _NO_PACKETS
        self._queued_bytes = 0
        self._heartbeat = HeartbeatState.WAITING_INTERVAL
        self._heartbeat_deadline = now + config.ping_interval
        self._upgrade_deadline: float | None = None
        self._close_deadline: float | None = None
        self._outbox.append(Packet(PacketType.OPEN, self._open_payload()))

    def _open_payload(self) -> str:
        return json.dumps(self._open_fields(), separators=(",", ":"))

    def _open_fields(self) -> dict[str, Any]:
        """The OPEN packet's handshake (``SessionV3`` leaves out ``maxPayload``)."""
        upgrades = (
            ["websocket"]
            if self.transport is Transport.POLLING and self.config.allow_upgrades
            else []
        )
        return {
            "sid": self.sid,
            "upgrades": upgrades,
            "pingInterval": round(self.config.ping_interval * 1000),
            "pingTimeout": round(self.config.ping_timeout * 1000),
            "maxPayload": self.config.max_payload,
        }

    # ------------------------------------------------------------------ incoming

    def receive_data(self, data: str | bytes, now: float) -> Sequence[Event]:
        """One WebSocket message on the session's own transport."""
        if self.state is not SessionState.OPEN:
            return _NO_EVENTS
        try:
            packet = self.decode_message(data)
        except PacketError as exc:
            return self._close(CloseReason.PARSE_ERROR, str(exc))
        return self.receive_packet(packet, now)

    def receive_payload(self, body: str | bytes, now: float) -> Sequence[Event]:
        """The body of one polling POST (packets joined with ``\\x1e``)."""
        if self.state is not SessionState.OPEN:
            return _NO_EVENTS
        try:
            packets = self.decode_body(body)
        except PacketError as exc:
            return self._close(CloseReason.PARSE_ERROR, str(exc))
        events: list[Event] = []
        for packet in packets:
            events.extend(self.receive_packet(packet, now))
            if self.state is not SessionState.OPEN:
                break
        return events

    def receive_packet(self, packet: Packet, now: float) -> Sequence[Event]:
        """One decoded packet on the session's own transport."""
        if self.state is not SessionState.OPEN:
            return _NO_EVENTS
        ptype = packet.type
        if ptype is PacketType.MESSAGE:
            return (MessageReceived(packet.data),)
        if ptype is PacketType.PONG:
            self._heartbeat = HeartbeatState.WAITING_INTERVAL
            self._heartbeat_deadline = now + self.config.ping_interval
            return _NO_EVENTS
        if ptype is PacketType.CLOSE:
            return self._close(CloseReason.TRANSPORT_CLOSE, "client sent close", by_client=True)
        if ptype is PacketType.PING:
            return self._close(CloseReason.TRANSPORT_ERROR, "invalid heartbeat direction")
        return _NO_EVENTS  # open, upgrade and noop from the client are ignored

    def transport_closed(
        self, reason: CloseReason = CloseReason.TRANSPORT_CLOSE, detail: str = ""
    ) -> Sequence[Event]:
        """The session's WebSocket went away (or failed): the session ends."""
        if self.state is SessionState.CLOSED:
            return _NO_EVENTS
        return self._close(reason, detail)

    # ------------------------------------------------------------------ polling

    def start_poll(self) -> Sequence[Event]:
        """A GET arrived. A second concurrent GET closes the session ("transport error");
        the caller then answers this GET 400 (check ``poll_state``/``state``)."""
        if self.transport is not Transport.POLLING:
            raise LocalProtocolError("start_poll() on a WebSocket session")
        if self.poll_state is PollState.WAITING:
            return self._close(CloseReason.TRANSPORT_ERROR, "overlap from client")
        self.poll_state = PollState.WAITING
        return _NO_EVENTS

    @property
    def poll_ready(self) -> bool:
        """True when a waiting GET can be answered now."""
        if self.poll_state is not PollState.WAITING:
            return False
        return (
            bool(self._outbox)
            or self.state is SessionState.CLOSED
            or self.transport is Transport.WEBSOCKET
            or self.upgrade_state is UpgradeState.PROBED
        )

    def take_poll_payload(self) -> list[Packet] | None:
        """The packets to answer the waiting GET with, or None to keep waiting. A non-None
        answer ends the GET; then call :meth:`poll_finished` (a ``CLOSING`` session whose
        ``1`` just left closes there)."""
        if self.poll_state is not PollState.WAITING:
            raise LocalProtocolError("take_poll_payload() without start_poll()")
        if not self.poll_ready:
            return None
        self.poll_state = PollState.IDLE
        if self.transport is Transport.WEBSOCKET:
            return [_NOOP]
        if not self._outbox:
            return [_NOOP] if self.state is not SessionState.CLOSED else [_CLOSE]
        outbox = self._outbox
        if len(outbox) <= self.config.max_packets_per_poll:
            packets = list(outbox)
            outbox.clear()
            self._queued_bytes = 0
        else:
            count = self.config.max_packets_per_poll
            packets = outbox[:count]
            del outbox[:count]
            self._queued_bytes -= sum(len(packet.data) + 1 for packet in packets)
        return packets

    def poll_finished(self) -> Sequence[Event]:
        """After a GET carried the last packets of a ``CLOSING`` session: it is now closed."""
        if self.state is SessionState.CLOSING and not self._outbox:
            return self._close(CloseReason.FORCED_CLOSE, "closed by the server")
        return _NO_EVENTS

    def encode_poll(self, packets: list[Packet]) -> str | bytes:
        """The body of the answer to a GET carrying ``packets`` (v4: text, ``\\x1e``)."""
        return encode_payload(packets)

    def cancel_poll(self) -> None:
        """The waiting GET went away without an answer (its connection closed)."""
        self.poll_state = PollState.IDLE

    # ------------------------------------------------------------------ upgrade

    def start_upgrade(self, now: float) -> bool:
        """A WebSocket arrived with this sid. False: refuse it (close that WebSocket)."""
        if (
            self.state is not SessionState.OPEN
            or self.transport is not Transport.POLLING
            or self.upgrade_state is not UpgradeState.NONE
            or not self.config.allow_upgrades
        ):
            return False
        self.upgrade_state = UpgradeState.PROBING
        self._upgrade_deadline = now + self.config.upgrade_timeout
        return True

    def receive_probe_data(self, data: str | bytes, now: float) -> Sequence[Event]:
        """One message on the probe WebSocket (``2probe``, then ``5``)."""
        if self.upgrade_state not in (UpgradeState.PROBING, UpgradeState.PROBED):
            return _NO_EVENTS
        if self.state is not SessionState.OPEN:
            return self._fail_probe("session not open")
        try:
            packet = decode_packet(data)
        except PacketError:
            return self._fail_probe("parse error on the probe")
        if packet.type is PacketType.PING and packet.data == "probe":
            self._probe_outbox = [_PONG_PROBE]
            self.upgrade_state = UpgradeState.PROBED
            return _NO_EVENTS
        if packet.type is PacketType.UPGRADE:
            self.upgrade_state = UpgradeState.UPGRADED
            self.transport = Transport.WEBSOCKET
            self._upgrade_deadline = None
            self._probe_outbox = _NO_PACKETS
            return (UpgradeCompleted(),)
        return self._fail_probe(f"unexpected {packet.type.name} packet on the probe")

    def abort_upgrade(self) -> None:
        """The probe WebSocket closed before ``5``."""
        if self.upgrade_state in (UpgradeState.PROBING, UpgradeState.PROBED):
            self.upgrade_state = UpgradeState.NONE
            self._upgrade_deadline = None
            self._probe_outbox = _NO_PACKETS

    def take_probe_packets(self) -> list[Packet]:
        """Packets to write on the probe WebSocket (``3probe``)."""
        packets, self._probe_outbox = self._probe_outbox, _NO_PACKETS
        return packets if packets else []

    def _fail_probe(self, detail: str) -> Sequence[Event]:
        self.abort_upgrade()
        return (ProbeFailed(detail),)

    # ------------------------------------------------------------------ outgoing

    def send_message(self, data: str | bytes) -> Sequence[Event]:
        """Queue a message packet. Dropped unless ``OPEN``; may close a slow consumer."""
        if self.state is not SessionState.OPEN:
            return _NO_EVENTS
        return self.send_packet(Packet(PacketType.MESSAGE, data))

    def send_packet(self, packet: Packet) -> Sequence[Event]:
        """Queue an already built packet (broadcasts build it once for every recipient)."""
        if self.state is not SessionState.OPEN:
            return _NO_EVENTS
        size = len(packet.data) + 1
        if (
            len(self._outbox) >= self.config.max_queued_packets
            or self._queued_bytes + size > self.config.max_queued_bytes
        ):
            return self._close(CloseReason.TRANSPORT_ERROR, "outgoing queue full")
        self._outbox.append(packet)
        self._queued_bytes += size
        return _NO_EVENTS

    @property
    def has_packets(self) -> bool:
        return bool(self._outbox)

    @property
    def queued(self) -> int:
        """Packets waiting to be sent (by a GET, or by the WebSocket writer)."""
        return len(self._outbox)

    def take_packets(self) -> list[Packet]:
        """Everything queued, for a WebSocket writer (one packet per message)."""
        packets = self._outbox
        if not packets:
            return []
        self._outbox = []
        self._queued_bytes = 0
        return packets

    # ------------------------------------------------------------------ closing

    def close(
        self, reason: CloseReason = CloseReason.FORCED_CLOSE, now: float = 0.0
    ) -> Sequence[Event]:
        """Close from this side. ``FORCED_CLOSE`` on polling flushes the queue and a ``1``
        with the next GET first (``CLOSING``); other reasons close at once."""
        if self.state is not SessionState.OPEN:
            if self.state is SessionState.CLOSING and reason is not CloseReason.FORCED_CLOSE:
                return self._close(reason, "")
            return _NO_EVENTS
        if (
            reason is CloseReason.FORCED_CLOSE
            and self.transport is Transport.POLLING
            and self.poll_state is PollState.IDLE
        ):
            self.state = SessionState.CLOSING
            self._outbox.append(_CLOSE)
            self._close_deadline = now + self.config.close_timeout
            return _NO_EVENTS
        return self._close(reason, "closed by the server", flush=True)

    def _close(
        self, reason: CloseReason, detail: str, *, by_client: bool = False, flush: bool = False
    ) -> Sequence[Event]:
        self.state = SessionState.CLOSED
        closed = SessionClosed(reason, detail)
        self.close_reason = closed
        self._upgrade_deadline = None
        self._close_deadline = None
        self._probe_outbox = _NO_PACKETS
        if not flush:
            self._outbox.clear()
            self._queued_bytes = 0
        if self.upgrade_state in (UpgradeState.PROBING, UpgradeState.PROBED):
            self.upgrade_state = UpgradeState.NONE
        # What a waiting GET (or the WebSocket writer) gets last: 6 after the client's
        # own close, 1 otherwise. Nothing when the transport itself is gone.
        if reason is not CloseReason.TRANSPORT_CLOSE or by_client:
            self._outbox.append(_NOOP if by_client else _CLOSE)
        return (closed,)

    # ------------------------------------------------------------------ timers

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timeout` must next be called, or None (closed)."""
        if self.state is SessionState.CLOSED:
            return None
        if self.state is SessionState.CLOSING:
            return self._close_deadline
        deadline = self._heartbeat_deadline
        if self._upgrade_deadline is not None and self._upgrade_deadline < deadline:
            deadline = self._upgrade_deadline
        if self._close_deadline is not None and self._close_deadline < deadline:
            deadline = self._close_deadline
        return deadline

    def handle_timeout(self, now: float) -> Sequence[Event]:
        """Fire every timer due at ``now`` (ping, pong timeout, upgrade timeout, close)."""
        if self.state is SessionState.CLOSED:
            return _NO_EVENTS
        events: list[Event] = []
        if self._close_deadline is not None and now >= self._close_deadline:
            return self._close(CloseReason.FORCED_CLOSE, "close timeout")
        if self._upgrade_deadline is not None and now >= self._upgrade_deadline:
            events.extend(self._fail_probe("upgrade timeout"))
        if now >= self._heartbeat_deadline and self.state is SessionState.OPEN:
            if self._heartbeat is HeartbeatState.WAITING_PONG:
                events.extend(self._close(CloseReason.PING_TIMEOUT, "no pong in time"))
                return events
            # The pong is due ping_timeout after the ping was due, so a late timer does not
            # stretch the heartbeat; but never less than half of it after the ping left.
            timeout = self.config.ping_timeout
            self._heartbeat = HeartbeatState.WAITING_PONG
            self._heartbeat_deadline = max(self._heartbeat_deadline + timeout, now + timeout / 2)
            events.extend(self.send_packet(_PING))
        return events

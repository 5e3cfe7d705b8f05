"""What an Engine.IO session is told and says (sans-IO): ids, states, reasons, events, config.

The vocabulary of :class:`~pyserver.engineio.session.Session`, apart from its rules so each
can be read alone (as h11 keeps its events apart from its state machine):

* :data:`EioSid`, the session id; :class:`Transport`, polling or WebSocket;
* the states of the machine's independent parts: :class:`SessionState` (open, closing,
  closed), :class:`UpgradeState` (the probe), :class:`PollState` (the one waiting GET),
  :class:`HeartbeatState`;
* :class:`CloseReason`, why a session ended, named as the reference server names it;
* the events the session returns (:data:`Event`): :class:`MessageReceived`,
  :class:`SessionClosed`, :class:`UpgradeCompleted`, :class:`ProbeFailed`;
* :class:`SessionConfig`, the per-server settings, checked when built.

:mod:`pyserver.engineio.session` re-exports them all; import from there or from here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NewType

__all__ = [
    "CloseReason",
    "EioSid",
    "Event",
    "HeartbeatState",
    "MessageReceived",
    "PollState",
    "ProbeFailed",
    "SessionClosed",
    "SessionConfig",
    "SessionState",
    "Transport",
    "UpgradeCompleted",
    "UpgradeState",
]


EioSid = NewType("EioSid", str)
"""An Engine.IO session id (not a Socket.IO ``Sid``)."""


class Transport(enum.StrEnum):
    POLLING = "polling"
    WEBSOCKET = "websocket"


class SessionState(enum.Enum):
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class UpgradeState(enum.Enum):
    NONE = "none"
    PROBING = "probing"  # a WebSocket with this sid is open, waiting for 2probe
    PROBED = "probed"  # 3probe sent, waiting for 5
    UPGRADED = "upgraded"


class PollState(enum.Enum):
    IDLE = "idle"
    WAITING = "waiting"  # one GET is holding the line


class HeartbeatState(enum.Enum):
    WAITING_INTERVAL = "waiting interval"
    WAITING_PONG = "waiting pong"


class CloseReason(enum.StrEnum):
    """Why a session ended, named as the reference server names it."""

    TRANSPORT_CLOSE = "transport close"
    TRANSPORT_ERROR = "transport error"
    PING_TIMEOUT = "ping timeout"
    PARSE_ERROR = "parse error"
    FORCED_CLOSE = "forced close"
    SERVER_SHUTTING_DOWN = "server shutting down"


@dataclass(frozen=True, slots=True)
class MessageReceived:
    data: str | bytes


@dataclass(frozen=True, slots=True)
class SessionClosed:
    reason: CloseReason
    detail: str = ""


@dataclass(frozen=True, slots=True)
class UpgradeCompleted:
    """The session now runs on WebSocket; flush the queue over it."""


@dataclass(frozen=True, slots=True)
class ProbeFailed:
    """The probe WebSocket must be closed; the session goes on over polling."""

    detail: str


Event = MessageReceived | SessionClosed | UpgradeCompleted | ProbeFailed


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Per-server settings (seconds and bytes). One instance is shared by its sessions."""

    ping_interval: float = 25.0
    ping_timeout: float = 20.0
    upgrade_timeout: float = 10.0
    max_payload: int = 1_000_000
    allow_upgrades: bool = True
    max_queued_packets: int = 1024
    max_queued_bytes: int = 16 * 1024 * 1024
    close_timeout: float = 30.0
    #: Packets in one long-polling response at most; the rest answer the next GET at once.
    #: python-engineio's client refuses a payload of more than 16 packets (and drops the
    #: connection), so 16 keeps every official client working.
    max_packets_per_poll: int = 16

    def __post_init__(self) -> None:
        if self.ping_interval <= 0 or self.ping_timeout <= 0 or self.upgrade_timeout <= 0:
            raise ValueError("ping_interval, ping_timeout and upgrade_timeout must be > 0")
        if (
            self.max_payload <= 0
            or self.max_queued_packets <= 0
            or self.max_queued_bytes <= 0
            or self.max_packets_per_poll <= 0
        ):
            raise ValueError("max_payload and the queue bounds must be > 0")

"""Socket.IO v5 (sans-IO): the packet codec and, built on it, the per-connection state.

:mod:`.packets` (the codec), :mod:`.binary` (attachments), :mod:`.decoder`, :mod:`.session`
(one connection's namespaces and acks), :mod:`.recovery` (the connection state recovery
store), :mod:`.rooms` (the room index), :mod:`.ratelimit`, and :mod:`.client` (the client's
side of the protocol, for :mod:`pyserver.trio.client`).

Nothing in this package imports trio, sockets or the clock; the Trio shell drives it.
"""

from pyserver.socketio.decoder import DecoderState, PacketDecoder
from pyserver.socketio.packets import (
    MAX_ACK_ID,
    RESERVED_EVENTS,
    Ack,
    Connect,
    ConnectError,
    Disconnect,
    Event,
    LocalProtocolError,
    Packet,
    PacketError,
    PacketType,
    ProtocolError,
    RemoteProtocolError,
    Sid,
    encode_ack,
    encode_connect,
    encode_connect_error,
    encode_disconnect,
    encode_event,
)
from pyserver.socketio.session import (
    AckReceived,
    AckTimedOut,
    ConnectTimedOut,
    EventReceived,
    LeaveReason,
    NamespaceConnectRequested,
    NamespaceLeft,
    ProtocolViolation,
    Session,
    SessionConfig,
    SessionEvent,
    SessionState,
)

__all__ = [
    "MAX_ACK_ID",
    "RESERVED_EVENTS",
    "Ack",
    "AckReceived",
    "AckTimedOut",
    "Connect",
    "ConnectError",
    "ConnectTimedOut",
    "DecoderState",
    "Disconnect",
    "Event",
    "EventReceived",
    "LeaveReason",
    "LocalProtocolError",
    "NamespaceConnectRequested",
    "NamespaceLeft",
    "Packet",
    "PacketDecoder",
    "PacketError",
    "PacketType",
    "ProtocolError",
    "ProtocolViolation",
    "RemoteProtocolError",
    "Session",
    "SessionConfig",
    "SessionEvent",
    "SessionState",
    "Sid",
    "encode_ack",
    "encode_connect",
    "encode_connect_error",
    "encode_disconnect",
    "encode_event",
]

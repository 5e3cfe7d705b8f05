"""Engine.IO v4, sans-IO: the packet codec (:mod:`.packets`), the session state machine
(:mod:`.session`; its ids, states, events and config in :mod:`.events`) and the answers of
the polling transport (:mod:`.http_answers`: CORS, compression, the error JSON); and
Engine.IO v3 for socket.io-client 2.x (:mod:`.v3`: its codec and ``SessionV3``, served with
``allow_eio3``). None of them imports trio, touches a socket or reads the clock.

The Trio server that drives them, :class:`~pyserver.trio.engineio.EngineIOServer` (also
``pyserver.EngineIOServer``), lives in :mod:`pyserver.trio.engineio`.
"""

from __future__ import annotations

from pyserver.engineio.packets import Packet, PacketError, PacketType
from pyserver.engineio.session import (
    CloseReason,
    EioSid,
    Session,
    SessionConfig,
    SessionState,
    Transport,
)

__all__ = [
    "CloseReason",
    "EioSid",
    "Packet",
    "PacketError",
    "PacketType",
    "Session",
    "SessionConfig",
    "SessionState",
    "Transport",
]

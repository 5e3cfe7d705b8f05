"""Engine.IO v4: the packet codec and session state machine (sans-IO) and the Trio server.

The layer above (Socket.IO) uses it like this::

    eio = EngineIOServer(
        ping_interval=25, ping_timeout=20, max_payload=1_000_000,
        cors_allowed_origins="*",              # or a list, a predicate, None (no CORS)
        on_connect=connected,                  # (session) -> None
        on_message=received,                   # (session, data: str | bytes) -> None
        on_disconnect=gone,                    # (session, reason: CloseReason) -> None
    )
    app.mount("/socket.io/", eio)              # the HTTP shell routes the path to it
    await nursery.start(eio.serve)             # the one timer task (heartbeats, upgrades)

Callbacks are synchronous and run in the transport's task (the WebSocket reader loop, the
POST handler, the timer): no task per message. They must not block; spawn tasks for slow work.
``on_disconnect`` is called exactly once per session, with one of the reference server's
reasons: "transport close", "transport error", "ping timeout", "parse error", "forced close",
"server shutting down" (:class:`CloseReason`, a ``str`` enum).

An :class:`EngineSession` (``session.sid`` is an :data:`EioSid`; ``session.request`` is the
opening request; ``session.data`` is a dict free for the next layer) has:

* ``send(data)``: queue one message, ``str`` (text) or ``bytes`` (binary). Never blocks. On
  WebSocket it goes straight to the connection's bounded outbox; on polling to the session's
  bounded queue (past ``max_queued_packets``/``max_queued_bytes`` the session closes with
  "transport error": a slow consumer never grows memory without limit).
* ``send_encoded(OutgoingMessage(data))``: the broadcast path. Build one
  :class:`OutgoingMessage` per broadcast; every WebSocket recipient gets the same frame bytes
  (``_frames.encode_message`` called once), every polling recipient the same packet.
  ``eio.broadcast(data, sessions)`` does exactly that.
* ``close(reason=CloseReason.FORCED_CLOSE)``: end the session from the server side;
  ``on_disconnect`` gets ``reason``. "forced close" (the default, the reference server's
  ``socket.close()``) flushes queued packets first (on polling they leave with the next GET,
  then the session ends); another reason, such as "parse error" for a client that broke the
  protocol of the layer above, ends it at once (what is queued and a ``1`` still go to the
  WebSocket writer or a waiting GET). A no-op once closed.
* ``outbox_depth``: how many messages are queued and not yet on their way (packets waiting
  for a GET on polling, frames waiting for the writer on WebSocket); read-only, for
  monitoring. ``writable``: open and nothing queued, so a message sent now is the next one
  out (a volatile send checks it and drops the message otherwise).
* ``closed``; ``await wait_closed()``; ``transport`` ("polling" or "websocket").

``eio.sessions`` maps each open sid to its session. The sans-IO modules ``packets`` and
``session`` never import trio; the Trio server lives in ``pyserver.transports.engineio`` and
this package re-exports it lazily, so importing the cores stays trio-free.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyserver.engineio.packets import Packet, PacketError, PacketType
from pyserver.engineio.session import (
    CloseReason,
    EioSid,
    Session,
    SessionConfig,
    SessionState,
    Transport,
)

if TYPE_CHECKING:
    from pyserver.transports.engineio import (
        EngineIOServer,
        EngineSession,
        OutgoingMessage,
        RequestRefused,
    )

__all__ = [
    "CloseReason",
    "EioSid",
    "EngineIOServer",
    "EngineSession",
    "OutgoingMessage",
    "Packet",
    "PacketError",
    "PacketType",
    "RequestRefused",
    "Session",
    "SessionConfig",
    "SessionState",
    "Transport",
]

_LAZY = frozenset({"EngineIOServer", "EngineSession", "OutgoingMessage", "RequestRefused"})


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from pyserver.transports import engineio

        return getattr(engineio, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

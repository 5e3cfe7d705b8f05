"""The Engine.IO v4 server on Trio: the ``Mount`` that owns ``/engine.io/`` (or ``/socket.io/``).

It drives one sans-IO :class:`~pyserver.engineio.session.Session` per session id and does the
I/O around it: the session table, one timer task for every session's heartbeat and upgrade
deadlines (a heap, no task per session), long-polling GETs parked until there is something to
send, WebSocket sessions fed straight by their WebSocket's reader, the polling -> WebSocket
upgrade, CORS and HTTP compression.

Resource handling: every session's outgoing queue is bounded (``max_queued_packets`` /
``max_queued_bytes`` while on polling; the WebSocket's own outbox bound once on WebSocket); a
client that does not read is closed, never buffered without limit. POST bodies and WebSocket
messages above ``max_payload`` close the session (413 on polling, close 1009 on WebSocket).

Error handling: a peer's protocol error is answered on the wire (a JSON ``{"code", "message"}``
400/403, a close packet, a WebSocket close) and the session ends with the reason named as the
reference server names it. A callback exception is logged once (``pyserver.engineio``) and
closes that session with "transport error"; it never reaches the HTTP server.

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

What a session offers the layer above is in :mod:`.session`. The modules:

* :mod:`.server`: :class:`EngineIOServer`, the options and the public API (``serve``,
  ``broadcast``, ``close_all``), composed of the two transports below.
* :mod:`.table`: :class:`~.table.SessionTable`, what both transports share: the sessions by
  sid, opening and closing them, reacting to the sans-IO core's events, the timer's
  deadlines, refusing requests (:class:`RequestRefused`).
* :mod:`.polling`: HTTP long-polling (``handle_http``: the handshake, the parked GET, the
  POST, CORS and compression).
* :mod:`.websocket`: the WebSocket transport and the polling -> WebSocket upgrade
  (``check_websocket``, ``handle_websocket``, the probe, the hand-over to the WebSocket's
  reader).
* :mod:`.session`: :class:`EngineSession` (one session as the next layer sees it; its
  ``_receive_ws`` is the WebSocket hot path), :class:`OutgoingMessage` and
  :func:`send_encoded_many` (the broadcast path: encode once, send to many).
* :mod:`.v3`: the sessions of Engine.IO v3 clients (``allow_eio3``: socket.io-client 2.x),
  :class:`~.v3.EngineSessionV3`, chosen when a session opens, and the wrapper that frames
  their binary messages the v3 way.

Imports go one way: ``session`` <- ``table`` <- ``polling``, ``websocket`` <- ``server``.
"""

from pyserver.trio.engineio.polling import UPGRADE_GRACE
from pyserver.trio.engineio.server import EngineIOServer
from pyserver.trio.engineio.session import (
    ConnectHandler,
    DisconnectHandler,
    EngineSession,
    MessageHandler,
    OutgoingMessage,
    send_encoded_many,
)
from pyserver.trio.engineio.table import RequestRefused

__all__ = [
    "UPGRADE_GRACE",
    "ConnectHandler",
    "DisconnectHandler",
    "EngineIOServer",
    "EngineSession",
    "MessageHandler",
    "OutgoingMessage",
    "RequestRefused",
    "send_encoded_many",
]

"""The Socket.IO side of one Engine.IO session: it feeds the sans-IO
:class:`~pyserver.socketio.session.Session` and turns its events into socket actions.

Everything here runs synchronously in the Engine.IO transport's task (the WebSocket reader,
the polling POST, the timer): decoding, rate limiting, queueing events to their socket and
settling acks. Only namespace connections that need middleware (or a dynamic namespace
check) run in a task, in the Server's nursery.

Bounds: a connection is in (or joining) at most ``max_namespaces_per_client`` namespaces; a
CONNECT past that is answered with CONNECT_ERROR ``"too many namespaces"`` (logged once per
connection). A refused event (over the rate limit, or its socket's queue full) is logged at
most once per window per connection (the rate limit's window, else ``REFUSAL_WINDOW``), the
line saying how many were refused since the previous one. A refused event without an ack
is answered with an ``"error"`` event at most once per window. A refused event with an ack
id is always acked, with ``{"error": why}``: the client is waiting on that answer, and one
small ack per event read is bounded by what the client sends (a flooding client is closed
after ``flood_windows``, and the outbox bounds what it does not read).
"""

from __future__ import annotations

import contextvars
import logging
from typing import TYPE_CHECKING, Any

import trio

from pyserver.engineio.session import CloseReason, Transport
from pyserver.errors import SocketDisconnected
from pyserver.logtext import shown
from pyserver.socketio.legacy import legacy_session
from pyserver.socketio.parser_session import ParserSession
from pyserver.socketio.ratelimit import RateLimiter, Refusals, Verdict
from pyserver.socketio.session import (
    AckReceived,
    AckTimedOut,
    ConnectTimedOut,
    EventReceived,
    NamespaceConnectRequested,
    NamespaceLeft,
    NamespaceNotJoined,
    ProtocolViolation,
    Session,
    SessionEvent,
)
from pyserver.trio.socketio.admission import TOO_MANY_NAMESPACES, Admission, peer
from pyserver.trio.socketio.socket import AckCallback, Socket
from pyserver.trio.websocket.inline import Work

if TYPE_CHECKING:
    from pyserver.trio.engineio import EngineSession
    from pyserver.trio.socketio.host import Host
    from pyserver.trio.socketio.namespace import Namespace

__all__ = ["TOO_MANY_NAMESPACES", "Client"]

logger = logging.getLogger("pyserver.socketio")

RATE_LIMITED = "rate limited"
BUSY = "too many pending events"
FORCED_SERVER_CLOSE = "forced server close"
REFUSAL_WINDOW = 1.0
"""Seconds: the log window of events refused for a full queue on a socket without a rate
limit."""


class Client(Admission):
    """One Engine.IO connection and its sockets (at most one per namespace)."""

    __slots__ = ("_refusals", "acks", "core", "server", "session", "sockets")

    def __init__(self, server: Host[Namespace, Client], session: EngineSession, now: float) -> None:
        super().__init__()
        self.server = server
        self.session = session
        parser = server.parser
        if session.core.protocol == 3:  # socket.io-client 2.x: Socket.IO v4 (allow_eio3)
            self.core = legacy_session(server.session_config, now, parser)
        else:
            self.core = (
                Session(server.session_config, now)
                if parser is None
                else ParserSession(server.session_config, now, parser)
            )
        self.sockets: dict[str, Socket] = {}
        self.acks: dict[int, AckCallback] = {}
        self._refusals: Refusals | None = None  # made on the first refused event

    # -- outgoing --------------------------------------------------------------------------

    def send_parts(self, parts: list[str | bytes]) -> None:
        send = self.session.send
        for part in parts:
            send(part)

    def send_ack(self, namespace: str, ack_id: int, args: list[Any]) -> None:
        """Answer the client's event ``ack_id`` (the caller checked the socket is connected)."""
        parts = self.core.send_ack(namespace, ack_id, args)
        if len(parts) == 1:
            self.session.send(parts[0])
        else:
            self.send_parts(parts)

    def send_with_ack(
        self,
        namespace: str,
        event: str,
        args: list[Any],
        callback: AckCallback,
        timeout: float | None,
    ) -> None:
        ack_id, parts = self.core.send_event_with_ack(
            namespace, event, args, now=trio.current_time(), timeout=timeout
        )
        self.acks[ack_id] = callback
        self.send_parts(parts)
        if timeout is not None:
            self.server.schedule(self)

    def outbox_depth(self) -> int:
        """Messages queued for this client and not yet taken by its writer (or a poll)."""
        return self.session.outbox_depth

    def ready_for_volatile(self) -> bool:
        """Open with nothing queued: a volatile packet is sent now, else dropped."""
        return self.session.writable

    @property
    def transport(self) -> Transport:
        return self.session.transport

    @property
    def context(self) -> contextvars.Context:
        """The connection's context (its Engine.IO session's): every handler runs in it."""
        return self.session.context

    # -- incoming --------------------------------------------------------------------------

    def receive(self, data: str | bytes) -> Work | None:
        """One Engine.IO message from the client. Returns the work to run for it (a
        socket's handler queue that no task runs yet), for Engine.IO to run: right after
        the read over WebSocket, in a task over long-polling (``EngineIOServer``)."""
        event = self.core.receive_message(data)
        if event is None:
            return None
        if not isinstance(event, EventReceived):
            return self._handle(event)
        socket = self.sockets.get(event.namespace)
        if socket is None:
            return None
        counters = socket.nsp.counters
        counters.events_in += 1
        if counters.watch is not None:
            counters.watch("in", event.namespace, socket.id, event.event, 1)
        limiter = socket._limiter
        if limiter is not None and not self._within_rate(limiter, socket, event):
            return None
        work = socket._event(event.event, event.args, event.ack_id)
        if work is False:
            self._refuse_event(socket, event, BUSY, None)
            return None
        return work  # type: ignore[return-value]  # (True is never returned)

    def _within_rate(self, limiter: RateLimiter, socket: Socket, event: EventReceived) -> bool:
        """The socket's rate limit allows ``event``; else it is refused (and a flooding
        client's connection closed)."""
        verdict = limiter.check(trio.current_time())
        if verdict is Verdict.ALLOWED:
            return True
        socket.nsp.counters.rate_limited += 1
        refusals = self._refuse_event(socket, event, RATE_LIMITED, limiter)
        if verdict is Verdict.FLOODING:
            logger.warning(
                "closing connection %s (peer %s): rate limit flooding in %s "
                "(%d more events refused since the previous line)",
                self.session.sid,
                peer(self.session),
                shown(socket.nsp.name),
                refusals.unlogged,
                extra=self._log_fields(socket.nsp.name),
            )
            self.close(FORCED_SERVER_CLOSE)
        return False

    def _refuse_event(
        self, socket: Socket, event: EventReceived, why: str, limiter: RateLimiter | None
    ) -> Refusals:
        """An event that will not run: ack it with an error, or tell the client with an
        ``"error"`` event ``{"message": why, "event": name}``, within the bounds of the
        module docstring (and log it, once per window)."""
        refusals = self._refusals
        if refusals is None:
            refusals = self._refusals = Refusals()
        earlier = refusals.refused(
            trio.current_time(), REFUSAL_WINDOW if limiter is None else limiter.seconds
        )
        if earlier is not None:
            logger.info(
                "refused event %s from socket %s in %s (connection %s, peer %s): %s "
                "(%d refused and not logged since the previous such line)",
                shown(event.event),
                socket.id,
                shown(socket.nsp.name),
                self.session.sid,
                peer(self.session),
                why,
                earlier,
                extra={
                    "sid": socket.id,
                    "namespace": socket.nsp.name,
                    "event": event.event,
                    "eio_sid": self.session.sid,
                    "remote": peer(self.session),
                },
            )
        if event.ack_id is not None:
            self.send_ack(event.namespace, event.ack_id, [{"error": why}])
        elif refusals.may_send_error():
            socket.emit("error", {"message": why, "event": event.event})
        return refusals

    def _handle(self, event: SessionEvent) -> Work | None:
        """A packet other than an event (or a timer's event): acks, namespace joins and
        leaves, protocol errors. Returns the work a join or a leave queued (``receive``)."""
        if isinstance(event, AckReceived):
            callback = self.acks.pop(event.ack_id, None)
            if callback is not None:
                self._count_ack(event.namespace, timed_out=False)
                callback(_reply(event.args), None)
        elif isinstance(event, NamespaceConnectRequested):
            return self._connect_requested(event)
        elif isinstance(event, NamespaceLeft):
            self._fail_acks(event.abandoned_acks, event.reason)
            socket = self.sockets.pop(event.namespace, None)
            if socket is not None:
                return socket._left(event.reason)
        elif isinstance(event, AckTimedOut):
            callback = self.acks.pop(event.ack_id, None)
            if callback is not None:
                self._count_ack(event.namespace, timed_out=True)
                callback(None, TimeoutError(f"no ack for ack id {event.ack_id} in time"))
        elif isinstance(event, ProtocolViolation):
            logger.warning(
                "closing connection %s (peer %s): malformed Socket.IO packet: %s",
                self.session.sid,
                peer(self.session),
                shown(event.detail),
                extra=self._log_fields(),
            )
            self.session.close(CloseReason.PARSE_ERROR)
        elif isinstance(event, NamespaceNotJoined):
            # the reference server: "invalid state", then client.close() (Engine.IO "forced
            # close", every socket "forced server close"), even for a packet that was in
            # flight when the server disconnected that namespace
            logger.warning(
                "closing connection %s (peer %s): %s for namespace %s, which it has not joined",
                self.session.sid,
                peer(self.session),
                event.packet,
                shown(event.namespace),
                extra=self._log_fields(event.namespace),
            )
            self.close(FORCED_SERVER_CLOSE)
        elif isinstance(event, ConnectTimedOut):
            logger.info(
                "closing connection %s (peer %s): no namespace joined within connect_timeout",
                self.session.sid,
                peer(self.session),
                extra=self._log_fields(),
            )
            self.session.close()
        return None

    def _log_fields(self, namespace: str | None = None) -> dict[str, str]:
        """The ``extra=`` of this connection's log lines (JSON logs: pyserver.logjson)."""
        fields = {"eio_sid": self.session.sid, "remote": peer(self.session)}
        if namespace is not None:
            fields["namespace"] = namespace
        return fields

    def _count_ack(self, namespace: str, *, timed_out: bool) -> None:
        socket = self.sockets.get(namespace)
        if socket is not None:
            counters = socket.nsp.counters
            if timed_out:
                counters.acks_timed_out += 1
            else:
                counters.acks_answered += 1

    def _fail_acks(self, ack_ids: tuple[int, ...], reason: str) -> None:
        for ack_id in ack_ids:
            callback = self.acks.pop(ack_id, None)
            if callback is not None:
                callback(None, SocketDisconnected(reason))

    def on_timer(self, now: float) -> None:
        for event in self.core.handle_timeout(now):
            self._handle(event)  # (ack and connect timeouts: they queue no work)

    # -- disconnecting ---------------------------------------------------------------------

    def disconnect_socket(self, socket: Socket) -> None:
        """Server-side disconnect of one socket ("server namespace disconnect")."""
        name = socket.nsp.name
        if self.sockets.get(name) is not socket:
            return
        packet, left = self.core.disconnect_namespace(name)
        self.session.send(packet)
        del self.sockets[name]
        self._fail_acks(left.abandoned_acks, left.reason)
        socket._start(socket._left(left.reason))

    def disconnect_all(self) -> None:
        """Disconnect every socket, then close the connection (``socket.disconnect(True)``)."""
        for socket in list(self.sockets.values()):
            self.disconnect_socket(socket)
        self.session.close()

    def close(self, reason: str) -> None:
        """Close the connection; every socket leaves with ``reason``."""
        self.connection_lost(reason)
        self.session.close()

    def connection_lost(self, reason: str) -> None:
        """The Engine.IO session ended (or is being closed): every socket leaves."""
        self.core.connection_lost(reason)
        acks, self.acks = self.acks, {}
        for callback in acks.values():
            callback(None, SocketDisconnected(reason))
        sockets, self.sockets = self.sockets, {}
        for socket in sockets.values():
            socket._start(socket._left(reason))


def _reply(args: list[Any]) -> Any:
    if not args:
        return None
    if len(args) == 1:
        return args[0]
    return tuple(args)

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
import secrets
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

from pyserver.engineio.session import CloseReason, Transport
from pyserver.errors import ConnectionRefused, SocketDisconnected
from pyserver.logtext import shown
from pyserver.socketio.packets import Sid
from pyserver.socketio.parser_session import ParserSession
from pyserver.socketio.ratelimit import RateLimiter, Refusals, Verdict
from pyserver.socketio.recovery import RecoveredSession
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
from pyserver.trio.socketio.socket import AckCallback, Socket, call
from pyserver.trio.websocket.inline import Work, run_in

if TYPE_CHECKING:
    from pyserver.trio.engineio import EngineSession
    from pyserver.trio.socketio.host import Host
    from pyserver.trio.socketio.namespace import Namespace

__all__ = ["Client"]

logger = logging.getLogger("pyserver.socketio")

RATE_LIMITED = "rate limited"
BUSY = "too many pending events"
FORCED_SERVER_CLOSE = "forced server close"
TOO_MANY_NAMESPACES = "too many namespaces"
REFUSAL_WINDOW = 1.0
"""Seconds: the log window of events refused for a full queue on a socket without a rate
limit."""


class Client:
    """One Engine.IO connection and its sockets (at most one per namespace)."""

    __slots__ = ("_capped", "_joining", "_refusals", "acks", "core", "server", "session", "sockets")

    def __init__(self, server: Host[Namespace, Client], session: EngineSession, now: float) -> None:
        self.server = server
        self.session = session
        parser = server.parser
        self.core = (
            Session(server.session_config, now)
            if parser is None
            else ParserSession(server.session_config, now, parser)
        )
        self.sockets: dict[str, Socket] = {}
        self.acks: dict[int, AckCallback] = {}
        self._joining = 0  # namespace connections being admitted (in a task)
        self._capped = False  # an over-cap CONNECT was logged
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
        refusals = self._refuse_event(socket, event, RATE_LIMITED, limiter)
        if verdict is Verdict.FLOODING:
            logger.warning(
                "closing connection %s (peer %s): rate limit flooding in %s "
                "(%d more events refused since the previous line)",
                self.session.sid,
                _peer(self.session),
                shown(socket.nsp.name),
                refusals.unlogged,
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
                _peer(self.session),
                why,
                earlier,
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
                callback(None, TimeoutError(f"no ack for ack id {event.ack_id} in time"))
        elif isinstance(event, ProtocolViolation):
            logger.warning(
                "closing connection %s (peer %s): malformed Socket.IO packet: %s",
                self.session.sid,
                _peer(self.session),
                shown(event.detail),
            )
            self.session.close(CloseReason.PARSE_ERROR)
        elif isinstance(event, NamespaceNotJoined):
            # the reference server: "invalid state", then client.close() (Engine.IO "forced
            # close", every socket "forced server close"), even for a packet that was in
            # flight when the server disconnected that namespace
            logger.warning(
                "closing connection %s (peer %s): %s for namespace %s, which it has not joined",
                self.session.sid,
                _peer(self.session),
                event.packet,
                shown(event.namespace),
            )
            self.close(FORCED_SERVER_CLOSE)
        elif isinstance(event, ConnectTimedOut):
            logger.info(
                "closing connection %s (peer %s): no namespace joined within connect_timeout",
                self.session.sid,
                _peer(self.session),
            )
            self.session.close()
        return None

    def _fail_acks(self, ack_ids: tuple[int, ...], reason: str) -> None:
        for ack_id in ack_ids:
            callback = self.acks.pop(ack_id, None)
            if callback is not None:
                callback(None, SocketDisconnected(reason))

    def on_timer(self, now: float) -> None:
        for event in self.core.handle_timeout(now):
            self._handle(event)  # (ack and connect timeouts: they queue no work)

    # -- namespaces ------------------------------------------------------------------------

    def _connect_requested(self, event: NamespaceConnectRequested) -> Work | None:
        name = event.namespace
        cap = self.server.max_namespaces_per_client
        if cap is not None and len(self.sockets) + self._joining >= cap:
            self._over_cap(name, cap)
            return None
        nsp = self.server.namespaces.get(name)
        if nsp is not None:
            if event.auth is not None and _restores_remotely(nsp, event.auth):  # a task
                nsp._admitting += 1
                if not self._spawn_join(self._admit_remote, nsp, event.auth):
                    nsp._admission_done()
                return None
            socket, restored = self._new_socket(nsp, event.auth)
            if not nsp.middlewares or _skips_middlewares(nsp, restored):
                return self._accept(socket, restored)  # the fast path: no task
            nsp._admitting += 1  # a dynamic child stays while it is admitted
            if not self._spawn_join(self._admit, nsp, socket, restored):
                nsp._admission_done()
            return None
        if not self.server.dynamic_namespaces:
            self._refuse(name, "Invalid namespace")
            return None
        self._spawn_join(self._connect, event)
        return None

    def _spawn_join(self, fn: Callable[..., Awaitable[None]], *args: Any) -> bool:
        """Run ``fn(*args)``, the admission of a namespace connection, in a task, counted
        against ``max_namespaces_per_client`` while it runs."""
        self._joining += 1
        work = partial(self._joining_task, fn, *args)  # (middleware: the session's context)
        if self.server.spawn(run_in, "connect to a namespace", self.session.context, work):
            return True
        self._joining -= 1
        return False

    async def _joining_task(self, fn: Callable[..., Awaitable[None]], *args: Any) -> None:
        try:
            await fn(*args)
        finally:
            self._joining -= 1

    async def _connect(self, event: NamespaceConnectRequested) -> None:
        """A namespace that does not exist yet: ask the dynamic parents, then admit."""
        name = event.namespace
        try:
            nsp = await self.server.find_namespace(name, event.auth)
        except Exception:
            logger.exception("dynamic namespace check for %s failed", shown(name))
            nsp = None
        if nsp is None:
            self._refuse(name, "Invalid namespace")
            return
        # no checkpoint since find_namespace returned: counted before anything can empty it
        nsp._admitting += 1
        if event.auth is not None and _restores_remotely(nsp, event.auth):
            await self._admit_remote(nsp, event.auth)
            return
        try:
            socket, restored = self._new_socket(nsp, event.auth)
        except BaseException:
            nsp._admission_done()
            raise
        await self._admit(nsp, socket, restored)

    async def _admit_remote(self, nsp: Namespace, auth: dict[str, Any]) -> None:
        """Recovery through the adapter (on any node of a cluster): the session and what it
        missed are fetched first, then the admission goes on as for a local one. The caller
        counted this admission in ``nsp._admitting``; it is uncounted here."""
        try:
            try:
                restored = await nsp.adapter.restore_session(auth["pid"], auth["offset"])
            except Exception:
                logger.exception("connection state of %s not restored", shown(nsp.name))
                restored = None
            socket, restored = self._new_socket(nsp, auth, restored)
            await self._run_middlewares(nsp, socket, restored)
        finally:
            nsp._admission_done()

    async def _admit(
        self, nsp: Namespace, socket: Socket, restored: RecoveredSession | None
    ) -> None:
        """Run the namespace's connection middleware, then accept or refuse. The caller
        counted this admission in ``nsp._admitting``; it is uncounted here."""
        try:
            await self._run_middlewares(nsp, socket, restored)
        finally:
            nsp._admission_done()

    async def _run_middlewares(
        self, nsp: Namespace, socket: Socket, restored: RecoveredSession | None
    ) -> None:
        name = nsp.name
        try:
            if not _skips_middlewares(nsp, restored):
                for middleware in nsp.middlewares:
                    await call(middleware, socket)  # (sync or async)
        except ConnectionRefused as exc:
            self._refuse(name, exc.message, exc.data)
            _put_back(nsp, restored)
            return
        except Exception:
            logger.exception("connection middleware failed (namespace %s)", shown(name))
            self._refuse(name, "Internal error")
            _put_back(nsp, restored)
            return
        if self.core.state.value == "closed" or self.session.closed:
            _put_back(nsp, restored)
            return
        socket._start(self._accept(socket, restored))

    def _over_cap(self, name: str, cap: int) -> None:
        """A CONNECT past ``max_namespaces_per_client``: refused (logged once per connection)."""
        if self.session.closed or self.core.state.value == "closed":
            return
        if not self._capped:
            self._capped = True
            logger.warning(
                "refused namespace %s (connection %s, peer %s): %s (max_namespaces_per_client "
                "is %d; further refusals of this connection not logged)",
                shown(name),
                self.session.sid,
                _peer(self.session),
                TOO_MANY_NAMESPACES,
                cap,
            )
        self.session.send(self.core.refuse_namespace(name, TOO_MANY_NAMESPACES))

    def _new_socket(
        self,
        nsp: Namespace,
        auth: dict[str, Any] | None,
        remote: RecoveredSession | None = None,
    ) -> tuple[Socket, RecoveredSession | None]:
        """A new socket, or, when the client asks for it (``pid`` and ``offset`` in its auth)
        and connection state recovery can, the socket it had (with what it missed; ``remote``:
        as the adapter restored it)."""
        store = nsp.recovery
        pid = offset = None
        if store is not None and auth is not None:
            pid = auth.get("pid")
            offset = auth.get("offset")
        if store is not None and type(pid) is str and type(offset) is str:
            restored = remote or store.restore(pid, offset, trio.current_time())
            if restored is not None:
                socket = Socket(nsp, self, restored.sid, auth)
                socket.pid = restored.pid
                socket.recovered = True
                socket.data = restored.data
                socket.join(restored.rooms - {restored.sid})
                return socket, restored
            logger.info(
                "connection state not recovered in %s (connection %s, peer %s): session "
                "unknown or expired, or packets after its offset no longer kept",
                shown(nsp.name),
                self.session.sid,
                _peer(self.session),
            )
        socket = Socket(nsp, self, Sid(secrets.token_urlsafe(15)), auth)
        if store is not None:
            socket.pid = secrets.token_urlsafe(15)
        return socket, None

    def _accept(self, socket: Socket, restored: RecoveredSession | None = None) -> Work | None:
        """Admit ``socket``: the CONNECT reply, and its connection handler queued; the work
        to run its queue, for the caller to run or start (``Socket._push``)."""
        name = socket.nsp.name
        if restored is not None:
            # before the CONNECT reply, as the Node server sends them: the client hands them
            # to its listeners before its "connect"
            for parts in socket.nsp.adapter.replay(restored):
                self.send_parts(parts)
        self.session.send(self.core.accept_namespace(name, socket.id, socket.pid))
        self.sockets[name] = socket
        logger.info(
            "socket %s %s to %s (connection %s, %s, peer %s)",
            socket.id,
            "connected" if restored is None else f"recovered ({len(restored.missed)} missed)",
            shown(name),
            self.session.sid,
            self.session.transport,
            _peer(self.session),
        )
        return socket._connected()

    def _refuse(self, name: str, message: str, data: Any = None) -> None:
        if self.session.closed or self.core.state.value == "closed":
            return
        logger.info(
            "refused namespace %s (connection %s, peer %s): %s",
            shown(name),
            self.session.sid,
            _peer(self.session),
            shown(message),
        )
        self.session.send(self.core.refuse_namespace(name, message, data))

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


def _skips_middlewares(nsp: Namespace, restored: RecoveredSession | None) -> bool:
    return (
        restored is not None and nsp.recovery is not None and nsp.recovery.config.skip_middlewares
    )


def _restores_remotely(nsp: Namespace, auth: dict[str, Any]) -> bool:
    """Whether this CONNECT asks to recover a session that the adapter restores (a
    cluster's: see ``Adapter.recovers_across_nodes``)."""
    return (
        nsp.recovery is not None
        and nsp.adapter.recovers_across_nodes
        and type(auth.get("pid")) is str
        and type(auth.get("offset")) is str
    )


def _put_back(nsp: Namespace, restored: RecoveredSession | None) -> None:
    """A recovered session whose socket was not accepted is kept again, for another try."""
    if restored is not None and nsp.recovery is not None:
        nsp.recovery.put_back(restored)


def _reply(args: list[Any]) -> Any:
    if not args:
        return None
    if len(args) == 1:
        return args[0]
    return tuple(args)


def _peer(session: EngineSession) -> str:
    host, port = session.request.remote_address
    return f"{host}:{port}"

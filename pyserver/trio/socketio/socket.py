"""The ``Socket``: one client in one namespace, as user code sees it.

See :mod:`pyserver.trio.socketio.handlers` for how a socket runs its handlers (one at a time,
in arrival order, in the task that read the message when it can) and what an event
handler's outcome sends back when the client asked for an ack.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Set
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from pyserver.errors import SocketDisconnected
from pyserver.logtext import shown
from pyserver.socketio.packets import Sid
from pyserver.socketio.ratelimit import RateLimiter
from pyserver.socketio.recovery import RECOVERABLE_REASONS
from pyserver.trio.socketio.adapter import BroadcastOptions
from pyserver.trio.socketio.broadcast import BroadcastOperator
from pyserver.trio.socketio.handlers import (
    CONNECTION,
    DISCONNECT,
    ERROR_ACK,
    EVENT,
    NO_QUEUE,
    SHUTDOWN_GRACE,
    ack_args,
    call,
    reply_value,
)
from pyserver.trio.socketio.handshake import Handshake, make_handshake
from pyserver.trio.socketio.listeners import NO_FUNCTIONS as _NO_FUNCTIONS
from pyserver.trio.socketio.listeners import Listeners
from pyserver.trio.websocket.inline import Work

if TYPE_CHECKING:
    from pyserver.trio.socketio.client import Client
    from pyserver.trio.socketio.namespace import Namespace

# Handshake and the handler helpers re-exported (their home moved; importers keep working)
__all__ = [
    "ERROR_ACK",
    "SHUTDOWN_GRACE",
    "AckCallback",
    "Handshake",
    "Socket",
    "ack_args",
    "call",
    "reply_value",
]

logger = logging.getLogger("pyserver.socketio")

F = TypeVar("F", bound=Callable[..., Any])
AckCallback = Callable[[Any, "BaseException | None"], None]
"""Called once with ``(reply, None)`` or ``(None, error)`` (TimeoutError, SocketDisconnected)."""


_NO_HANDLERS: dict[str, Callable[..., Any]] = {}  # never written to
_NO_ROOMS: frozenset[str] = frozenset()


class Socket(Listeners):
    """One client's socket in one namespace. ``emit``, ``join``, ``leave``, ``disconnect``
    never block; ``await emit_with_ack(...)`` waits for the client's answer."""

    __slots__ = (
        "__weakref__",
        "_auth",
        "_handshake",
        "_issued",
        "_limiter",
        "_pending_rooms",
        "_rooms_at_exit",
        "client",
        "connected",
        "data",
        "disconnect_reason",
        "id",
        "nsp",
        "pid",
        "recovered",
    )

    nsp: Namespace
    client: Client

    def __init__(
        self, nsp: Namespace, client: Client, sid: Sid, auth: dict[str, Any] | None
    ) -> None:
        self.nsp = nsp
        self.client = client
        self.id = sid
        self._auth = auth
        self._issued = time.time()
        self._handshake: Handshake | None = None
        self._rooms_at_exit: frozenset[str] = _NO_ROOMS
        #: Free for user state (the Node server's ``socket.data``).
        self.data: dict[str, Any] = {}
        self.connected = False
        self.disconnect_reason: str | None = None
        #: The private session id of connection state recovery (None when it is off).
        self.pid: str | None = None
        #: Whether this socket is one that left and was given back by connection state
        #: recovery (same id, rooms and ``data``; the packets it missed were sent first).
        self.recovered = False
        # shared empty containers until the socket registers its own (idle sockets are small)
        self._handlers: dict[str, Callable[..., Any]] = _NO_HANDLERS
        self._any_handlers: list[Callable[..., Any]] = _NO_FUNCTIONS
        self._any_outgoing: list[Callable[..., Any]] = _NO_FUNCTIONS
        self._middlewares: list[Callable[..., Any]] = _NO_FUNCTIONS
        self._queue: deque[tuple[int, Any]] = NO_QUEUE
        self._pending_events = 0
        self._running = False
        self._pending_rooms: set[str] | None = None  # rooms joined before connecting
        limit = nsp.rate_limit
        self._limiter = (
            RateLimiter(limit, flood_windows=nsp.server.flood_windows) if limit else None
        )

    @property
    def handshake(self) -> Handshake:
        """Headers, query, auth, address and time of the connection (built on first use)."""
        if self._handshake is None:
            self._handshake = make_handshake(self.client.session.request, self._auth, self._issued)
        return self._handshake

    @property
    def transport(self) -> str:
        """``"polling"`` or ``"websocket"``: the transport the connection uses now (it becomes
        ``"websocket"`` when a polling client upgrades; Node's ``socket.conn.transport.name``).
        An app picks per transport what to send, e.g. volatile ticks only over WebSocket."""
        return self.client.transport.value

    # -- sending ---------------------------------------------------------------------------

    def emit(self, event: str, *args: Any) -> None:
        """Send ``event(*args)`` to this client. Never blocks; dropped once disconnected.
        (With connection state recovery on, kept for the client's return, its offset added
        at its end, as the Node server does.)"""
        if self.connected:
            nsp = self.nsp
            if nsp.recovery is None:
                limit = nsp.server.session_config.max_emit_bytes
                self.client.send_parts(nsp.encode_event(nsp.name, event, args, max_bytes=limit))
                if self._any_outgoing:
                    self.notify_outgoing(event, args)
            elif nsp.adapter.recovers_across_nodes:  # the cluster gives the offset
                nsp.to(self.id).emit(event, *args)  # (the broadcast tells the listeners)
                return  # (and counts it)
            else:
                own = frozenset((self.id,))
                parts, sent = nsp.encode_kept(event, args, own, _NO_ROOMS)
                self.client.send_parts(parts)
                if self._any_outgoing:
                    self.notify_outgoing(event, sent)
            counters = nsp.counters
            counters.events_out += 1
            if counters.watch is not None:
                counters.watch("out", nsp.name, self.id, event, 1)

    def send(self, *args: Any) -> None:
        """``emit("message", *args)``."""
        self.emit("message", *args)

    # the contract's name; the deadline lives in the sans-IO core, not in a cancel scope
    async def emit_with_ack(
        self,
        event: str,
        *args: Any,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> Any:
        """Send ``event(*args)`` and wait for the client's answer: ``None`` for an empty
        ack, the value for one argument, a ``tuple`` for several. Raises ``TimeoutError``
        after ``timeout`` seconds and :class:`~pyserver.errors.SocketDisconnected` if the
        socket disconnects first."""
        done = trio.Event()
        outcome: list[Any] = []

        def settle(reply: Any, error: BaseException | None) -> None:
            outcome.append((reply, error))
            done.set()

        self.emit_with_callback(event, args, settle, timeout)
        await done.wait()
        reply, error = outcome[0]
        if error is not None:
            raise error
        return reply

    def timeout(self, seconds: float) -> _TimedSocket:
        """``await socket.timeout(5).emit_with_ack(event, *args)`` (the Node spelling)."""
        return _TimedSocket(self, seconds)

    def emit_with_callback(
        self, event: str, args: Iterable[Any], callback: AckCallback, timeout: float | None
    ) -> None:
        """Send ``event(*args)``; ``callback(reply, None)`` gets the client's answer, or
        ``callback(None, error)`` a TimeoutError after ``timeout`` seconds or
        :class:`~pyserver.errors.SocketDisconnected` (at once if not connected). Never
        blocks: what ``emit_with_ack`` and broadcasts with acks are built on."""
        if not self.connected:
            callback(None, SocketDisconnected(self.disconnect_reason or "not connected"))
            return
        sent = list(args)
        self.client.send_with_ack(self.nsp.name, event, sent, callback, timeout)
        counters = self.nsp.counters
        counters.events_out += 1
        counters.acks_requested += 1
        if counters.watch is not None:
            counters.watch("out", self.nsp.name, self.id, event, 1)
        if self._any_outgoing:
            self.notify_outgoing(event, sent)

    # -- rooms -----------------------------------------------------------------------------

    def join(self, rooms: str | Iterable[str]) -> None:
        """Enter one room or several. Never blocks. (Before the socket is connected, in a
        connection middleware, the rooms are joined when it connects.)"""
        names = (rooms,) if isinstance(rooms, str) else tuple(rooms)
        if self.connected:
            self.nsp.adapter.add_all(self.id, names)
        elif self.disconnect_reason is None:
            if self._pending_rooms is None:
                self._pending_rooms = set()
            self._pending_rooms.update(names)

    def leave(self, room: str) -> None:
        """Leave ``room`` (a no-op if not in it). Never blocks."""
        if self.connected:
            self.nsp.adapter.del_(self.id, room)
        else:
            if self._pending_rooms is not None:
                self._pending_rooms.discard(room)

    @property
    def rooms(self) -> Set[str]:
        """The rooms this socket is in, its own room (its id) included (a copy). Once the
        socket has left (in the "disconnecting"/"disconnect" handlers), the rooms it was in
        when it left."""
        if self.connected:
            return set(self.nsp.adapter.rooms_of(self.id))
        if self.disconnect_reason is not None:
            return set(self._rooms_at_exit)
        return set(self._pending_rooms or ())

    # -- broadcasting from this socket (the sender is left out) ----------------------------

    def _operator(self) -> BroadcastOperator:
        return BroadcastOperator(self.nsp, BroadcastOptions(except_rooms=frozenset((self.id,))))

    def to(self, room: str | Iterable[str]) -> BroadcastOperator:
        """Broadcast to ``room`` without this socket."""
        return self._operator().to(room)

    in_ = to

    def except_(self, room: str | Iterable[str]) -> BroadcastOperator:
        """Broadcast to everyone but ``room`` and this socket."""
        return self._operator().except_(room)

    @property
    def broadcast(self) -> BroadcastOperator:
        """Broadcast to every socket of the namespace but this one."""
        return self._operator()

    @property
    def volatile(self) -> BroadcastOperator:
        """Emit to this socket only if its outbox is empty (else drop)."""
        return BroadcastOperator(
            self.nsp, BroadcastOptions(rooms=frozenset((self.id,)), volatile=True)
        )

    def compress(self, compress: bool) -> BroadcastOperator:
        return BroadcastOperator(
            self.nsp, BroadcastOptions(rooms=frozenset((self.id,)), compress=compress)
        )

    # -- handlers --------------------------------------------------------------------------

    def on(self, event: str, handler: F | None = None) -> Any:
        """Register a handler for this socket only: ``handler(*args)`` for an event (its
        return value is the ack, as for namespace handlers), ``handler(error)`` for
        ``"error"`` (a per-packet middleware refused a packet). Checked before the
        namespace's handlers; one per event (a second replaces the first). Usable as a
        decorator."""

        def register(fn: F) -> F:
            if self._handlers is _NO_HANDLERS:
                self._handlers = {}
            self._handlers[event] = fn
            return fn

        return register if handler is None else register(handler)

    def once(self, event: str, handler: F | None = None) -> Any:
        """As :meth:`on`, for the next ``event`` only: the handler is removed before it
        runs. Usable as a decorator."""

        def register(fn: F) -> F:
            self.on(event, _Once(self, event, fn))
            return fn

        return register if handler is None else register(handler)

    def off(self, event: str, handler: Callable[..., Any] | None = None) -> None:
        """Remove this socket's handler for ``event`` (only if it is ``handler``, when
        given; a handler registered with :meth:`once` is matched too). The namespace's
        handlers are not touched."""
        current = self._handlers.get(event)
        if current is None:
            return
        if (
            handler is None
            or current is handler
            or (type(current) is _Once and current.fn is handler)
        ):
            del self._handlers[event]

    def use(self, middleware: F) -> F:
        """Per-packet middleware ``middleware(socket, packet)`` (sync or async), with
        ``packet = [event, *args]`` (it may change it). Raising drops the packet and hands
        the exception to the socket's ``"error"`` handler."""
        if self._middlewares is _NO_FUNCTIONS:
            self._middlewares = []
        self._middlewares.append(middleware)
        return middleware

    # -- disconnecting ---------------------------------------------------------------------

    def disconnect(self, close: bool = False) -> None:
        """Leave the namespace ("server namespace disconnect"); ``close`` also closes the
        underlying connection (every namespace of this client)."""
        if close:
            self.client.disconnect_all()
        elif self.connected:
            self.client.disconnect_socket(self)

    # -- called by the client --------------------------------------------------------------

    def _connected(self) -> Work | None:
        """The socket joined: queue the connection handler; the work to run the queue, for
        the caller to run or start (``_push``)."""
        self.connected = True
        counters = self.nsp.counters
        counters.connects += 1
        if self.recovered:
            counters.recovered += 1
        if self._any_outgoing:
            self.nsp.adapter.outgoing_watchers += 1
        rooms = self._pending_rooms or ()
        self._pending_rooms = None
        self.nsp._add_socket(self, rooms)
        return self._push(CONNECTION, None)

    def _left(self, reason: str) -> Work | None:
        """The socket is gone (any reason): leave the rooms, queue the disconnect handler;
        the work to run the queue, for the caller to run or start (``_push``)."""
        if not self.connected:
            return None
        self.connected = False
        self.disconnect_reason = reason
        disconnects = self.nsp.counters.disconnects
        disconnects[reason] = disconnects.get(reason, 0) + 1
        if self._any_outgoing:
            self.nsp.adapter.outgoing_watchers -= 1
        logger.info(
            "socket %s left %s: %s",
            self.id,
            shown(self.nsp.name),
            reason,
            extra={"sid": self.id, "namespace": self.nsp.name},
        )
        self._rooms_at_exit = frozenset(self.nsp.adapter.rooms_of(self.id))
        store = self.nsp.recovery
        if store is not None and self.pid is not None and reason in RECOVERABLE_REASONS:
            store.persist(self.id, self.pid, self._rooms_at_exit, self.data, trio.current_time())
            self.nsp.counters.recovery_kept += 1
        self.nsp._remove_socket(self)
        if self._pending_events:  # events not run yet can no longer be answered
            self._queue = deque(item for item in self._queue if item[0] != EVENT)
            self._pending_events = 0
        return self._push(DISCONNECT, reason)

    @property
    def pending(self) -> int:
        """Events waiting for their handler."""
        return self._pending_events

    def __repr__(self) -> str:
        state = "connected" if self.connected else f"disconnected ({self.disconnect_reason})"
        return f"<Socket {self.id} {self.nsp.name} {state}>"


class _Once:
    """A handler registered with :meth:`Socket.once`: it removes itself, then runs."""

    __slots__ = ("event", "fn", "socket")

    def __init__(self, socket: Socket, event: str, fn: Callable[..., Any]) -> None:
        self.socket = socket
        self.event = event
        self.fn = fn

    def __call__(self, *args: Any) -> Any:
        handlers, event = self.socket._handlers, self.event
        if handlers.get(event) is self:
            del handlers[event]
        return self.fn(*args)


class _TimedSocket:
    __slots__ = ("seconds", "socket")

    def __init__(self, socket: Socket, seconds: float) -> None:
        self.socket = socket
        self.seconds = seconds

    async def emit_with_ack(self, event: str, *args: Any) -> Any:
        return await self.socket.emit_with_ack(event, *args, timeout=self.seconds)

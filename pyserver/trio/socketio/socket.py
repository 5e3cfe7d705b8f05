"""The ``Socket``: one client in one namespace, as user code sees it.

Handler ordering: each socket runs its handlers one at a time, in the order their packets
arrived (the "connection" handler first, the "disconnect" handler last), in one task that
has them only while the socket has work, until the socket's queue is empty. For packets
read from a WebSocket that is the task that read them, right after the read
(:mod:`pyserver.trio.websocket.inline`: no task spawned, no task switch): on Linux the run's
reactor task (:mod:`pyserver.trio.websocket.reactor`), elsewhere the connection's reader; if a
handler blocks, the reading goes on in a new task while this one finishes the socket's queue (and
a handler still blocked when the server stops is cancelled). Otherwise (long-polling,
events queued from elsewhere) the first packet queued starts a task in the Server's nursery.
So an idle socket costs no task, a slow handler delays only the later events of the same
socket (never the connection's reading, never other sockets), and memory is bounded: at
most ``max_pending_events`` events wait per socket; past that an event is refused like a
rate-limited one. Acks the client sends are delivered at once by the reader, never queued,
so a handler may ``await socket.emit_with_ack(...)`` without deadlocking. Run work that
should overlap with the socket's next events in a nursery of your own or a room nursery.

What an event handler's outcome sends back, when the client asked for an ack:

* the return value: ``None`` acks with no argument, a ``tuple`` with its items as several
  arguments, anything else as the one argument (``bytes`` inside become a BINARY_ACK);
* an exception: logged once (``pyserver.socketio``), and acked with the one argument
  ``{"error": "internal server error"}`` so the client does not hang;
* a per-packet middleware refusal (``socket.use``): the packet is dropped, the socket's
  ``"error"`` handlers get the exception, and an ack is answered with
  ``{"error": <the exception's message>}``;
* an event with no handler (and no ``on_any``): nothing, as the Node server does.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Set
from types import CoroutineType
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from pyserver.errors import SocketDisconnected
from pyserver.logtext import shown
from pyserver.socketio.packets import Sid, encode_event
from pyserver.socketio.ratelimit import RateLimiter
from pyserver.socketio.recovery import RECOVERABLE_REASONS
from pyserver.trio.socketio.adapter import BroadcastOptions
from pyserver.trio.socketio.broadcast import BroadcastOperator
from pyserver.trio.socketio.handshake import Handshake, make_handshake
from pyserver.trio.websocket import inline

if TYPE_CHECKING:
    from pyserver.trio.socketio.client import Client
    from pyserver.trio.socketio.namespace import Namespace

__all__ = ["AckCallback", "Handshake", "Socket"]  # Handshake re-exported

logger = logging.getLogger("pyserver.socketio")

F = TypeVar("F", bound=Callable[..., Any])
AckCallback = Callable[[Any, "BaseException | None"], None]
"""Called once with ``(reply, None)`` or ``(None, error)`` (TimeoutError, SocketDisconnected)."""

SHUTDOWN_GRACE = 1.0
"""Seconds a disconnect handler may run (shielded) while the server shuts down."""

ERROR_ACK = {"error": "internal server error"}
"""What an ack answers when the event handler raised."""


def ack_args(result: Any) -> list[Any]:
    """The ack arguments for a handler's return value."""
    if result is None:
        return []
    if type(result) is tuple:
        return list(result)
    return [result]


def reply_value(args: list[Any]) -> Any:
    """A client's ack arguments as ``emit_with_ack`` returns them."""
    if not args:
        return None
    if len(args) == 1:
        return args[0]
    return tuple(args)


async def call(fn: Callable[..., Any], *args: Any) -> Any:
    """Call a sync or async function."""
    result = fn(*args)
    if result.__class__ is CoroutineType or inspect.isawaitable(result):
        return await result
    return result


_CONNECTION = 0
_EVENT = 1
_DISCONNECT = 2

_NO_HANDLERS: dict[str, Callable[..., Any]] = {}  # never written to
_NO_FUNCTIONS: list[Callable[..., Any]] = []  # never written to
_NO_QUEUE: deque[tuple[int, Any]] = deque()  # never written to
_NO_ROOMS: frozenset[str] = frozenset()


class Socket:
    """One client's socket in one namespace. ``emit``, ``join``, ``leave``, ``disconnect``
    never block; ``await emit_with_ack(...)`` waits for the client's answer."""

    __slots__ = (
        "__weakref__",
        "_any_handlers",
        "_auth",
        "_handlers",
        "_handshake",
        "_issued",
        "_limiter",
        "_middlewares",
        "_pending_events",
        "_pending_rooms",
        "_queue",
        "_rooms_at_exit",
        "_running",
        "client",
        "connected",
        "data",
        "disconnect_reason",
        "id",
        "nsp",
        "pid",
        "recovered",
    )

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
        self._middlewares: list[Callable[..., Any]] = _NO_FUNCTIONS
        self._queue: deque[tuple[int, Any]] = _NO_QUEUE
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
                self.client.send_parts(encode_event(nsp.name, event, args, max_bytes=limit))
            else:
                own = frozenset((self.id,))
                self.client.send_parts(nsp.encode_kept(event, args, own, _NO_ROOMS)[0])

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
        self.client.send_with_ack(self.nsp.name, event, list(args), callback, timeout)

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
        namespace's handlers. Usable as a decorator."""

        def register(fn: F) -> F:
            if self._handlers is _NO_HANDLERS:
                self._handlers = {}
            self._handlers[event] = fn
            return fn

        return register if handler is None else register(handler)

    def on_any(self, handler: F) -> F:
        """``handler(event, *args)`` for every event, before its own handler."""
        if self._any_handlers is _NO_FUNCTIONS:
            self._any_handlers = []
        self._any_handlers.append(handler)
        return handler

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

    def _connected(self) -> None:
        self.connected = True
        rooms = self._pending_rooms or ()
        self._pending_rooms = None
        self.nsp._add_socket(self, rooms)
        self._push(_CONNECTION, None)

    def _left(self, reason: str) -> None:
        """The socket is gone (any reason): leave the rooms, queue the disconnect handler."""
        if not self.connected:
            return
        self.connected = False
        self.disconnect_reason = reason
        logger.info("socket %s left %s: %s", self.id, shown(self.nsp.name), reason)
        self._rooms_at_exit = frozenset(self.nsp.adapter.rooms_of(self.id))
        store = self.nsp.recovery
        if store is not None and self.pid is not None and reason in RECOVERABLE_REASONS:
            store.persist(self.id, self.pid, self._rooms_at_exit, self.data, trio.current_time())
        self.nsp._remove_socket(self)
        if self._pending_events:  # events not run yet can no longer be answered
            self._queue = deque(item for item in self._queue if item[0] != _EVENT)
            self._pending_events = 0
        self._push(_DISCONNECT, reason)

    def _event(self, event: str, args: list[Any], ack_id: int | None) -> bool:
        """Queue an event for the handlers; False if the queue is full (refused)."""
        if self._pending_events >= self.nsp.server.max_pending_events:
            return False
        self._pending_events += 1
        self._push(_EVENT, (event, args, ack_id))
        return True

    def _push(self, kind: int, item: Any) -> None:
        if self._queue is _NO_QUEUE:
            self._queue = deque()
        self._queue.append((kind, item))
        if not self._running:
            if self.nsp.server.running and inline.offer(self._run):
                self._running = (
                    True  # the reader of this message runs it (pyserver.trio.websocket.inline)
                )
            else:
                self._running = self.nsp.server.spawn(self._run, f"socket {self.id}")

    async def _run(self) -> None:
        try:
            while self._queue:
                queue = self._queue
                kind, item = queue.popleft()
                if kind == _EVENT:
                    self._pending_events -= 1
                    await self._dispatch(*item)
                elif kind == _CONNECTION:
                    await self._lifecycle("connection", self)
                else:
                    await self._lifecycle("disconnecting", self, item)
                    await self._lifecycle("disconnect", self, item)
        finally:
            self._running = False
            if not self._queue:
                self._queue = _NO_QUEUE  # an idle socket keeps no deque

    async def _lifecycle(self, name: str, *args: Any) -> None:
        handler = self.nsp.handlers.get(name)
        if handler is None and name == "connection":
            handler = self.nsp.handlers.get("connect")
        if handler is None:
            return
        try:
            if self.nsp.server.stopping:
                with trio.move_on_after(SHUTDOWN_GRACE) as scope:
                    scope.shield = True
                    await call(handler, *args)
            else:
                await call(handler, *args)
        except Exception:
            logger.exception(
                "%r handler failed (socket %s in %s)", name, self.id, shown(self.nsp.name)
            )

    async def _dispatch(self, event: str, args: list[Any], ack_id: int | None) -> None:
        if self._middlewares:
            packet = [event, *args]
            for middleware in self._middlewares:
                try:
                    await call(middleware, self, packet)
                except Exception as exc:
                    await self._middleware_refused(event, exc, ack_id)
                    return
            if not packet or type(packet[0]) is not str:
                return
            event, args = packet[0], packet[1:]
        for any_handler in self._any_handlers:
            try:
                await call(any_handler, event, *args)
            except Exception:
                logger.exception(
                    "on_any handler failed (socket %s in %s)", self.id, shown(self.nsp.name)
                )
        try:
            handler = self._handlers.get(event)
            if handler is not None:
                result = handler(*args)
            else:
                handler = self.nsp.handlers.get(event)
                if handler is None:
                    return
                result = handler(self, *args)
            if result.__class__ is CoroutineType or inspect.isawaitable(result):
                result = await result
        except Exception:
            logger.exception(
                "handler for %s failed (socket %s in %s)",
                shown(event),
                self.id,
                shown(self.nsp.name),
            )
            if ack_id is not None:
                self._ack(ack_id, [dict(ERROR_ACK)])
            return
        if ack_id is not None:
            self._ack(ack_id, ack_args(result))

    async def _middleware_refused(self, event: str, exc: Exception, ack_id: int | None) -> None:
        logger.info(
            "packet %s refused by middleware (socket %s in %s): %s",
            shown(event),
            self.id,
            shown(self.nsp.name),
            shown(str(exc)),
        )
        if ack_id is not None:
            self._ack(ack_id, [{"error": str(exc) or type(exc).__name__}])
        handler = self._handlers.get("error")
        if handler is not None:
            try:
                await call(handler, exc)
            except Exception:
                logger.exception(
                    "'error' handler failed (socket %s in %s)", self.id, shown(self.nsp.name)
                )

    def _ack(self, ack_id: int, args: list[Any]) -> None:
        if self.connected:
            try:
                self.client.send_ack(self.nsp.name, ack_id, args)
            except Exception:
                logger.exception(
                    "ack for socket %s in %s cannot be sent", self.id, shown(self.nsp.name)
                )
                self.client.send_ack(self.nsp.name, ack_id, [dict(ERROR_ACK)])

    @property
    def pending(self) -> int:
        """Events waiting for their handler."""
        return self._pending_events

    def __repr__(self) -> str:
        state = "connected" if self.connected else f"disconnected ({self.disconnect_reason})"
        return f"<Socket {self.id} {self.nsp.name} {state}>"


class _TimedSocket:
    __slots__ = ("seconds", "socket")

    def __init__(self, socket: Socket, seconds: float) -> None:
        self.socket = socket
        self.seconds = seconds

    async def emit_with_ack(self, event: str, *args: Any) -> Any:
        return await self.socket.emit_with_ack(event, *args, timeout=self.seconds)

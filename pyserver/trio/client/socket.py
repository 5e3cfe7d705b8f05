"""One client socket: a namespace joined over a :class:`~pyserver.trio.client.manager.Manager`'s
connection (socket.io-client's ``Socket``).

What the application uses: ``id``, ``connected``, ``recovered``, ``namespace``, ``transport``,
``manager``; ``on(event)`` handlers (sync or async; the return value is the ack when the
server asked for one; ``"connect"`` and ``"disconnect"`` (with the reason) too); ``emit``
(sync: it encodes and queues), ``volatile.emit`` (dropped unless connected), ``await
emit_with_ack(..., timeout=...)`` (the reply as pyserver's server gives it: one value as
itself, several as a tuple); ``async for event in socket`` and ``await wait_for(name)``, each
giving :class:`ReceivedEvent` (``name``, ``args``, ``ack(*args)``); ``disconnect()``.

With another parser than the built-in one (``parser="msgpack"``, ``json=codec``: the
manager's), packets are encoded by it: msgpack's are one binary message each.

Delivery follows :class:`~pyserver.socketio.client.Inbox` (bounded; events nobody consumes
yet are kept and handed, in order, to the first handler, waiter or iteration for them).
Handlers run one at a time, in arrival order, in the socket's dispatcher task (a task of the
manager's nursery), so a handler may ``await socket.emit_with_ack(...)``: acks are resolved
by the connection's reader, never queued behind handlers. A handler that raises ends the
whole connection: the exception comes out of the ``async with`` that opened it.

While the connection is down (reconnecting), ``emit`` keeps what it is given in a bounded
buffer (``max_buffered_emits``; :class:`~pyserver.socketio.client.BufferFull` past it) sent
in order after the socket is connected again; awaited acks fail with
:class:`~pyserver.errors.SocketDisconnected`. Once the socket has ended for good (the server
disconnected it, the application did, or the connection was lost and not made again),
emits raise ``SocketDisconnected`` and the iteration ends.
"""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import trio

from pyserver.errors import ConnectionRefused, SocketDisconnected
from pyserver.socketio.client import (
    ConnectionLost,
    Delivery,
    Inbox,
    Received,
    SendBuffer,
    ack_args,
    connect_message,
    reply_value,
)
from pyserver.socketio.packets import encode_ack, encode_disconnect, encode_event
from pyserver.socketio.parsers import Parser
from pyserver.trio.client.engine import EngineConnection

__all__ = ["ClientSocket", "ReceivedEvent"]

F = TypeVar("F", bound=Callable[..., Any])

LIFECYCLE = frozenset({"connect", "disconnect"})

_reschedule = trio.lowlevel.reschedule
_current_task = trio.lowlevel.current_task
_wait_rescheduled = trio.lowlevel.wait_task_rescheduled
_SUCCEEDED = trio.lowlevel.Abort.SUCCEEDED


class Owner(Protocol):
    """What a socket uses of its :class:`~pyserver.trio.client.manager.Manager` (a protocol,
    so that the manager imports the socket and not the other way round)."""

    @property
    def engine(self) -> EngineConnection | None: ...

    def on(self, event: str, handler: Callable[..., Any] | None = None) -> Any: ...

    def connect(self, namespace: str = "/", *, auth: dict[str, Any] | None = None) -> Any: ...


class ReceivedEvent(Received):
    """An event given to an iteration or a waiter; :meth:`ack` answers it."""

    __slots__ = ("_socket",)
    _socket: ClientSocket

    def ack(self, *args: Any) -> None:
        """Answer the server's ``emit_with_ack`` (nothing happens if it asked for none)."""
        if self.ack_id is not None:
            socket = self._socket
            socket._send(socket._encode_ack(socket.namespace, self.ack_id, args))
            self.ack_id = None


class _Slot:
    __slots__ = ("done", "value")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.value: ReceivedEvent | None = None


class _Reply:
    """An awaited ack: the waiting task is rescheduled directly when it comes (no Event and
    parking lot per round trip)."""

    __slots__ = ("args", "done", "error", "task")

    def __init__(self) -> None:
        self.done = False
        self.task: trio.lowlevel.Task | None = None
        self.args: list[Any] = []
        self.error: BaseException | None = None

    def resolve(self) -> None:
        if not self.done:
            self.done = True
            task, self.task = self.task, None
            if task is not None:
                _reschedule(task)

    def _abort(self, _: Any) -> trio.lowlevel.Abort:
        self.task = None
        return _SUCCEEDED

    async def wait(self) -> None:
        """Until resolved (a checkpoint either way)."""
        if self.done:
            await trio.lowlevel.checkpoint()
            return
        self.task = _current_task()
        await _wait_rescheduled(self._abort)


class _Volatile:
    __slots__ = ("_socket",)

    def __init__(self, socket: ClientSocket) -> None:
        self._socket = socket

    def emit(self, event: str, *args: Any) -> bool:
        """Send now if connected and the outbox has room; else drop. True if queued."""
        socket = self._socket
        engine = socket.manager.engine
        if not socket.connected or engine is None:
            return False
        packet = socket._encode_event(socket.namespace, event, args)
        if len(engine.outbox) + len(packet) > engine.max_outbox:
            return False
        socket._send(packet)
        return True


class ClientSocket:
    """A namespace of a client connection (module docstring)."""

    def __init__(
        self,
        manager: Owner,
        namespace: str,
        auth: dict[str, Any] | None,
        *,
        max_queued_events: int,
        max_buffered_emits: int,
        parser: Parser | None = None,
    ) -> None:
        self.manager = manager
        self.namespace = namespace
        self.auth = auth
        self.id: str | None = None
        self.connected = False
        self.recovered = False
        self.disconnect_reason: str | None = None
        """Why the socket ended for good (None while it has not)."""
        self._pid: str | None = None
        self._offset: str | None = None
        self._inbox = Inbox(max_queued_events)
        self._handlers: dict[str, Callable[..., Any]] = {}
        self._ready: deque[tuple[str, list[Any], int | None]] = deque()
        self._dispatch_lot = trio.lowlevel.ParkingLot()
        self._iter_lot = trio.lowlevel.ParkingLot()
        self._slots: dict[str, deque[_Slot]] = {}
        self._acks: dict[int, _Reply] = {}
        self._next_ack = 0
        self._buffer = SendBuffer(max_buffered_emits)
        self._early: deque[Received] = deque(maxlen=max_queued_events)
        self._answered = trio.Event()
        self.refusal: ConnectionRefused | None = None
        self.volatile = _Volatile(self)
        self._parser = parser
        self.lost: ConnectionLost | None = None
        """Why the first CONNECT got no answer: the connection it went out on ended."""
        self.pending_on: object = None
        """The connection a CONNECT not answered yet went out on (the manager's)."""
        self._encode_event = encode_event if parser is None else parser.encode_event
        self._encode_ack = encode_ack if parser is None else parser.encode_ack
        if parser is not None:  # (the built-in parser's _send stays the plain method)
            self._send = self._send_parsed  # type: ignore[method-assign]

    def __repr__(self) -> str:
        state = "connected" if self.connected else "disconnected"
        return f"<ClientSocket {self.namespace} id={self.id} {state}>"

    @property
    def transport(self) -> str | None:
        """``"polling"`` or ``"websocket"`` (None while not connected)."""
        engine = self.manager.engine
        return engine.transport_name if engine is not None and self.connected else None

    @property
    def dropped_events(self) -> int:
        """Events dropped because the bounded queue of unconsumed events was full."""
        return self._inbox.dropped

    # -- handlers ----------------------------------------------------------------------------

    def on(self, event: str, handler: F | None = None) -> Any:
        """Register ``handler`` for ``event`` (or use as ``@socket.on(event)``). Events kept
        for ``event`` so far go to it first, in order."""

        def register(fn: F) -> F:
            self._handlers[event] = fn
            if event not in LIFECYCLE:
                kept = self._inbox.add_handler(event)
                if kept:
                    self._ready.extend((e.name, e.args, e.ack_id) for e in kept)
                    self._dispatch_lot.unpark_all()
            return fn

        return register if handler is None else register(handler)

    def off(self, event: str) -> None:
        """Remove the handler for ``event`` (its events are then kept or iterated)."""
        self._handlers.pop(event, None)
        self._inbox.remove_handler(event)

    # -- sending -----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.disconnect_reason is not None:
            raise SocketDisconnected(self.disconnect_reason)

    def _send(self, packet: list[str | bytes]) -> None:
        """Send a packet of the built-in parser (``[text, *attachments]``), or buffer it."""
        engine = self.manager.engine
        if self.connected and engine is not None:
            if len(packet) == 1:
                engine.send("4" + packet[0])  # type: ignore[operator]
            else:
                engine.send_many(["4" + packet[0], *packet[1:]])  # type: ignore[operator]
        else:
            self._buffer.add(packet)

    def _send_parsed(self, packet: list[str | bytes]) -> None:
        """:meth:`_send` with another parser (the socket's ``_send`` then): a text packet is
        an Engine.IO MESSAGE (``"4"``), a binary one (msgpack's) is sent as it is."""
        engine = self.manager.engine
        if self.connected and engine is not None:
            first = packet[0]
            if type(first) is str:
                first = "4" + first
            if len(packet) == 1:
                engine.send(first)
            else:
                engine.send_many([first, *packet[1:]])
        else:
            self._buffer.add(packet)

    def emit(self, event: str, *args: Any) -> None:
        """Send ``event(*args)``; never blocks. Buffered while reconnecting."""
        self._check_open()
        self._send(self._encode_event(self.namespace, event, args))

    async def emit_with_ack(self, event: str, *args: Any, timeout: float | None = None) -> Any:  # noqa: ASYNC109
        """Send ``event(*args)`` and return the server's ack: ``None`` for none, one value as
        itself, several as a tuple. ``TimeoutError`` after ``timeout`` seconds,
        :class:`SocketDisconnected` if the socket disconnects first."""
        self._check_open()
        ack_id = self._next_ack
        self._next_ack += 1
        reply = self._acks[ack_id] = _Reply()
        try:
            self._send(self._encode_event(self.namespace, event, args, ack_id))
            if timeout is None:
                await reply.wait()
            else:
                with trio.move_on_after(timeout):
                    await reply.wait()
                if not reply.done:
                    raise TimeoutError(f"no ack for {event!r} within {timeout} s")
        finally:
            self._acks.pop(ack_id, None)
        if reply.error is not None:
            raise reply.error
        return reply_value(reply.args)

    def disconnect(self) -> None:
        """Leave the namespace (a DISCONNECT to the server); the socket ends for good."""
        if self.disconnect_reason is not None:
            return
        engine = self.manager.engine
        if self.connected and engine is not None:
            if self._parser is None:
                engine.send("4" + encode_disconnect(self.namespace))
            else:
                message = self._parser.encode_disconnect(self.namespace)
                engine.send("4" + message if type(message) is str else message)
        self._end("io client disconnect")

    # -- receiving ---------------------------------------------------------------------------

    async def wait_for(self, event: str, timeout: float | None = None) -> ReceivedEvent:  # noqa: ASYNC109
        """The next ``event`` (or the oldest kept one). ``TimeoutError`` after ``timeout``
        seconds; :class:`SocketDisconnected` if the socket ends first."""
        kept = self._inbox.add_waiter(event)
        if kept is not None:
            return self._received(kept)
        slot = _Slot()
        self._slots.setdefault(event, deque()).append(slot)
        try:
            if timeout is None:
                await slot.done.wait()
            else:
                with trio.move_on_after(timeout):
                    await slot.done.wait()
        finally:
            if slot.value is None:
                slots = self._slots.get(event)
                if slots is not None and slot in slots:
                    slots.remove(slot)
                    self._inbox.remove_waiter(event)
        if slot.value is None:
            if self.disconnect_reason is not None:
                raise SocketDisconnected(self.disconnect_reason)
            raise TimeoutError(f"no {event!r} event within {timeout} s")
        return slot.value

    def __aiter__(self) -> ClientSocket:
        self._inbox.start_iteration()
        return self

    async def __anext__(self) -> ReceivedEvent:
        inbox = self._inbox
        while True:
            event = inbox.pop_for_iteration()
            if event is not None:
                return self._received(event)
            if self.disconnect_reason is not None:
                raise StopAsyncIteration
            await self._iter_lot.park()

    def _received(self, event: Received) -> ReceivedEvent:
        if isinstance(event, ReceivedEvent):
            return event
        made = ReceivedEvent(event.name, event.args, event.ack_id)
        made._socket = self
        return made

    # -- called by the manager ---------------------------------------------------------------

    def connect_text(self) -> str | bytes:
        """The CONNECT message to send (with recovery's pid and offset once it had a
        session): Engine.IO text, or one binary message with msgpack."""
        message = connect_message(self._parser, self.namespace, self.auth, self._pid, self._offset)
        return "4" + message if type(message) is str else message

    def on_event(self, name: str, args: list[Any], ack_id: int | None) -> None:
        if self._pid is not None and ack_id is None and args and type(args[-1]) is str:
            self._offset = args[-1]  # connection state recovery: the server's offset
        if not self.connected:
            self._early.append(ReceivedEvent(name, args, ack_id))  # before the CONNECT answer
            return
        event = ReceivedEvent(name, args, ack_id)
        event._socket = self
        route = self._inbox.arrive(event)
        if route is Delivery.HANDLER:
            self._ready.append((name, args, ack_id))
            self._dispatch_lot.unpark_all()
        elif route is Delivery.ITERATION:
            self._iter_lot.unpark_all()
        elif route is Delivery.WAITER:
            slot = self._slots[name].popleft()
            if not self._slots[name]:
                del self._slots[name]
            slot.value = event
            slot.done.set()

    def on_ack(self, ack_id: int, args: list[Any]) -> None:
        reply = self._acks.get(ack_id)
        if reply is not None:
            reply.args = args
            reply.resolve()

    def on_connected(self, sid: str, pid: str | None) -> None:
        self.id = sid
        self.recovered = pid is not None and pid == self._pid
        self._pid = pid
        self.connected = True
        self.pending_on = None
        early, self._early = self._early, deque(maxlen=self._early.maxlen)
        for event in early:
            event._socket = self  # type: ignore[attr-defined]
            self.on_event(event.name, event.args, event.ack_id)
        for packet in self._buffer.drain():
            self._send(packet)
        if "connect" in self._handlers:
            self._ready.append(("connect", [], None))
            self._dispatch_lot.unpark_all()
        self._answered.set()

    def on_connect_lost(self, error: ConnectionLost) -> None:
        """The connection ended before the server answered this socket's first CONNECT: the
        waiting ``connect`` raises ``error`` (the socket ends)."""
        self.lost = error
        self._end("connect error")
        self._answered.set()

    def on_refused(self, message: str, data: Any) -> ConnectionRefused | None:
        """The server refused the CONNECT. Returns the refusal when it must end the whole
        client (it came on a reconnection, where no ``connect`` call is there to raise it)."""
        again = self._answered.is_set()
        self.refusal = ConnectionRefused(message, data=data)
        self._end("connect error")
        self._answered.set()
        return self.refusal if again else None

    def on_connection_lost(self, reason: str) -> None:
        """The connection dropped; the manager reconnects (or ends the socket)."""
        was = self.connected
        self.connected = False
        self._fail_acks(reason)
        if was and "disconnect" in self._handlers:
            self._ready.append(("disconnect", [reason], None))
            self._dispatch_lot.unpark_all()

    def _fail_acks(self, reason: str) -> None:
        for reply in self._acks.values():
            reply.error = SocketDisconnected(reason)
            reply.resolve()
        self._acks.clear()

    def _end(self, reason: str) -> None:
        if self.disconnect_reason is not None:
            return
        was = self.connected
        self.connected = False
        self.disconnect_reason = reason
        self._fail_acks(reason)
        for slots in self._slots.values():
            for slot in slots:
                slot.done.set()
        self._slots.clear()
        self._iter_lot.unpark_all()
        if was and "disconnect" in self._handlers:
            self._ready.append(("disconnect", [reason], None))
        self._dispatch_lot.unpark_all()

    def on_server_disconnect(self) -> None:
        self._end("io server disconnect")

    async def dispatch(self) -> None:
        """The dispatcher task: run handlers one at a time, in order, and send their acks."""
        ready = self._ready
        while True:
            if not ready:
                if self.disconnect_reason is not None:
                    return
                await self._dispatch_lot.park()
                continue
            name, args, ack_id = ready.popleft()
            handler = self._handlers.get(name)
            if handler is None:  # removed since: keep the event for whoever comes next
                if name not in LIFECYCLE:
                    self.on_event(name, args, ack_id)
                continue
            result = handler(*args)
            if inspect.isawaitable(result):
                result = await result
            if ack_id is not None and self.connected:
                self._send(self._encode_ack(self.namespace, ack_id, ack_args(result)))

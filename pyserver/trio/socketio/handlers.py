"""How a socket runs its handlers: the :class:`HandlerQueue` that
:class:`~pyserver.trio.socketio.socket.Socket` is built on, and what a handler's outcome sends.

Handler ordering: each socket runs its handlers one at a time, in the order their packets
arrived (the "connection" handler first, the "disconnect" handler last), in one task that
has them only while the socket has work, until the socket's queue is empty. For packets
read from a WebSocket that is the task that read them, right after the read (the work to run
the queue is returned, up through the Socket.IO client and Engine.IO, to the WebSocket's
reader: :mod:`pyserver.trio.websocket.inline`; no task spawned, no task switch): on Linux the
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
* an event with no handler: the namespace's catch-all ``"*"`` if it has one
  (``handler(socket, event, *args)``, python-socketio's ``@sio.on("*")``; its return value
  is the ack), else nothing, as the Node server does (``on_any`` listeners see every event
  but do not answer).

The queue is the base class of ``Socket`` (its slots hold the queue's state), so
``_event`` and ``_dispatch``, called once per event, cost what a method of the socket costs.
It reaches the socket's namespace and client only through :class:`HandlerNamespace` and
:class:`AckSender` (what it needs of them), so this module imports neither.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
import time
from collections import deque
from collections.abc import Callable
from types import CoroutineType
from typing import Any, Protocol

import trio

from pyserver.logtext import shown
from pyserver.metrics import HANDLER_SAMPLE, NamespaceCounters
from pyserver.socketio.packets import Sid
from pyserver.trio.socketio.host import Host
from pyserver.trio.websocket.inline import Work, run_in

__all__ = [
    "CATCH_ALL",
    "ERROR_ACK",
    "SHUTDOWN_GRACE",
    "AckSender",
    "HandlerNamespace",
    "HandlerQueue",
    "ack_args",
    "call",
    "reply_value",
]

logger = logging.getLogger("pyserver.socketio")

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


CATCH_ALL = "*"
"""The namespace handler name of the catch-all: events that have no handler of their own."""

CONNECTION = 0
"""Queued: the "connection" handler."""
EVENT = 1
"""Queued: an event, ``(event, args, ack_id)``."""
DISCONNECT = 2
"""Queued: the "disconnecting" then "disconnect" handlers, with the reason."""

NO_QUEUE: deque[tuple[int, Any]] = deque()  # never written to: an idle socket's queue


class HandlerNamespace(Protocol):
    """What the handler queue needs of the socket's namespace."""

    @property
    def name(self) -> str: ...
    @property
    def handlers(self) -> dict[str, Callable[..., Any]]: ...
    @property
    def server(self) -> Host[Any, Any]: ...
    @property
    def counters(self) -> NamespaceCounters: ...


class AckSender(Protocol):
    """What the handler queue needs of the socket's client: to answer an ack, and the
    connection's context (where every handler of the connection runs)."""

    @property
    def context(self) -> contextvars.Context: ...

    def send_ack(self, namespace: str, ack_id: int, args: list[Any]) -> None: ...


class HandlerQueue:
    """A socket's queue of handler runs, one at a time in arrival order (module docstring).
    ``_event`` queues an event (False: the queue is full), ``_push`` any run; ``_run``
    empties the queue in the task that reads the message or in a spawned one."""

    __slots__ = (
        "_any_handlers",
        "_handlers",
        "_middlewares",
        "_pending_events",
        "_queue",
        "_running",
    )

    id: Sid
    nsp: HandlerNamespace
    client: AckSender
    connected: bool
    # the state below is set by ``Socket.__init__``
    _handlers: dict[str, Callable[..., Any]]
    _any_handlers: list[Callable[..., Any]]
    _middlewares: list[Callable[..., Any]]
    _queue: deque[tuple[int, Any]]
    _pending_events: int
    _running: bool

    def _event(self, event: str, args: list[Any], ack_id: int | None) -> Work | bool | None:
        """Queue an event for the handlers: the work to run the queue (``_push``), or
        None; False if the queue is full (refused)."""
        if self._pending_events >= self.nsp.server.max_pending_events:
            return False
        self._pending_events += 1
        return self._push(EVENT, (event, args, ack_id))

    def _push(self, kind: int, item: Any) -> Work | None:
        """Queue an item. When no task runs the queue: the work that runs it, which the
        caller must run (the reader of the message, right after its batch) or start
        (``_start``); None when a task runs it already (or none can: the server is not
        running, which was said)."""
        if self._queue is NO_QUEUE:
            self._queue = deque()
        self._queue.append((kind, item))
        if self._running:
            return None
        if not self.nsp.server.running:
            self._running = self.nsp.server.spawn(self._run, f"socket {self.id}")  # (warns)
            return None
        self._running = True
        return self._run

    def _start(self, work: Work | None) -> None:
        """Run ``work`` (from ``_push``) in a task of the server's (not on a reader's path)."""
        if work is not None:  # (in the connection's context, as the reader runs it)
            self._running = self.nsp.server.spawn(
                run_in, f"socket {self.id}", self.client.context, work
            )

    async def _run(self) -> None:
        try:
            while self._queue:
                queue = self._queue
                kind, item = queue.popleft()
                if kind == EVENT:
                    self._pending_events -= 1
                    counters = self.nsp.counters
                    due = counters.timed  # (metrics on: one event in HANDLER_SAMPLE timed)
                    if due == 1:
                        counters.timed = HANDLER_SAMPLE
                        started = time.perf_counter()
                        await self._dispatch(*item)
                        counters.handler_seconds.observe(time.perf_counter() - started)
                    else:
                        if due:
                            counters.timed = due - 1
                        await self._dispatch(*item)
                elif kind == CONNECTION:
                    await self._lifecycle("connection", self)
                else:
                    await self._lifecycle("disconnecting", self, item)
                    await self._lifecycle("disconnect", self, item)
        except trio.Cancelled:
            # the shutdown cancelled a handler: a disconnect queued behind it still runs
            # (shielded and bounded in _lifecycle while stopping); the events are dropped
            for kind, item in list(self._queue):
                if kind == DISCONNECT and self.nsp.server.stopping:
                    self._queue.clear()
                    await self._lifecycle("disconnecting", self, item)
                    await self._lifecycle("disconnect", self, item)
                    break
            raise
        finally:
            self._running = False
            if not self._queue:
                self._queue = NO_QUEUE  # an idle socket keeps no deque

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
                handlers = self.nsp.handlers
                handler = handlers.get(event)
                if handler is not None:
                    result = handler(self, *args)
                else:  # the namespace's catch-all, for events with no handler
                    handler = handlers.get(CATCH_ALL)
                    if handler is None:
                        return
                    result = handler(self, event, *args)
            if result.__class__ is CoroutineType or inspect.isawaitable(result):
                result = await result
        except Exception:
            logger.exception(
                "handler for %s failed (socket %s in %s)",
                shown(event),
                self.id,
                shown(self.nsp.name),
                extra={"sid": self.id, "namespace": self.nsp.name, "event": event},
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
            self.nsp.counters.acks_sent += 1
            try:
                self.client.send_ack(self.nsp.name, ack_id, args)
            except Exception:
                logger.exception(
                    "ack for socket %s in %s cannot be sent", self.id, shown(self.nsp.name)
                )
                self.client.send_ack(self.nsp.name, ack_id, [dict(ERROR_ACK)])

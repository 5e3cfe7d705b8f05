"""The client's connection to one server, shared by its namespaces (socket.io-client's
``Manager``), and :func:`connect`, the way in.

``async with Manager(url) as manager`` opens the Engine.IO connection (the first attempt
must succeed: its failure is :class:`~pyserver.socketio.client.ConnectionLost`, raised
here); ``async with manager.connect("/chat", auth=...) as socket`` joins a namespace over it
(a refusal is :class:`~pyserver.errors.ConnectionRefused` with the server's message and
data). :func:`connect` does both for the namespace in the URL's path.

Tasks, all in the manager's nursery: the supervisor (runs the Engine.IO connection, and
when it drops, reconnects), and one dispatcher per socket. None of them raises into the
nursery: a failure (a handler's exception, the connection lost for good) is kept, the
nursery is cancelled, and the ``async with`` raises that very exception (not a group).
Leaving the ``async with`` sends each socket's DISCONNECT and Engine.IO's CLOSE, and closes
the transport.

Reconnection, as socket.io-client does it by default: after a connection drops (not after
the application closed it), wait :class:`~pyserver.socketio.client.Backoff`'s delay (1 s
doubling to 5 s, randomization 0.5), emit ``"reconnect_attempt"`` (attempt number), open a
new connection (``"reconnect_error"`` on failure, then wait again), and on success emit
``"reconnect"`` and send every live socket's CONNECT again, with connection state
recovery's ``pid`` and last ``offset`` when the server gave a pid. ``reconnection_attempts``
bounds the attempts (``"reconnect_failed"``, then ``ConnectionLost("reconnect failed")``);
``reconnection=False`` makes a dropped connection end everything with ``ConnectionLost``.
When every socket has ended for good (the server disconnected them), a dropped connection
is made again only once a namespace is joined again. A namespace the server refuses on a
reconnection ends the client with that ``ConnectionRefused``.

``parser="msgpack"`` speaks socket.io-msgpack-parser (``Server(parser="msgpack")``, Node's
``new Server({parser})``); ``json=codec`` the default wire with another JSON codec (orjson,
or :class:`~pyserver.socketio.parsers.JSONCodec`), as ``Server`` takes them. Both ends must
use the same parser: there is no negotiation. When the server closes a connection on which
no CONNECT was answered yet (what a server with another parser does with a CONNECT in this
client's), the ``connect`` calls waiting on it end with ``ConnectionLost`` at once, naming
the parser, rather than retrying until ``timeout``. (A CONNECT lost with a connection that
had answered one is sent again after reconnecting, as before.)

Manager events are registered with ``manager.on(name, handler)`` (sync or async handlers,
run by the supervisor).
"""

from __future__ import annotations

import inspect
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import trio

from pyserver.socketio.client import (
    Backoff,
    ConnectionLost,
    client_decoder,
    parse_connected,
    plain_ack,
)
from pyserver.socketio.decoder import DecoderState
from pyserver.socketio.packets import Ack, Connect, ConnectError, Disconnect, Event
from pyserver.socketio.parser_session import make_parser
from pyserver.socketio.parsers import Parser, PayloadDecoder
from pyserver.trio.client.engine import EngineConnection
from pyserver.trio.client.http import Origin
from pyserver.trio.client.socket import ClientSocket

__all__ = ["Manager", "connect", "unwrap_single"]

logger = logging.getLogger("pyserver.client")

MAX_ATTACHMENTS = 1000
"""Binary attachments one received packet may have (their bytes are bounded by
``max_message_bytes``): a server may send more of them than a server accepts from a client."""


_AWAITING_PACKET = DecoderState.AWAITING_PACKET
CLOSED_BY_SERVER = frozenset({"transport close", "transport error"})
"""The reasons of a connection the server ended (not one this client could not read)."""


def unwrap_single(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The one exception of a (nested) group that is not a Cancelled, if there is one."""
    found = [exc for exc in _leaves(group) if not isinstance(exc, trio.Cancelled)]
    return found[0] if len(found) == 1 else None


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


class Manager:
    """One connection to a Socket.IO server and its namespaces (module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        path: str = "/socket.io/",
        transports: Sequence[str] | None = None,
        upgrade: bool = True,
        query: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        ssl_context: Any = None,
        reconnection: bool = True,
        reconnection_attempts: int | None = None,
        reconnection_delay: float = 1.0,
        reconnection_delay_max: float = 5.0,
        randomization_factor: float = 0.5,
        timeout: float = 20.0,
        max_queued_events: int = 1024,
        max_buffered_emits: int = 1024,
        max_message_bytes: int = 1_000_000,
        max_outbox: int = 10_000,
        parser: str | Parser = "json",
        json: Any = None,
    ) -> None:
        self.parser = make_parser(parser, json)
        """The parser (None: the built-in JSON one, the fast path)."""
        self.parser_name = "json" if self.parser is None else self.parser.name
        parts = urlsplit(url)
        self.origin = Origin.from_url(url, ssl_context)
        self.url = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
        self.path = path if path.endswith("/") else path + "/"
        self.query = [*parse_qsl(parts.query), *(query or {}).items()]
        self.headers = list((headers or {}).items())
        self.transports = tuple(transports or ("polling", "websocket"))
        self.upgrade = upgrade
        self.reconnection = reconnection
        self.reconnection_attempts = reconnection_attempts
        self.backoff = Backoff(
            reconnection_delay, reconnection_delay_max, 2.0, randomization_factor
        )
        self.timeout = timeout
        self.max_queued_events = max_queued_events
        self.max_buffered_emits = max_buffered_emits
        self.max_message_bytes = max_message_bytes
        self.max_outbox = max_outbox
        self.engine: EngineConnection | None = None
        self.sockets: dict[str, ClientSocket] = {}
        self._decoder: PayloadDecoder = self._new_decoder()
        self._plain_json = self.parser is None
        """The built-in parser: :func:`plain_ack` reads acks as its decoder would (never
        with another parser: msgpack's packets are binary, a JSON codec may read
        differently)."""
        self._handlers: dict[str, Callable[..., Any]] = {}
        self._nursery: trio.Nursery | None = None
        self._failure: BaseException | None = None
        self._closing = False
        self._running: Any = None
        self._rng = random.Random()
        self._wanted: trio.Event | None = None
        self._answering: EngineConnection | None = None
        """The last connection a CONNECT was answered on (then it speaks our parser)."""

    # -- events ------------------------------------------------------------------------------

    def on(self, event: str, handler: Callable[..., Any] | None = None) -> Any:
        """A handler for ``"reconnect_attempt"`` (n), ``"reconnect"`` (n),
        ``"reconnect_error"`` (error), ``"reconnect_failed"`` (); or as a decorator."""

        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            self._handlers[event] = fn
            return fn

        return register if handler is None else register(handler)

    async def _emit(self, event: str, *args: Any) -> None:
        handler = self._handlers.get(event)
        if handler is not None:
            result = handler(*args)
            if inspect.isawaitable(result):
                await result

    # -- lifetime ----------------------------------------------------------------------------

    async def __aenter__(self) -> Manager:
        self._running = self._run()
        return await self._running.__aenter__()  # type: ignore[no-any-return]

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        running, self._running = self._running, None
        return await running.__aexit__(exc_type, exc, tb)  # type: ignore[no-any-return]

    @asynccontextmanager
    async def _run(self) -> AsyncIterator[Manager]:
        self._failure = None
        self._closing = False
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self.engine = await self._open_engine()
                nursery.start_soon(self._guard, self._supervise)
                try:
                    yield self
                finally:
                    self._closing = True
                    await self._close()
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            single = unwrap_single(group)
            if single is None:
                raise
            raise single from single.__cause__
        finally:
            self._nursery = None
            for socket in self.sockets.values():
                socket._end("io client disconnect")
        if self._failure is not None:
            raise self._failure

    async def _guard(self, fn: Callable[[], Awaitable[None]]) -> None:
        try:
            await fn()
        except Exception as exc:
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
        for socket in self.sockets.values():
            socket._end(str(exc) or type(exc).__name__)
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    async def _close(self) -> None:
        engine = self.engine
        if engine is None:
            return
        for socket in self.sockets.values():
            if socket.connected:
                socket.disconnect()
        await engine.close()

    # -- the connection ----------------------------------------------------------------------

    async def _open_engine(self) -> EngineConnection:
        engine = EngineConnection(
            self.origin,
            self.path,
            query=self.query,
            headers=self.headers,
            transports=self.transports,
            upgrade=self.upgrade,
            timeout=self.timeout,
            max_message=self.max_message_bytes,
            max_outbox=self.max_outbox,
        )
        await engine.open()
        self._decoder = self._new_decoder()
        return engine

    def _new_decoder(self) -> PayloadDecoder:
        return client_decoder(self.parser, MAX_ATTACHMENTS, self.max_message_bytes)

    async def _supervise(self) -> None:
        while True:
            engine = self.engine
            assert engine is not None
            try:
                await engine.run(self._deliver)
            except ConnectionLost as exc:
                lost = exc
            if self._closing:
                return
            logger.info("connection to %s lost: %s", self.url, lost)
            self.engine = None
            await engine.close()
            unanswered = [
                s
                for s in self.sockets.values()
                if s.pending_on is engine
                and lost.reason in CLOSED_BY_SERVER
                and self._answering is not engine
            ]
            for socket in self.sockets.values():
                socket.on_connection_lost(lost.reason)
            if unanswered:
                error = self._unanswered(lost, [s.namespace for s in unanswered])
                for socket in unanswered:
                    socket.on_connect_lost(error)
                if not self.reconnection:
                    raise error from lost.__cause__
            if not self.reconnection:
                raise lost
            if not any(s.disconnect_reason is None for s in self.sockets.values()):
                # every socket ended for good (the server disconnected them): reconnect only
                # once a namespace is wanted again, as socket.io-client's Manager does
                self._wanted = trio.Event()
                await self._wanted.wait()
            await self._reconnect(lost)

    def _unanswered(self, lost: ConnectionLost, namespaces: list[str]) -> ConnectionLost:
        """The error of CONNECTs a connection closed by the server never answered (none on
        it was): most often a server with another parser, which closes the connection on a
        packet it cannot read (the message asks)."""
        detail = (
            f"the server ended the connection without answering CONNECT {', '.join(namespaces)}"
            f" (does it use the {self.parser_name!r} parser too? both ends must);"
            f" {lost.detail or lost.reason}"
        )
        error = ConnectionLost(lost.reason, detail)
        error.__cause__ = lost.__cause__
        return error

    async def _reconnect(self, cause: ConnectionLost) -> None:
        backoff = self.backoff
        last: BaseException = cause
        while True:
            limit = self.reconnection_attempts
            if limit is not None and backoff.attempts >= limit:
                await self._emit("reconnect_failed")
                raise ConnectionLost("reconnect failed", f"{limit} attempts") from last
            await trio.sleep(backoff.duration(self._rng.random()))
            await self._emit("reconnect_attempt", backoff.attempts)
            try:
                engine = await self._open_engine()
            except ConnectionLost as exc:
                last = exc
                await self._emit("reconnect_error", exc)
                continue
            attempts = backoff.attempts
            backoff.reset()
            self.engine = engine
            for socket in self.sockets.values():
                if socket.disconnect_reason is None:
                    engine.send(socket.connect_text())
                    if not socket._answered.is_set():
                        socket.pending_on = engine
            await self._emit("reconnect", attempts)
            return

    def _deliver(self, data: str | bytes) -> None:
        """The reader's hand-off: one Engine.IO message to the socket it is for."""
        decoder = self._decoder
        if type(data) is str:
            if (
                data[:1] == "3" and self._plain_json and decoder.state is _AWAITING_PACKET  # type: ignore[attr-defined]
            ):
                ack = plain_ack(data)  # the hot path: an ACK on "/", no attachments
                if ack is not None:
                    socket = self.sockets.get("/")
                    if socket is not None:
                        socket.on_ack(*ack)
                    return
            packet = decoder.receive_text_event(data)
        else:
            packet = decoder.receive_binary(data)  # type: ignore[arg-type]
        if packet is None:
            return
        if type(packet) is tuple:
            socket = self.sockets.get("/")
            if socket is not None:
                socket.on_event(*packet)
            return
        assert not isinstance(packet, tuple)
        socket = self.sockets.get(packet.namespace)
        if socket is None:
            return
        if type(packet) is Event:
            socket.on_event(packet.event, packet.args, packet.ack_id)
        elif type(packet) is Ack:
            socket.on_ack(packet.ack_id, packet.args)
        elif type(packet) is Connect:
            socket.on_connected(*parse_connected(packet))
            self._answering = self.engine
        elif type(packet) is ConnectError:
            refusal = socket.on_refused(packet.message, packet.data)
            if refusal is not None:
                self._fail(refusal)
        elif type(packet) is Disconnect:
            socket.on_server_disconnect()

    # -- namespaces --------------------------------------------------------------------------

    @asynccontextmanager
    async def connect(
        self, namespace: str = "/", *, auth: dict[str, Any] | None = None
    ) -> AsyncIterator[ClientSocket]:
        """Join ``namespace`` over this connection (socket.io-client's ``manager.socket``);
        leaving the ``async with`` leaves the namespace. Raises ``ConnectionRefused`` (the
        server's CONNECT_ERROR: ``message``, ``data``) or ``ConnectionLost`` (no answer
        within ``timeout``, or the connection ended before the answer)."""
        if self._nursery is None:
            raise RuntimeError("the manager is not running: use 'async with Manager(...)'")
        if not namespace.startswith("/"):
            namespace = "/" + namespace
        if namespace in self.sockets and self.sockets[namespace].disconnect_reason is None:
            raise RuntimeError(f"already connected to namespace {namespace!r}")
        socket = ClientSocket(
            self,
            namespace,
            auth,
            max_queued_events=self.max_queued_events,
            max_buffered_emits=self.max_buffered_emits,
            parser=self.parser,
        )
        self.sockets[namespace] = socket
        try:
            if self.engine is not None:
                self.engine.send(socket.connect_text())
                socket.pending_on = self.engine
            elif self._wanted is not None:
                self._wanted.set()  # the supervisor reconnects, and sends the CONNECT
            with trio.move_on_after(self.timeout):
                await socket._answered.wait()
            if socket.refusal is not None:
                raise socket.refusal
            if socket.lost is not None:
                raise socket.lost
            if not socket._answered.is_set():
                raise ConnectionLost("timeout", f"no answer to CONNECT {namespace}")
            self._nursery.start_soon(self._guard, socket.dispatch)
            try:
                yield socket
            finally:
                socket.disconnect()
        finally:
            if self.sockets.get(namespace) is socket:
                del self.sockets[namespace]


@asynccontextmanager
async def connect(
    url: str, *, auth: dict[str, Any] | None = None, **options: Any
) -> AsyncIterator[ClientSocket]:
    """Connect to the Socket.IO server at ``url`` and join the namespace of its path
    (``"http://host:3000/chat"`` joins ``/chat``, as ``io(url)`` does); yield the socket.

    ``options`` are :class:`Manager`'s: ``transports`` (``["polling", "websocket"]`` by
    default, upgrading; ``["websocket"]`` for WebSocket only), ``upgrade``, ``query``,
    ``headers``, ``path``, ``ssl_context``, ``reconnection``, ``reconnection_attempts``,
    ``reconnection_delay``, ``reconnection_delay_max``, ``randomization_factor``,
    ``timeout``, ``max_queued_events``, ``max_buffered_emits``, ``max_message_bytes``,
    ``parser`` (``"json"``, ``"msgpack"``) and ``json`` (a JSON codec), as ``Server`` takes
    them.
    Raises ``ConnectionLost`` when the server cannot be reached and ``ConnectionRefused``
    when it refuses the namespace."""
    parts = urlsplit(url)
    namespace = parts.path or "/"
    base = urlunsplit((parts.scheme, parts.netloc, "", parts.query, ""))
    async with Manager(base, **options) as manager, manager.connect(namespace, auth=auth) as socket:
        yield socket

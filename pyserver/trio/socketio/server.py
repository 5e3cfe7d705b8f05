"""The Socket.IO v5 server on Trio: ``Server``.

::

    sio = Server(cors_allowed_origins="*")

    @sio.on("chat message")
    async def chat(socket, msg):
        sio.emit("chat message", msg)
        return {"status": "ok"}          # the ack

    trio.run(sio.serve, "127.0.0.1", 3000)   # or: await nursery.start(sio.serve, host, port)

Structure: ``serve`` opens the Server's nursery, which holds the Engine.IO timer, the
Socket.IO timer (connect timeouts, ack deadlines: one heap, no task per connection), the
HTTP listeners (``sio.app``, an :class:`~pyserver.trio.http.app.App`, with the Engine.IO mount at
``path``), each socket's handler task while it has work (see :mod:`pyserver.trio.socketio.socket`
for ordering), connections that need middleware, and the room nurseries
(:mod:`pyserver.trio.socketio.room_tasks`). When ``serve`` is cancelled every connection closes with
"server shutting down" and every room's tasks are cancelled.

Input from the clients arrives through synchronous Engine.IO callbacks, so decoding, rate
limiting and queueing never wait; only user handlers run in tasks. Limits: Engine.IO bounds
each connection's outbox (a slow client is dropped, never slowing the others);
``max_http_buffer_size`` bounds a message and a packet's attachments; ``max_attachments``
their count; ``max_emit_bytes`` (16 MiB; None: no bound) one outgoing packet, text and
attachments, checked before anything is built or queued (over it, an emit or an ack raises
:class:`~pyserver.socketio.packets.PacketTooLarge`, a ``ValueError``);
``max_pending_events`` the events waiting per socket; ``rate_limit`` the events per window
per socket (refused events are acked ``{"error": "rate limited"}``, or, without an ack,
answered with an ``"error"`` event ``{"message": "rate limited", "event": name}``;
``flood_windows`` windows in a row over the limit close the connection; refusals are logged
once per window per connection, and answered at most ``events`` times per window: see
:mod:`pyserver.trio.socketio.client`); ``max_namespaces_per_client`` (default 100, None: no cap) the
namespaces one connection is in or joining at once (past it: CONNECT_ERROR "too many
namespaces"). ``cleanup_empty_child_namespaces`` (Node's option, off by default as there)
removes a dynamic namespace's child once its last socket left (see
:mod:`pyserver.trio.socketio.namespace`). ``max_sessions_per_ip`` (None: no cap, the default) the
Engine.IO sessions open at once per client address (a handshake past it: 503, see
:class:`~pyserver.trio.engineio.EngineIOServer`); ``max_connections`` and
``max_connections_per_ip`` go to the :class:`~pyserver.trio.http.app.App` made here (see there).

Several processes as one: ``Server(adapter=RedisAdapter("redis://..."))`` (see
:mod:`pyserver.trio.redis.adapter`). ``run`` then starts the adapter's tasks in the server's
nursery; broadcasts, ``fetch_sockets``, ``sockets_join``/``sockets_leave``/
``disconnect_sockets`` and broadcasts with acks reach every node (``local`` keeps them on
this one), and nodes talk to each other with ``server_side_emit`` /
``server_side_emit_with_ack`` and ``@sio.on_server_event(name)``. The default adapter is
:class:`~pyserver.trio.socketio.adapter.InMemoryAdapter` (one process).

Connection state recovery: ``Server(connection_state_recovery=True)`` (or a
:class:`~pyserver.socketio.recovery.StateRecovery` with its bounds) gives a client whose
connection dropped its socket back (same id, rooms and ``data``, ``socket.recovered`` true)
with the packets it missed, as the Node server's ``connectionStateRecovery`` does for the
official clients; see :mod:`pyserver.socketio.recovery`. It needs the in-memory adapter, or
:class:`~pyserver.trio.redis.streams.RedisStreamsAdapter` (recovery on any node of a cluster).

Engine.IO hooks (see :mod:`pyserver.trio.engineio.hooks`): ``cookie`` (the session id in a
cookie for sticky load balancers), ``initial_headers``/``headers`` (change the HTTP answers'
headers), ``generate_id``, an ``async`` ``allow_request``; ``http_compression_threshold`` (bytes,
Node's ``httpCompression.threshold``) and ``http_compression_level`` (zlib's, -1 its default)
for the long-polling answers ``http_compression`` gzips; ``per_message_deflate`` (off by
default, as Node's ``perMessageDeflate``) negotiates permessage-deflate on WebSocket
connections (``server_no_context_takeover``, so a broadcast's compressed frame is shared):
``True``, or ``{"threshold": 1024, "level": -1}`` (Node's ``threshold`` and
``zlibDeflateOptions.level``; see :mod:`pyserver.ws.deflate`). ``compress(False)`` on an emit
or a broadcast sends it uncompressed on both transports (a polling answer is gzipped when any
of its packets wants it, as in Node).

Parsers: ``Server(parser="msgpack")`` speaks ``socket.io-msgpack-parser`` 3.x (clients
configured with it; see :mod:`pyserver.socketio.msgpack_parser`), ``Server(json=codec)`` the
default wire with your JSON codec (``orjson``, or ``JSONCodec(default=...)``; see
:mod:`pyserver.socketio.parsers`). Broadcasts are encoded once with the server's parser.

Old clients: ``Server(allow_eio3=True)`` also serves socket.io-client 2.x (Engine.IO v3,
Socket.IO protocol v4; see :mod:`pyserver.engineio.v3` and :mod:`pyserver.socketio.legacy`)
beside the others, in the same rooms; off by default (``EIO=3`` refused, as in Node).

Logging (``pyserver.socketio``): a line per socket connected and per socket gone with its
reason, per refused namespace, per refused or malformed input.
"""

from __future__ import annotations

import logging
import os
import re
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import Any, Literal, TypeVar

import trio

from pyserver.engineio.http_answers import OriginSpec
from pyserver.engineio.session import CloseReason
from pyserver.http import Request
from pyserver.socketio.legacy import legacy_allowed
from pyserver.socketio.parser_session import make_parser
from pyserver.socketio.parsers import Parser
from pyserver.socketio.ratelimit import RateLimit
from pyserver.socketio.recovery import StateRecovery
from pyserver.socketio.session import DEFAULT_MAX_EMIT_BYTES, SessionConfig
from pyserver.trio.engineio import EngineIOServer, EngineSession
from pyserver.trio.engineio.hooks import AllowRequest, Cookie, HeadersHook
from pyserver.trio.http.app import App
from pyserver.trio.metrics import Metrics, enable_metrics
from pyserver.trio.socketio.adapter import AdapterFactory, InMemoryAdapter
from pyserver.trio.socketio.client import Client
from pyserver.trio.socketio.main_api import MainNamespaceApi
from pyserver.trio.socketio.namespace import DynamicNamespace, Namespace, NamespaceMatcher
from pyserver.trio.timers import DeadlineTimer
from pyserver.trio.websocket.inline import Work
from pyserver.ws.deflate import DeflateSpec

__all__ = ["Server"]

logger = logging.getLogger("pyserver.socketio")


F = TypeVar("F", bound=Callable[..., Any])


class Server(MainNamespaceApi):
    """A Socket.IO v5 server. See the module docstring."""

    def __init__(
        self,
        *,
        cors_allowed_origins: OriginSpec = None,
        cors_credentials: bool = False,
        ping_interval: float = 25.0,
        ping_timeout: float = 20.0,
        max_http_buffer_size: int = 1_000_000,
        connect_timeout: float = 45.0,
        path: str = "/socket.io/",
        static_dir: str | os.PathLike[str] | None = None,
        allowed_hosts: Sequence[str] | None = None,
        transports: Sequence[str] = ("polling", "websocket"),
        allow_upgrades: bool = True,
        upgrade_timeout: float = 10.0,
        http_compression: bool = True,
        allow_request: AllowRequest | None = None,
        cookie: Cookie | Mapping[str, Any] | str | bool | None = None,
        generate_id: Callable[[Request], str] | None = None,
        initial_headers: HeadersHook | None = None,
        headers: HeadersHook | None = None,
        http_compression_threshold: int = 1024,
        http_compression_level: int = -1,
        per_message_deflate: DeflateSpec = False,
        max_sessions_per_ip: int | None = None,
        allow_eio3: bool = False,
        max_connections: int | Literal["auto"] | None = "auto",
        max_connections_per_ip: int | None = None,
        rate_limit: RateLimit | None = None,
        flood_windows: int = 3,
        room_grace_period: float = 0.0,
        max_attachments: int = 10,
        max_emit_bytes: int | None = DEFAULT_MAX_EMIT_BYTES,
        max_pending_events: int = 256,
        adapter: AdapterFactory = InMemoryAdapter,
        connection_state_recovery: StateRecovery | bool = False,
        cleanup_empty_child_namespaces: bool = False,
        max_namespaces_per_client: int | None = 100,
        parser: Literal["json", "msgpack"] | Parser = "json",
        json: Any = None,
        app: App | None = None,
        metrics: bool | Metrics = False,
    ) -> None:
        if rate_limit is not None and (rate_limit[0] < 1 or rate_limit[1] <= 0):
            raise ValueError("rate_limit must be (events >= 1, seconds > 0)")
        if max_namespaces_per_client is not None and max_namespaces_per_client < 1:
            raise ValueError("max_namespaces_per_client must be >= 1 (or None: no cap)")
        #: The Socket.IO parser when it is not the built-in JSON one (``parser="msgpack"``,
        #: ``json=codec``: see :mod:`pyserver.socketio.parsers`), else None.
        self.parser: Parser | None = make_parser(parser, json)
        self.rate_limit = rate_limit
        self.flood_windows = flood_windows
        #: Remove a dynamic namespace's child once its last socket left (Node's option of
        #: that name, off by default as there): see :mod:`pyserver.trio.socketio.namespace`.
        self.cleanup_empty_child_namespaces = cleanup_empty_child_namespaces
        #: Namespaces one connection may be in (or joining) at once; a CONNECT past it is
        #: answered with CONNECT_ERROR "too many namespaces". None: no cap.
        self.max_namespaces_per_client = max_namespaces_per_client
        self.room_grace_period = room_grace_period
        self.max_pending_events = max_pending_events
        self.adapter_factory = adapter
        #: Connection state recovery (see :mod:`pyserver.socketio.recovery`), or None.
        self.state_recovery: StateRecovery | None = (
            StateRecovery()
            if connection_state_recovery is True
            else connection_state_recovery or None
        )
        self.session_config = SessionConfig(
            connect_timeout=connect_timeout,
            max_attachments=max_attachments,
            max_attachment_bytes=max_http_buffer_size,
            max_emit_bytes=max_emit_bytes,
        )
        self.eio = EngineIOServer(
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            upgrade_timeout=upgrade_timeout,
            max_payload=max_http_buffer_size,
            transports=transports,
            allow_upgrades=allow_upgrades,
            cors_allowed_origins=cors_allowed_origins,
            cors_credentials=cors_credentials,
            http_compression=http_compression,
            allow_request=allow_request,
            cookie=cookie,
            generate_id=generate_id,
            initial_headers=initial_headers,
            headers=headers,
            compression_threshold=http_compression_threshold,
            compression_level=http_compression_level,
            max_sessions_per_ip=max_sessions_per_ip,
            allow_eio3=legacy_allowed(allow_eio3, self.parser),
            on_connect=self._eio_connect,
            on_message=self._eio_message,
            on_disconnect=self._eio_disconnect,
        )
        #: The HTTP application: add routes, WebSocket endpoints and static files to it.
        #: ``allowed_hosts`` (see :class:`~pyserver.trio.http.app.App`) goes to the App made
        #: here; an App given as ``app`` carries its own.
        if app is not None and allowed_hosts is not None:
            raise ValueError("give allowed_hosts to the App passed as app=, not to the Server")
        if app is not None and per_message_deflate:
            raise ValueError("give compression=True to the App passed as app=, not to the Server")
        self.app = (
            app
            if app is not None
            else App(
                static_dir=static_dir,
                allowed_hosts=allowed_hosts,
                # caps (see App and EngineIOServer); an App given as ``app`` has its own
                max_connections=max_connections,
                max_connections_per_ip=max_connections_per_ip,
                # permessage-deflate (Node's perMessageDeflate, off by default as there)
                compression=per_message_deflate,
            )
        )
        self.path = path
        self.app.mount(path, self.eio)
        self.namespaces: dict[str, Namespace] = {}
        self._new_namespace_listeners: list[Callable[[Namespace], Any]] = []
        self.namespaces["/"] = Namespace(self, "/")
        #: The dynamic parents (``of(pattern)``), asked in order for an unknown name.
        self.dynamic_namespaces: list[DynamicNamespace] = []
        self.clients: dict[str, Client] = {}
        self._nursery: trio.Nursery | None = None
        #: True while ``run`` (or ``serve``) is running: ``spawn`` then starts tasks.
        self.running = False
        self._warned_not_running = False
        #: True while ``run``/``serve`` is shutting down.
        self.stopping = False
        self._close_requested = trio.Event()  # close() asked run to end
        self._stopped: trio.Event | None = None  # set once serve (or a run alone) ended
        self._timer: DeadlineTimer[Client] = DeadlineTimer(self._client_due)
        if metrics:  # Prometheus /metrics: see pyserver.trio.metrics
            enable_metrics(self, metrics if isinstance(metrics, Metrics) else None)

    # -- namespaces ------------------------------------------------------------------------

    @property
    def main(self) -> Namespace:
        """The main namespace ``"/"``."""
        return self.namespaces["/"]

    def of(
        self, name: str | NamespaceMatcher, *, rate_limit: RateLimit | None = None
    ) -> Namespace | DynamicNamespace:
        """The namespace ``name`` (created on first use), or, for a compiled regular
        expression or a function ``(name, auth) -> bool``, a dynamic parent namespace.
        ``rate_limit`` overrides the server's for this namespace."""
        if isinstance(name, str):
            if not name.startswith("/"):
                name = "/" + name
            nsp = self.namespaces.get(name)
            if nsp is None:
                nsp = self.namespaces[name] = Namespace(self, name, rate_limit=rate_limit)
            elif rate_limit is not None:
                nsp.rate_limit = rate_limit
            return nsp
        parent = DynamicNamespace(self, name, rate_limit=rate_limit)
        self.dynamic_namespaces.append(parent)
        return parent

    async def find_namespace(self, name: str, auth: dict[str, Any] | None) -> Namespace | None:
        """The namespace ``name``, or a new child of the first dynamic parent that accepts
        it (for the connection being admitted: see :mod:`pyserver.trio.socketio.namespace`);
        None when none does."""
        nsp = self.namespaces.get(name)
        if nsp is not None:
            return nsp
        for parent in self.dynamic_namespaces:
            if await parent.matches(name, auth):
                nsp = self.namespaces.get(name)  # another connection may have made it
                if nsp is None:
                    nsp = parent.child(name)  # the caller counts its admission at once
                return nsp
        return None

    # -- monitoring ------------------------------------------------------------------------

    def statistics(self) -> dict[str, Any]:
        """Connected clients per transport, sockets and rooms per namespace, room tasks,
        outbox depths and handler queues."""
        transports: dict[str, int] = {"polling": 0, "websocket": 0}
        depths: list[int] = []
        for client in self.clients.values():
            transports[str(client.transport)] = transports.get(str(client.transport), 0) + 1
            depths.append(client.outbox_depth())
        namespaces: dict[str, dict[str, int]] = {}
        rooms = 0
        pending = 0
        for name, nsp in self.namespaces.items():
            sizes = nsp.adapter.room_sizes()
            named = sum(1 for room in sizes if room not in nsp.sockets)
            rooms += named
            waiting = sum(socket.pending for socket in nsp.sockets.values())
            pending += waiting
            namespaces[name] = {
                "sockets": len(nsp.sockets),
                "rooms": named,
                "room_tasks": sum(n.tasks for n in nsp.room_nurseries.values()),
                "pending_events": waiting,
            }
        return {
            "clients": len(self.clients),
            "transports": transports,
            "namespaces": namespaces,
            "rooms": rooms,
            "room_nurseries": sum(len(n.room_nurseries) for n in self.namespaces.values()),
            "outbox": {
                "total": sum(depths),
                "max": max(depths, default=0),
            },
            "pending_events": pending,
        }

    # -- running ---------------------------------------------------------------------------

    async def serve(
        self,
        host: str | None,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        task_status: trio.TaskStatus[list[Any]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``host:port`` (0: a free port) and serve until cancelled or
        :meth:`close`; ``task_status.started`` gets the listeners (as :meth:`App.serve` does,
        which also says what ``ssl_context`` does: TLS, https and wss)."""
        stopped = self._stopped = trio.Event()
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self._run_then_stop, nursery.cancel_scope)
                listeners = await nursery.start(
                    partial(self.app.serve, host, port, ssl_context=ssl_context)
                )
                task_status.started(listeners)
        finally:
            stopped.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the Socket.IO machinery without listening (the caller serves ``sio.app``):
        ``await nursery.start(sio.run)``. Until cancelled."""
        if self._nursery is not None:
            raise RuntimeError("Server is already running")
        self.stopping = False
        self._close_requested = trio.Event()
        stopped = self._stopped
        own_stop = stopped is None or stopped.is_set()  # (a run alone, not inside serve)
        if stopped is None or own_stop:
            stopped = self._stopped = trio.Event()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self.running = True
                try:
                    await nursery.start(self.eio.serve)
                    nursery.start_soon(self._timer.run)
                    if self.state_recovery is not None:
                        nursery.start_soon(self._expire_recovery)
                    adapter_run = getattr(self.adapter_factory, "run", None)
                    if adapter_run is not None:  # a cluster adapter's tasks
                        await nursery.start(adapter_run, self)
                    if self.admin is not None:  # sio.instrument(): the Admin UI's stats
                        nursery.start_soon(self.admin.run)
                    task_status.started()
                    await self._close_requested.wait()
                finally:
                    # every socket leaves with "server shutting down"; the disconnect
                    # handlers still run (shielded, up to SHUTDOWN_GRACE seconds each)
                    self.stopping = True
                    self.eio.close_all(CloseReason.SERVER_SHUTTING_DOWN)
                    for nsp in self.namespaces.values():
                        for room in list(nsp.room_nurseries.values()):
                            room.close()
                    nursery.cancel_scope.cancel()  # (closed: the timers and tasks end)
        finally:
            self._nursery = None
            self.running = False
            if own_stop:
                stopped.set()

    async def _expire_recovery(self) -> None:
        """Drop the kept sessions (and packets) once their recovery window is over, a tenth
        of the window late at most (10 s at most): without it a store forgets only when
        another socket leaves or recovers, so an idle server kept them indefinitely."""
        assert self.state_recovery is not None
        period = min(10.0, max(self.state_recovery.max_disconnection_duration / 10, 0.05))
        while True:
            await trio.sleep(period)
            now = trio.current_time()
            for nsp in list(self.namespaces.values()):
                if nsp.recovery is not None:
                    nsp.recovery.expire(now)

    def spawn(self, fn: Callable[..., Awaitable[Any]], name: str, *args: Any) -> bool:
        """Run ``fn(*args)`` in the server's nursery (a handler task, a room nursery, a
        namespace admission); False, and a warning once, when the server is not running."""
        nursery = self._nursery
        if nursery is None:
            if not self._warned_not_running:
                self._warned_not_running = True
                logger.warning(
                    "the Server is not running, handlers are not called: start it with "
                    "`await nursery.start(sio.serve, host, port)` or `await nursery.start(sio.run)`"
                )
            return False
        nursery.start_soon(fn, *args, name=name)
        return True

    # -- Engine.IO callbacks ---------------------------------------------------------------

    def _eio_connect(self, session: EngineSession) -> None:
        client = Client(self, session, trio.current_time())
        session.data["sio"] = client
        self.clients[session.sid] = client
        self.schedule(client)
        if session.core.protocol == 3:  # socket.io-client 2.x: joined to "/" at once
            client.join_main()

    def _eio_message(self, session: EngineSession, data: str | bytes) -> Work | None:
        client: Client = session.data["sio"]
        return client.receive(data)  # (its work: Engine.IO runs it, see Client.receive)

    def _eio_disconnect(self, session: EngineSession, reason: CloseReason) -> None:
        client: Client | None = session.data.get("sio")
        if client is None:
            return
        self.clients.pop(session.sid, None)
        client.connection_lost(str(reason))
        self._timer.unschedule(client)  # its deadlines go with it (and the timer's reference)

    # -- the Socket.IO timer (connect timeouts, ack deadlines) -----------------------------

    def schedule(self, client: Client) -> None:
        """(Re)arm the Socket.IO timer for ``client``'s next deadline (connect timeout,
        ack deadlines)."""
        self._timer.schedule(client, client.core.next_deadline())

    def _client_due(self, client: Client, now: float) -> None:
        client.on_timer(now)
        self.schedule(client)

    def __repr__(self) -> str:
        return f"<Server {len(self.clients)} clients, namespaces {sorted(self.namespaces)}>"


_ = re  # re.Pattern is accepted by Server.of (see NamespaceMatcher)

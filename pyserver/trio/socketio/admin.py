"""The Socket.IO Admin UI's server side: ``sio.instrument(...)``.

::

    sio.instrument(auth={"username": "admin", "password": "secret"}, serve_ui=True)
    # the UI at http://host:port/admin/ (or https://admin.socket.io with CORS), namespace /admin

What it sends and takes is :mod:`pyserver.socketio.admin_events` (Node's
``@socket.io/admin-ui`` 0.5 contract). Where each part comes from, so that the production
mode costs nothing per message:

* **Stats** (both modes): a task in the server's nursery (``Server.run`` starts it) emits
  ``server_stats`` every ``server_stats_interval`` seconds. Its aggregated events are the
  deltas of the Engine.IO counters the server keeps anyway
  (:class:`pyserver.metrics.EngineCounters`: sessions opened and closed by reason, message
  packets and bytes in and out), attributed to the second of the tick: no hook of its own.
* **Development mode** (``mode="development"``): every namespace's adapter room events
  (``join-room``/``leave-room``, the socket's own room marking its arrival and departure)
  give ``socket_connected``, ``room_joined``, ``room_left``, ``socket_disconnected``; each
  socket gets an ``on_any`` and an ``on_any_outgoing`` listener (``event_received``,
  ``event_sent``; not on the admin namespace) while someone may read them: with the
  in-memory adapter only while an admin socket is connected (the first one to connect puts
  them on every socket, the last one to leave takes them off, so an instrumented server
  nobody watches pays no listener call per event or per broadcast delivery); the stats tick
  also sends ``socket_updated`` for a socket whose transport (an upgrade) or ``data``
  changed since the last tick. As in
  Node, ``socket.data["_admin"]`` holds ``{clientId, transport}``, so that another node's
  ``fetch_sockets`` carries them.
* **Commands** (unless ``read_only``): handlers on the admin namespace for ``emit``,
  ``join``, ``leave``, ``_disconnect``, applied with the broadcast operators (every node).

Every admin emit is ``admin_namespace.emit(...)``: it goes through the adapter, so with a
Redis adapter each node's events and stats reach every admin socket of the cluster (Node's
instrumented servers on the same Redis too), and ``all_sockets`` is a cluster-wide
``fetch_sockets``. With the in-memory adapter and no admin socket connected, nothing is
encoded.

Login: ``auth`` is False (none), ``{"username", "password"}`` (compared in constant time),
Node's ``{"type": "basic", "username", "password": <bcrypt hash>}`` (checked with ``bcrypt``
in a thread: ``pip install 'pyserver[admin]'``), a list of those, or ``fn(auth) -> bool``
(sync or async). A refusal is CONNECT_ERROR ``"invalid credentials"``; a login gets a session
id (``session`` event, kept a day by ``store``: this process's memory by default, or
:class:`~pyserver.trio.socketio.admin_store.RedisStore` for every node) that logs the UI in
again without the password. A store that fails (Redis down) refuses only the session-id
logins: the password still logs in (its session id is not saved, nor sent).

``serve_ui=True`` serves the UI itself (the ``@socket.io/admin-ui`` page the package carries,
loading nothing from the internet) at ``/admin/`` (or the path given), through the server's
App; the page's default server URL (empty: its own origin) then works as it is.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import secrets
import socket as _socket
import time
import weakref
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, Protocol

import trio

from pyserver.errors import ConnectionRefused
from pyserver.logtext import shown
from pyserver.metrics import EngineCounters
from pyserver.socketio.admin_events import (
    ADMIN_KEY,
    INVALID_CREDENTIALS,
    EventBuffer,
    check_auth_option,
    credentials_match,
    iso_date,
    serialize_socket,
    server_stats,
    supported_features,
)
from pyserver.trio.socketio.adapter import InMemoryAdapter, RemoteSocket
from pyserver.trio.socketio.admin_page import ADMIN_UI_DIR, AdminUiMount
from pyserver.trio.socketio.admin_store import InMemoryStore, SessionStore
from pyserver.trio.socketio.namespace import Namespace

if TYPE_CHECKING:
    from pyserver.trio.http.app import App
    from pyserver.trio.socketio.client import Client
    from pyserver.trio.socketio.socket import Socket

__all__ = ["ADMIN_UI_DIR", "AdminUI", "AdminUiMount", "Instrumented", "basic_auth"]

logger = logging.getLogger("pyserver.socketio.admin")

_COUNTERS = (
    ("packetsIn", "packets_in"),
    ("packetsOut", "packets_out"),
    ("bytesIn", "bytes_in"),
    ("bytesOut", "bytes_out"),
)


class Instrumented(Protocol):
    """What :class:`AdminUI` needs of the server (the Server is one)."""

    @property
    def namespaces(self) -> dict[str, Namespace]: ...

    @property
    def clients(self) -> dict[str, Client]: ...

    @property
    def app(self) -> App: ...

    @property
    def eio(self) -> Any: ...

    def of(self, name: str) -> Any: ...

    def on_new_namespace(self, listener: Any) -> Any: ...


class AdminUI:
    """One server's instrumentation (``sio.instrument(...)`` makes it; see the module
    docstring). ``run`` is its stats task."""

    def __init__(
        self,
        server: Instrumented,
        *,
        auth: Any,
        mode: Literal["development", "production"] = "development",
        read_only: bool = False,
        namespace: str = "/admin",
        server_id: str | None = None,
        server_stats_interval: float = 2.0,
        serve_ui: bool | str = False,
        store: SessionStore | None = None,
    ) -> None:
        check_auth_option(auth)
        if mode not in ("development", "production"):
            raise ValueError(f"mode is 'development' or 'production', not {mode!r}")
        if server_stats_interval <= 0:
            raise ValueError("server_stats_interval must be > 0 (seconds)")
        self.server = server
        self.auth = auth
        self.mode = mode
        self.read_only = read_only
        self.development = mode == "development"
        self.interval = server_stats_interval
        self.hostname = _socket.gethostname()
        #: Each node's id in the UI (it keeps one row per id): ``hostname#pid`` by default,
        #: so two nodes on one machine stay apart.
        self.server_id = server_id or f"{self.hostname}#{os.getpid()}"
        self.features = supported_features(mode, read_only)
        self._started = time.monotonic()
        #: Where login session ids are kept (:mod:`~pyserver.trio.socketio.admin_store`).
        self.store: SessionStore = InMemoryStore() if store is None else store
        self._fresh: weakref.WeakKeyDictionary[Socket, str] = weakref.WeakKeyDictionary()
        self.events = EventBuffer()
        self._last: dict[str, int] = {}
        self._read_counters()  # what happened before instrument() is not reported
        #: This node's sockets (development mode), by (namespace, id), with what the UI
        #: was last told of their transport and data.
        self._watched: dict[tuple[str, str], tuple[Socket, str, str]] = {}
        #: The sockets given ``event_received``/``event_sent`` listeners, with them.
        self._listening: dict[tuple[str, str], tuple[Socket, Any, Any]] = {}
        nsp = server.of(namespace if namespace.startswith("/") else "/" + namespace)
        if not isinstance(nsp, Namespace):
            raise ValueError("the admin namespace is a name, not a pattern")
        self.nsp: Namespace = nsp
        self._local_only = type(nsp.adapter) is InMemoryAdapter
        nsp.use(self._login)
        nsp.on("connection", self._admin_connected)
        if not read_only:
            nsp.on("emit", self._command_emit)
            nsp.on("join", self._command_join)
            nsp.on("leave", self._command_leave)
            nsp.on("_disconnect", self._command_disconnect)
        if self.development:
            for each in list(server.namespaces.values()):
                self._watch(each)
            server.on_new_namespace(self._watch)
        if serve_ui:
            prefix = "/admin" if serve_ui is True else "/" + str(serve_ui).strip("/")
            server.app.mount(prefix, AdminUiMount(prefix))

    # -- sending to the admin namespace -------------------------------------------------------

    def _send(self, event: str, *args: Any) -> None:
        """Emit to every admin socket (through the adapter: every node's)."""
        if self._local_only and not self.nsp.sockets:
            return  # nobody to tell
        try:
            self.nsp.emit(event, *args)
        except Exception:  # (an argument JSON cannot carry: the UI misses this one)
            logger.debug("admin event %s not sent", event, exc_info=True)

    # -- login ----------------------------------------------------------------------------------

    async def _login(self, socket: Socket) -> None:
        auth = self.auth
        if auth is False:
            return
        given = socket.handshake.auth
        session = given.get("sessionId")
        if isinstance(session, str) and session:
            try:
                if await self.store.exists(session):
                    return
            except Exception as exc:  # (the store is down: the password may still log in)
                logger.warning("admin session not checked (socket %s): %s", socket.id, _error(exc))
        if callable(auth):
            ok = auth(given)
            if inspect.isawaitable(ok):
                ok = await ok
        else:
            ok = await trio.to_thread.run_sync(credentials_match, auth, given)
        if not ok:
            logger.info("admin login refused (socket %s)", socket.id)
            raise ConnectionRefused(INVALID_CREDENTIALS)
        token = secrets.token_hex(8)
        try:
            await self.store.save(token)
        except Exception as exc:  # (logged in all the same, without a session to come back with)
            logger.warning("admin session not saved (socket %s): %s", socket.id, _error(exc))
            return
        self._fresh[socket] = token

    async def _admin_connected(self, socket: Socket) -> None:
        token = self._fresh.pop(socket, None)
        if token is not None:
            socket.emit("session", token)
        if self.development:
            for (nsp_name, sid), (watched, _, _) in list(self._watched.items()):
                self._listen(nsp_name, sid, watched)
        socket.emit("config", {"supportedFeatures": self.features})
        socket.emit("server_stats", self._stats([]))
        if self.development:
            everyone = await self._all_sockets()
            socket.emit("all_sockets", everyone)

    async def _all_sockets(self) -> list[dict[str, Any]]:
        """Every socket of every namespace this node has, on every node."""
        found: list[dict[str, Any]] = []
        for nsp in list(self.server.namespaces.values()):
            for each in await nsp.fetch_sockets():
                if isinstance(each, RemoteSocket):
                    handshake = each.handshake if isinstance(each.handshake, Mapping) else {}
                    found.append(
                        serialize_socket(each.id, nsp.name, handshake, each.rooms, each.data)
                    )
                else:
                    found.append(self._serialize(each))
        return found

    # -- development mode: sockets, rooms, events -------------------------------------------------

    def _watch(self, nsp: Namespace) -> None:
        nsp.adapter.on("join-room", partial(self._joined, nsp))
        nsp.adapter.on("leave-room", partial(self._left, nsp))

    def _serialize(self, socket: Socket) -> dict[str, Any]:
        hs = socket.handshake
        handshake = {
            "headers": hs.headers,
            "query": hs.query,
            "address": hs.address,
            "time": hs.time,
            "issued": hs.issued,
            "secure": hs.secure,
            "url": hs.url,
            "xdomain": hs.xdomain,
        }
        client_id = socket.client.session.sid[:12]
        return serialize_socket(
            socket.id, socket.nsp.name, handshake, socket.rooms, socket.data, client_id,
            socket.transport,
        )  # fmt: skip

    def _joined(self, nsp: Namespace, room: str, sid: str) -> None:
        now = iso_date(time.time())
        if room != sid:
            self._send("room_joined", nsp.name, room, sid, now)
            return
        socket = nsp.sockets.get(sid)
        if socket is None:
            return
        transport = socket.transport
        if isinstance(socket.data, dict):
            socket.data[ADMIN_KEY] = {
                "clientId": socket.client.session.sid[:12],
                "transport": transport,
            }
        self._watched[(nsp.name, sid)] = (socket, transport, _dumped(socket.data))
        if self.nsp.sockets or not self._local_only:
            self._listen(nsp.name, sid, socket)
        self._send("socket_connected", self._serialize(socket), now)

    def _left(self, nsp: Namespace, room: str, sid: str) -> None:
        now = iso_date(time.time())
        watched = self._watched.get((nsp.name, sid))
        socket = watched[0] if watched is not None else None
        if room != sid or (socket is not None and socket.connected):
            self._send("room_left", nsp.name, room, sid, now)
            return
        self._watched.pop((nsp.name, sid), None)
        self._listening.pop((nsp.name, sid), None)  # (its listeners went with it)
        if nsp is self.nsp and self._local_only and not self.nsp.sockets:
            self._unlisten()  # the last admin left: nobody reads the events now
        reason = socket.disconnect_reason if socket is not None else None
        self._send("socket_disconnected", nsp.name, sid, reason or "unknown", now)

    def _listen(self, nsp_name: str, sid: str, socket: Socket) -> None:
        """Give ``socket`` its event listeners (not on the admin namespace), once."""
        key = (nsp_name, sid)
        if nsp_name == self.nsp.name or key in self._listening or not socket.connected:
            return
        received = partial(self._received, nsp_name, sid)
        sent = partial(self._sent, nsp_name, sid)
        socket.on_any(received)
        socket.on_any_outgoing(sent)
        self._listening[key] = (socket, received, sent)

    def _unlisten(self) -> None:
        """Take every event listener off again."""
        for socket, received, sent in self._listening.values():
            socket.off_any(received)
            socket.off_any_outgoing(sent)
        self._listening.clear()

    def _received(self, nsp: str, sid: str, event: str, *args: Any) -> None:
        if self.nsp.sockets or not self._local_only:  # (else nobody to tell)
            self._send("event_received", nsp, sid, [event, *args], iso_date(time.time()))

    def _sent(self, nsp: str, sid: str, event: str, *args: Any) -> None:
        if self.nsp.sockets or not self._local_only:
            self._send("event_sent", nsp, sid, [event, *args], iso_date(time.time()))

    def _updates(self) -> None:
        """``socket_updated`` for each watched socket whose transport or data changed."""
        for key, (socket, transport, data) in list(self._watched.items()):
            if not socket.connected:
                continue
            now_transport = socket.transport
            if now_transport != transport and isinstance(socket.data, dict):
                admin = socket.data.get(ADMIN_KEY)
                if isinstance(admin, dict):
                    admin["transport"] = now_transport
            now_data = _dumped(socket.data)
            if now_transport != transport:
                self._send(
                    "socket_updated", {"id": key[1], "nsp": key[0], "transport": now_transport}
                )
            if now_data != data and now_transport == transport:
                shown_data = serialize_socket(key[1], key[0], {}, (), socket.data)["data"]
                self._send("socket_updated", {"id": key[1], "nsp": key[0], "data": shown_data})
            self._watched[key] = (socket, now_transport, _dumped(socket.data))

    # -- commands ---------------------------------------------------------------------------------

    def _target(self, nsp_name: Any, where: Any) -> Any:
        nsp = self.server.namespaces.get(nsp_name) if isinstance(nsp_name, str) else None
        if nsp is None:
            return None
        if isinstance(where, str) and where:
            return nsp.to(where)
        if isinstance(where, list) and where and all(isinstance(r, str) for r in where):
            return nsp.to(where)
        return nsp

    def _command_emit(self, _admin: Socket, nsp: Any, where: Any, event: Any, *args: Any) -> None:
        target = self._target(nsp, where)
        if target is not None and isinstance(event, str):
            target.emit(event, *args)

    def _command_join(self, _admin: Socket, nsp: Any, room: Any, where: Any = None) -> None:
        target = self._target(nsp, where)
        if target is not None and isinstance(room, str):
            target.sockets_join(room)

    def _command_leave(self, _admin: Socket, nsp: Any, room: Any, where: Any = None) -> None:
        target = self._target(nsp, where)
        if target is not None and isinstance(room, str):
            target.sockets_leave(room)

    def _command_disconnect(
        self, _admin: Socket, nsp: Any, close: Any = False, where: Any = None
    ) -> None:
        target = self._target(nsp, where)
        if target is not None:
            logger.info("admin disconnects %s in %s", where or "every socket", shown(str(nsp)))
            target.disconnect_sockets(bool(close))

    # -- stats ------------------------------------------------------------------------------------

    def _read_counters(self) -> None:
        """Push what the Engine.IO counters moved by since the last read into the buffer."""
        counters: EngineCounters = self.server.eio.counters
        now = time.time()
        last = self._last
        for kind, name in _COUNTERS:
            value = getattr(counters, name)
            self.events.push(kind, now, None, value - last.get(name, value))
            last[name] = value
        opened = sum(counters.opened.values())
        self.events.push("rawConnection", now, None, opened - last.get("opened", opened))
        last["opened"] = opened
        for reason, value in list(counters.closed.items()):
            key = "closed:" + reason
            self.events.push("rawDisconnection", now, reason, value - last.get(key, value))
            last[key] = value

    def _stats(self, aggregated: list[dict[str, Any]]) -> dict[str, Any]:
        clients = self.server.clients
        return server_stats(
            server_id=self.server_id,
            hostname=self.hostname,
            pid=os.getpid(),
            uptime=time.monotonic() - self._started,
            clients=len(clients),
            polling_clients=sum(1 for c in clients.values() if str(c.transport) == "polling"),
            aggregated_events=aggregated,
            namespaces={name: len(nsp.sockets) for name, nsp in self.server.namespaces.items()},
        )

    def tick(self) -> None:
        """One stats interval: the counters read, ``socket_updated`` where something changed
        (development mode), ``server_stats`` sent."""
        self._read_counters()
        aggregated = self.events.drain()
        if self._local_only and not self.nsp.sockets:
            return  # nobody to tell (the counters were read: the next deltas start here)
        if self.development:
            self._updates()
        self._send("server_stats", self._stats(aggregated))

    async def run(self) -> None:
        """The stats task: :meth:`tick` every ``server_stats_interval`` seconds, until
        cancelled (``Server.run`` starts it in the server's nursery); a store holding a
        connection (``run``) is kept open beside it."""
        async with trio.open_nursery() as nursery:
            if hasattr(self.store, "run"):
                nursery.start_soon(self._run_store, name="admin session store")
            while True:
                await trio.sleep(self.interval)
                self.tick()

    async def _run_store(self) -> None:
        try:
            await self.store.run()  # type: ignore[attr-defined]  # (checked by the caller)
        except Exception as exc:  # (its save/exists fail from now on: password logins work)
            logger.warning("admin session store stopped: %s", _error(exc))


def basic_auth(username: str, password: str) -> dict[str, str]:
    """Node's ``{"type": "basic", "username", "password": <bcrypt hash>}`` for ``auth=``,
    hashing ``password`` now (what ``pyserver demo --admin-password`` does; needs
    ``pip install 'pyserver[admin]'``). Slow on purpose: call it once, at startup."""
    import bcrypt

    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()
    return {"type": "basic", "username": username, "password": hashed}


def _error(exc: BaseException) -> str:
    return shown(f"{type(exc).__name__}: {exc}")


def _dumped(data: Any) -> str:
    try:
        return json.dumps(data, sort_keys=True, default=repr)
    except (TypeError, ValueError):
        return ""

"""How a client joins namespaces: the admission half of
:class:`~pyserver.trio.socketio.client.Client` (a base class of it, kept apart so that
``client.py`` holds the packets' way in and out).

A CONNECT is admitted at once when the namespace exists and has no connection middleware
(the fast path: the reply and the socket's connection handler queued, its work returned to
the reader of the packet); otherwise in a task of the Server's nursery, counted against
``max_namespaces_per_client`` while it runs, in the connection's context: the middleware,
a dynamic namespace's check, a session restored through a cluster adapter. Connection state
recovery gives the socket its old id, rooms and data, and what it missed goes out before the
CONNECT reply, as the Node server sends it. A refused CONNECT gets CONNECT_ERROR, one log
line, and a recovered session goes back to the store for another try.

This module is part of the client: it names ``Socket`` and ``Namespace`` as the client does
(``tests/test_layout.py``'s allowed cycle).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any, cast

import trio

from pyserver.errors import ConnectionRefused
from pyserver.logtext import shown
from pyserver.socketio.legacy import LegacyProtocol, legacy_socket_id
from pyserver.socketio.packets import Sid
from pyserver.socketio.recovery import RecoveredSession
from pyserver.socketio.session import NamespaceConnectRequested, Session
from pyserver.trio.socketio.socket import Socket, call
from pyserver.trio.websocket.inline import Work, run_in

if TYPE_CHECKING:
    from pyserver.trio.engineio import EngineSession
    from pyserver.trio.socketio.client import Client
    from pyserver.trio.socketio.host import Host
    from pyserver.trio.socketio.namespace import Namespace

__all__ = ["TOO_MANY_NAMESPACES", "Admission", "peer"]

logger = logging.getLogger("pyserver.socketio")

TOO_MANY_NAMESPACES = "too many namespaces"


class Admission:
    """The namespace joins of a client (module docstring). Its state is the client's."""

    __slots__ = ("_capped", "_joining")

    server: Host[Namespace, Client]
    session: EngineSession
    core: Session
    sockets: dict[str, Socket]

    def __init__(self) -> None:
        self._joining = 0  # namespace connections being admitted (in a task)
        self._capped = False  # an over-cap CONNECT was logged

    def send_parts(self, parts: list[str | bytes]) -> None:
        """Send an encoded packet (``Client``)."""
        raise NotImplementedError

    def join_main(self) -> None:
        """A socket.io-client 2.x connection (Socket.IO v4) is joined to ``"/"`` by the
        server as soon as it opens (``LegacySession.join_main``), as any CONNECT."""
        core = self.core
        assert isinstance(core, LegacyProtocol)
        work = self._connect_requested(core.join_main())
        socket = self.sockets.get("/")
        if work is not None and socket is not None:
            socket._start(work)  # (no reader to run it: a task)

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
                peer(self.session),
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
                socket = Socket(nsp, cast("Client", self), restored.sid, auth)
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
                peer(self.session),
            )
        sid = (
            legacy_socket_id(nsp.name, self.session.sid)
            if isinstance(self.core, LegacyProtocol)  # (the id a 2.x client gives itself)
            else Sid(secrets.token_urlsafe(15))
        )
        socket = Socket(nsp, cast("Client", self), sid, auth)
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
            peer(self.session),
            extra={
                "sid": socket.id,
                "namespace": name,
                "eio_sid": self.session.sid,
                "remote": peer(self.session),
            },
        )
        return socket._connected()

    def _refuse(self, name: str, message: str, data: Any = None) -> None:
        if self.session.closed or self.core.state.value == "closed":
            return
        logger.info(
            "refused namespace %s (connection %s, peer %s): %s",
            shown(name),
            self.session.sid,
            peer(self.session),
            shown(message),
            extra={"namespace": name, "eio_sid": self.session.sid, "remote": peer(self.session)},
        )
        nsp = self.server.namespaces.get(name)
        if nsp is not None:
            nsp.counters.refused += 1
        self.session.send(self.core.refuse_namespace(name, message, data))


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


def peer(session: EngineSession) -> str:
    host, port = session.request.remote_address
    return f"{host}:{port}"

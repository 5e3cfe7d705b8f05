"""Fixtures for the multi-node tests: a real ``redis-server`` (``redis_server``, from
``helpers.redis_process``: one server per test module, on a free port, with no persistence; it
can be killed and restarted on the same port to test how the adapter recovers), the
application every node runs, and clients nobody here wrote to drive it.
"""

from __future__ import annotations

import os
import queue
import random
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.redis_process import redis_server

__all__ = ["redis_server"]  # a fixture, found by its name

# --------------------------------------------------------------------------------------------
# The application every cluster test runs on its nodes (in-process for the Node interop test,
# in processes of their own through ``pyserver cluster ... cluster.conftest:node_app``), and
# clients nobody here wrote (python-socketio's sync client) to drive it.
#
# Protocol, on "/":
#   connection      socket.data["node"] = the node's name; joins auth["room"] when given
#   whoami          acks {"node", "sid"}
#   shout           {room, event, data}: sio.to(room).emit(event, data) (every socket of the
#                   namespace, on every node, without a room); acks "ok"
#   fetch           room: acks the sorted ids of await sio.in_(room).fetch_sockets()
#   fetch-nodes     room: acks the sorted [id, data["node"]] pairs of the same
#   ask-room        {room, event, data, timeout}: await sio.to(room).timeout(t).emit_with_ack,
#                   acks {"replies": [...]} or {"error": "<exception type>"}
#   server-ask      {event, args, timeout}: server_side_emit_with_ack to the other nodes,
#                   acks {"replies": [...]} or {"error": ..., "replies": [...]}
#   server-tell     {event, args}: server_side_emit to the other nodes; acks "ok"
#   server event "whoami-node" (from another node): replies {"node": name}
#   server event "note" (from another node): emits "noted" {"node", "args"} to every local
#                   socket (sio.local.emit), so a client sees that this node heard it
# A client answers the event "ask" with {"client": its name, "args": [...]} (Peer below).

NODE_APP_ACK_TIMEOUT = 5.0


def build_node_server(redis_url: str, node: str, **options: Any) -> Any:
    """Our Server with the RedisAdapter and the protocol above."""
    from pyserver import Server
    from pyserver.trio.redis.adapter import RedisAdapter

    sio = Server(
        adapter=RedisAdapter(redis_url, requests_timeout=NODE_APP_ACK_TIMEOUT),
        cors_allowed_origins="*",
        **options,
    )
    main = sio.main

    @sio.on("connection")
    async def connection(socket: Any) -> None:
        socket.data["node"] = node
        auth = socket.handshake.auth
        if isinstance(auth, dict) and isinstance(auth.get("room"), str):
            socket.join(auth["room"])

    @sio.on("whoami")
    async def whoami(socket: Any, *_: Any) -> Any:
        return {"node": node, "sid": socket.id}

    @sio.on("shout")
    async def shout(socket: Any, msg: dict[str, Any]) -> Any:
        target = sio.to(msg["room"]) if msg.get("room") else main
        target.emit(msg["event"], msg.get("data"))
        return "ok"

    @sio.on("fetch")
    async def fetch(socket: Any, room: str | None = None) -> Any:
        found = await (sio.in_(room) if room else main).fetch_sockets()
        return sorted(s.id for s in found)

    @sio.on("fetch-nodes")
    async def fetch_nodes(socket: Any, room: str | None = None) -> Any:
        found = await (sio.in_(room) if room else main).fetch_sockets()
        return sorted([s.id, (s.data or {}).get("node")] for s in found)

    @sio.on("ask-room")
    async def ask_room(socket: Any, msg: dict[str, Any]) -> Any:
        op = sio.to(msg["room"]).timeout(float(msg.get("timeout", NODE_APP_ACK_TIMEOUT)))
        try:
            replies = await op.emit_with_ack(msg["event"], msg.get("data"))
        except Exception as exc:
            return {"error": type(exc).__name__, "replies": list(getattr(exc, "replies", []))}
        return {"replies": replies}

    @sio.on("server-ask")
    async def server_ask(socket: Any, msg: dict[str, Any]) -> Any:
        try:
            replies = await main.server_side_emit_with_ack(
                msg["event"], *msg.get("args", []), timeout=msg.get("timeout")
            )
        except Exception as exc:
            return {"error": type(exc).__name__, "replies": list(getattr(exc, "replies", []))}
        return {"replies": replies}

    @sio.on("server-tell")
    async def server_tell(socket: Any, msg: dict[str, Any]) -> Any:
        main.server_side_emit(msg["event"], *msg.get("args", []))
        return "ok"

    @main.on_server_event("whoami-node")
    def whoami_node(*args: Any) -> Any:
        return {"node": node, "args": list(args)}

    @main.on_server_event("note")
    def note(*args: Any) -> None:
        sio.local.emit("noted", {"node": node, "args": list(args)})

    return sio


class NodeApp:
    """``pyserver run cluster.conftest:node_app`` (what ``pyserver cluster`` starts): builds
    the Server from ``$PYSERVER_REDIS_URL`` and ``$PYSERVER_NODE`` when it is served."""

    async def serve(self, host: str, port: int, **kw: Any) -> None:
        redis_url = os.environ["PYSERVER_REDIS_URL"]
        node = os.environ.get("PYSERVER_NODE", "0")
        sio = build_node_server(redis_url, node, ping_interval=5.0, ping_timeout=5.0)
        await sio.serve(host, port, **kw)


node_app = NodeApp()
TESTS_DIR = Path(__file__).resolve().parent.parent
NODE_APP = "cluster.conftest:node_app"


def node_env() -> dict[str, str]:
    """The environment for processes that load ``NODE_APP`` (tests/ on the import path)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS_DIR), env.get("PYTHONPATH")) if p)
    return env


def free_port_block(n: int, host: str = "127.0.0.1") -> int:
    """A base port B such that B..B+n-1 are free right now (chosen at random)."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 60000 - n)
        ok = True
        for port in range(base, base + n):
            with socket.socket() as s:
                try:
                    s.bind((host, port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError(f"no block of {n} free ports found")


WAIT = 10.0


class Peer:
    """python-socketio's sync client: ``events`` gets every event; answers "ask".

    ``source``: a loopback address to connect from (any of 127.0.0.0/8 on Linux), so that a
    load balancer hashing client addresses (nginx's ip_hash) sees distinct clients. Both
    transports use it: long-polling through a requests session bound to it, WebSocket
    through a socket bound to it (made in :meth:`connect`)."""

    def __init__(self, name: str, source: str | None = None) -> None:
        import socketio

        self.name = name
        self.source = source
        self._ws_socket: socket.socket | None = None
        options: dict[str, Any] = {}
        if source is not None:
            options["http_session"] = _session_from(source)
        self.client = socketio.Client(reconnection=False, **options)
        self.events: queue.Queue[tuple[str, tuple[Any, ...]]] = queue.Queue()
        self.client.on("*", self._on_any)

    def _on_any(self, event: str, *args: Any) -> Any:
        self.events.put((event, args))
        if event == "ask":
            return {"client": self.name, "args": list(args)}
        return None

    def connect(
        self,
        url: str,
        *,
        room: str | None = None,
        transport: str = "websocket",
        headers: dict[str, str] | None = None,
        wait_timeout: float = WAIT,
    ) -> Peer:
        if self.source is not None and transport != "polling":
            host, _, port = url.split("://", 1)[1].partition(":")
            self._ws_socket = socket.create_connection(
                (host, int(port.split("/")[0])), timeout=WAIT, source_address=(self.source, 0)
            )
            self.client.eio.websocket_extra_options["socket"] = self._ws_socket
        self.client.connect(
            url,
            transports=["polling", "websocket"] if transport == "both" else [transport],
            auth={"room": room} if room else None,
            headers=headers or {},
            wait_timeout=wait_timeout,
        )
        return self

    @property
    def sid(self) -> str:
        sid = self.client.get_sid("/")
        assert sid is not None
        return sid

    def call(self, event: str, data: Any = None, timeout: float = WAIT) -> Any:
        return self.client.call(event, data, timeout=timeout)

    def wait_event(self, name: str, timeout: float = WAIT) -> tuple[Any, ...]:
        """The arguments of the next ``name`` event (others are skipped); fails after
        ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.name}: no {name!r} event within {timeout}s")
            try:
                event, args = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if event == name:
                return args

    def close(self) -> None:
        try:
            self.client.disconnect()
        except Exception:
            pass
        if self._ws_socket is not None:
            self._ws_socket.close()


def _session_from(source: str) -> Any:
    """A requests session whose connections leave from ``source``."""
    import requests
    from requests.adapters import HTTPAdapter

    class SourceAdapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            kwargs["source_address"] = (source, 0)
            super().init_poolmanager(*args, **kwargs)

    session = requests.Session()
    session.mount("http://", SourceAdapter())
    return session


@pytest.fixture
def peers() -> Iterator[Callable[..., Peer]]:
    """``peers(name, source=None)``: a new Peer, disconnected at the end of the test."""
    made: list[Peer] = []

    def make(name: str, source: str | None = None) -> Peer:
        peer = Peer(name, source)
        made.append(peer)
        return peer

    yield make
    for peer in made:
        peer.close()

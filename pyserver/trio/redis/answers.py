"""What a node does with the requests other nodes publish (``<key>-request#<nsp>#``).

Each request is applied to this node's sockets only (the requester handles its own) and
answered as Node's ``@socket.io/redis-adapter`` 8.x answers it, on the shared response
channel:

* REMOTE_JOIN / REMOTE_LEAVE / REMOTE_DISCONNECT with ``opts``: applied, no answer. The
  legacy form with a ``sid``: applied by the node that owns the socket, answered
  ``{"requestId"}``.
* REMOTE_FETCH: ``{"requestId", "sockets": [{id, handshake, rooms, data}]}`` (also empty);
  ALL_ROOMS: ``{"requestId", "rooms"}``; SOCKETS: ``{"requestId", "sockets": [sid, ...]}``.
* SERVER_SIDE_EMIT: the namespace's ``on_server_event`` handler runs in a task (at most
  ``max_handler_tasks`` at once); with a ``requestId`` its return value is answered once,
  ``{"type": 6, "requestId", "data"}`` (an exception: ``{"error": "internal server
  error"}``).
* BROADCAST (7, a broadcast with acks): every local socket it selects is asked with an ack id
  of ours; the answer is one JSON ``{"type": 8, "requestId", "clientCount"}`` (0 too) and
  then one msgpack ``{"type": 9, "requestId", "packet": <first ack argument>}`` per reply.

Our own answers carry ``"uid"`` as well (Node ignores it; see the stale-node rule in
:mod:`pyserver.trio.redis.adapter`).

The functions take the namespace's adapter as an :class:`Answering` (what answering needs of
a :class:`~pyserver.trio.redis.remote.RedisNamespaceAdapter`), so this module does not
import ``remote.py``, which imports it. Membership requests are applied with the adapter's
own ``add_sockets``/``del_sockets``/``disconnect_sockets``: their options are local, so
nothing is published again.

:class:`HandlerBudget` bounds the server-side handler tasks of every cluster adapter (this
one's node and the streams and sharded adapters' nodes).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol

from pyserver.logtext import shown
from pyserver.redis import codec
from pyserver.redis.codec import RequestType
from pyserver.socketio.packets import ProtocolError, Sid, encode_event
from pyserver.trio.socketio.adapter import AdapterNamespace, BroadcastOptions, LocalSocket
from pyserver.trio.socketio.socket import ERROR_ACK, call

__all__ = ["Answering", "AnsweringNode", "HandlerBudget", "answer", "options"]


class HandlerBudget:
    """The server-side handler tasks a node runs for other nodes' events: at most ``max``
    at once (``max_handler_tasks``), so a flood of requests cannot start tasks unbounded."""

    __slots__ = ("count", "max")

    def __init__(self, max_tasks: int) -> None:
        self.max = max_tasks
        self.count = 0

    def spawn(self, nsp: AdapterNamespace, fn: Callable[[], Awaitable[Any]]) -> bool:
        """Run ``fn()`` in the server's nursery; False (nothing run) at the bound or when
        the server is not running."""
        if self.count >= self.max:
            return False
        self.count += 1

        async def run() -> None:
            try:
                await fn()
            finally:
                self.count -= 1

        if not nsp.server.spawn(run, f"server-side event in {nsp.name}"):
            self.count -= 1
            return False
        return True


class AnsweringNode(Protocol):
    """What answering needs of the node (the :class:`~pyserver.trio.redis.RedisAdapter`)."""

    @property
    def requests_timeout(self) -> float: ...

    @property
    def handlers(self) -> HandlerBudget:
        """The server-side handler tasks (bounded)."""
        ...


class Answering(Protocol):
    """What answering another node's request needs of this node's namespace adapter."""

    @property
    def uid(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def nsp(self) -> AdapterNamespace | None: ...

    @property
    def node(self) -> AnsweringNode: ...

    @property
    def sockets(self) -> dict[Sid, LocalSocket]: ...

    def sids(self, opts: BroadcastOptions) -> set[Sid]: ...

    def room_sizes(self) -> dict[str, int]: ...

    def respond(self, message: dict[str, Any], msgpack: bool = False) -> None: ...

    def add_sockets(self, opts: BroadcastOptions, rooms: Iterable[str]) -> None: ...

    def del_sockets(self, opts: BroadcastOptions, rooms: Iterable[str]) -> None: ...

    def disconnect_sockets(self, opts: BroadcastOptions, close: bool) -> None: ...

    def local_broadcast_with_ack(
        self,
        event: str,
        args: Sequence[Any],
        opts: BroadcastOptions,
        on_count: Callable[[int], None],
        on_reply: Callable[[Any], None],
        on_gone: Callable[[], None],
    ) -> None: ...


logger = logging.getLogger("pyserver.redis")

_MEMBERSHIP = (RequestType.REMOTE_JOIN, RequestType.REMOTE_LEAVE, RequestType.REMOTE_DISCONNECT)


def answer(adapter: Answering, payload: bytes) -> None:
    """Handle one request (raises :class:`~pyserver.redis.codec.CodecError` if malformed)."""
    message = codec.decode(payload)
    if not isinstance(message, dict):
        raise codec.CodecError("a request is a map")
    if message.get("uid") == adapter.uid:
        return  # our own, already applied here
    kind = message.get("type")
    rid = message.get("requestId")
    if kind == RequestType.BROADCAST:
        _broadcast_with_ack(adapter, message, rid)
    elif kind == RequestType.SERVER_SIDE_EMIT:
        _server_side_event(adapter, message, rid)
    elif kind in _MEMBERSHIP:
        _membership(adapter, message, kind, rid)
    elif kind == RequestType.REMOTE_FETCH:
        opts = options(message.get("opts"))
        found = [s for sid in adapter.sids(opts) if (s := adapter.sockets.get(sid)) is not None]
        adapter.respond({"requestId": rid, "sockets": [describe(s) for s in found]})
    elif kind == RequestType.ALL_ROOMS:
        adapter.respond({"requestId": rid, "rooms": list(adapter.room_sizes())})
    elif kind == RequestType.SOCKETS:
        opts = BroadcastOptions(rooms=codec.rooms_of(message.get("rooms")))
        adapter.respond({"requestId": rid, "sockets": sorted(adapter.sids(opts))})


def options(opts: Any, timeout: float | None = None) -> BroadcastOptions:
    """``{rooms, except, flags}`` as local-only broadcast options."""
    if not isinstance(opts, dict):
        opts = {}
    flags = opts.get("flags")
    if not isinstance(flags, dict):
        flags = {}
    return BroadcastOptions(
        rooms=codec.rooms_of(opts.get("rooms")),
        except_rooms=codec.rooms_of(opts.get("except")),
        volatile=bool(flags.get("volatile")),
        compress=flags.get("compress") is not False,
        local=True,
        timeout=timeout,
    )


def _membership(adapter: Answering, message: dict[str, Any], kind: int, rid: Any) -> None:
    if "opts" in message:
        opts = options(message["opts"])  # local: applied here, not published again
        if kind == RequestType.REMOTE_DISCONNECT:
            adapter.disconnect_sockets(opts, message.get("close") is True)
        else:
            rooms = codec.rooms_of(message.get("rooms"))
            if kind == RequestType.REMOTE_JOIN:
                adapter.add_sockets(opts, rooms)
            else:
                adapter.del_sockets(opts, rooms)
        return
    # the legacy form: one socket by id, answered by its owner
    socket = adapter.sockets.get(Sid(str(message.get("sid"))))
    if socket is None:
        return
    room = codec.room_name(message.get("room"))
    if kind == RequestType.REMOTE_DISCONNECT:
        socket.disconnect(message.get("close") is True)
    elif room is not None and kind == RequestType.REMOTE_JOIN:
        socket.join(room)
    elif room is not None:
        socket.leave(room)
    adapter.respond({"requestId": rid})


def _server_side_event(adapter: Answering, message: dict[str, Any], rid: Any) -> None:
    data = message.get("data")
    if not isinstance(data, list) or not data or not isinstance(data[0], str):
        raise codec.CodecError("a server-side emit carries [event, ...]")
    nsp = adapter.nsp
    handler = nsp.server_handlers.get(data[0]) if nsp is not None else None
    if handler is None or nsp is None:
        return
    respond = adapter.respond if isinstance(rid, str) else None

    async def run() -> None:
        try:
            reply = await call(handler, *data[1:])
        except Exception:
            logger.exception(
                "server-side handler for %s failed in %s", shown(data[0]), shown(adapter.name)
            )
            reply = dict(ERROR_ACK)
        if respond is not None:
            respond({"type": RequestType.SERVER_SIDE_EMIT, "requestId": rid, "data": reply})

    if not adapter.node.handlers.spawn(nsp, run):
        logger.warning("server-side event %s dropped: too many handlers running", shown(data[0]))


def _broadcast_with_ack(adapter: Answering, message: dict[str, Any], rid: Any) -> None:
    if not isinstance(rid, str):
        raise codec.CodecError("a broadcast with acks needs a requestId")
    _, data = codec.packet_data(message.get("packet"))
    data = codec.for_client(data)
    raw_opts = message.get("opts")
    flags = raw_opts.get("flags") if isinstance(raw_opts, dict) else None
    timeout = flags.get("timeout") if isinstance(flags, dict) else None
    if not isinstance(timeout, int | float) or timeout <= 0:
        timeout = adapter.node.requests_timeout * 1000  # never an ack waited for forever
    opts = options(raw_opts, timeout / 1000)
    respond = adapter.respond

    def on_count(count: int) -> None:
        respond(
            {"type": RequestType.BROADCAST_CLIENT_COUNT, "requestId": rid, "clientCount": count}
        )

    def on_reply(reply: Any) -> None:
        first = reply[0] if type(reply) is tuple and reply else reply
        respond(
            {"type": RequestType.BROADCAST_ACK, "requestId": rid, "packet": first}, msgpack=True
        )

    try:
        encode_event(adapter.name, data[0], data[1:])  # refuse what clients cannot get
    except ProtocolError:
        on_count(0)
        return
    adapter.local_broadcast_with_ack(data[0], data[1:], opts, on_count, on_reply, _nothing)


def _nothing() -> None:
    pass


def describe(socket: LocalSocket) -> dict[str, Any]:
    """``{id, handshake, rooms, data}`` as Node's ``fetchSockets`` answers (``data`` that
    JSON cannot carry is sent as null)."""
    hs = socket.handshake
    data: Any = socket.data
    try:
        codec.encode_json(data)
    except TypeError:
        data = None
    return {
        "id": socket.id,
        "handshake": {
            "headers": hs.headers,
            "time": hs.time,
            "address": hs.address,
            "xdomain": hs.xdomain,
            "secure": hs.secure,
            "issued": hs.issued,
            "url": hs.url,
            "query": hs.query,
            "auth": hs.auth,
        },
        "rooms": sorted(socket.rooms),
        "data": data,
    }

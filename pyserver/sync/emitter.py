"""``Emitter``: emit to the clients of a cluster from any Python process (a job queue
worker, a cron job, a Django or Flask view), with no Trio and no event loop.

::

    from pyserver import Emitter

    emitter = Emitter("redis://127.0.0.1:6379/0")
    emitter.to("room").emit("event", {"some": "data"})
    emitter.of("/admin").except_("muted").volatile.emit("tick", 1)
    emitter.sockets_join("newcomers")  # every socket of "/" joins
    emitter.to("r").disconnect_sockets(close=True)
    emitter.server_side_emit("reload", "config")  # the servers' on_server_event handlers

It writes what Node's ``@socket.io/redis-emitter`` 5 writes (servers on ``RedisAdapter`` or
Node's ``@socket.io/redis-adapter``), or with ``stream=...`` what
``@socket.io/redis-streams-emitter`` writes (servers on ``RedisStreamsAdapter`` or Node's
streams adapter); the bytes come from :mod:`pyserver.redis.emitter`. Every call is one
blocking round trip to Redis on one connection per emitter (shared by the emitters that
``to``, ``of`` and the other chaining methods make from it; thread-safe), and raises
:class:`~pyserver.sync.redis.RedisError` when Redis cannot be reached (a command whose reply
was lost with its connection is sent once more, so it may then arrive twice). There are no
acknowledgements: an emitter is no member of the cluster and gets no answers. For asyncio
programs, :class:`~pyserver.sync.aio.AsyncEmitter` is the same with ``await``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any, Self

from pyserver.redis.emitter import Classic, Streams, Target
from pyserver.sync.redis import RedisConnection, RedisError

__all__ = ["Chain", "Emitter", "RedisError", "wire"]


def _names(rooms: str | Iterable[str]) -> tuple[str, ...]:
    return (rooms,) if isinstance(rooms, str) else tuple(rooms)


class Chain:
    """The chaining half of an emitter (rooms, exceptions, flags, namespace), shared by
    :class:`Emitter` and :class:`~pyserver.sync.aio.AsyncEmitter`: each method returns a new
    emitter on the same connection."""

    __slots__ = ("_conn", "_target", "_wire")

    _conn: Any
    _target: Target
    _wire: Classic | Streams

    def _with(self, target: Target) -> Self:
        other = object.__new__(type(self))
        other._conn = self._conn
        other._wire = self._wire
        other._target = target
        return other

    def of(self, nsp: str) -> Self:
        """The namespace ``nsp`` ("/" is added in front when missing, as Node does)."""
        return self._with(Target(nsp if nsp.startswith("/") else "/" + nsp))

    def to(self, room: str | Iterable[str]) -> Self:
        """Also to ``room`` (one name or several): the union of the rooms."""
        t = self._target
        return self._with(replace(t, rooms=tuple(dict.fromkeys(t.rooms + _names(room)))))

    in_ = to

    def except_(self, room: str | Iterable[str]) -> Self:
        """Leave out the sockets in ``room``."""
        t = self._target
        names = tuple(dict.fromkeys(t.except_rooms + _names(room)))
        return self._with(replace(t, except_rooms=names))

    @property
    def volatile(self) -> Self:
        """Dropped for clients that are not ready for it (see ``Server.volatile``)."""
        return self._with(replace(self._target, flags={**self._target.flags, "volatile": True}))

    def compress(self, compress: bool) -> Self:
        return self._with(replace(self._target, flags={**self._target.flags, "compress": compress}))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._conn.url} {self._target}>"


def wire(key: str, stream: str | None, max_len: int, channel_prefix: str) -> Classic | Streams:
    """The commands' builder for these options."""
    return Classic(key) if stream is None else Streams(stream, max_len, channel_prefix)


class Emitter(Chain):
    """See the module docstring. ``key``: the classic adapter's channel prefix; ``stream``
    (with ``max_len`` and ``channel_prefix``): write for the streams adapter instead."""

    __slots__ = ()

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        key: str = "socket.io",
        stream: str | None = None,
        max_len: int = 10_000,
        channel_prefix: str = "socket.io",
        timeout: float = 5.0,
    ) -> None:
        self._conn = RedisConnection(url, timeout=timeout)
        self._wire = wire(key, stream, max_len, channel_prefix)
        self._target = Target()

    # -- acting ------------------------------------------------------------------------------

    def emit(self, event: str, *args: Any) -> None:
        """Send ``event(*args)`` to the selected clients of every node."""
        self._conn.execute(self._wire.emit(self._target, event, args))

    def send(self, *args: Any) -> None:
        self.emit("message", *args)

    def sockets_join(self, rooms: str | Iterable[str]) -> None:
        """Make the selected sockets (on every node) join ``rooms``."""
        self._conn.execute(self._wire.sockets_join(self._target, rooms))

    def sockets_leave(self, rooms: str | Iterable[str]) -> None:
        self._conn.execute(self._wire.sockets_leave(self._target, rooms))

    def disconnect_sockets(self, close: bool = False) -> None:
        """Disconnect the selected sockets (``close``: their whole connection)."""
        self._conn.execute(self._wire.disconnect_sockets(self._target, close))

    def server_side_emit(self, event: str, *args: Any) -> None:
        """The servers' ``on_server_event(event)`` handlers get ``*args`` (no answers)."""
        self._conn.execute(self._wire.server_side_emit(self._target, event, args))

    def close(self) -> None:
        """Close the connection (shared with the emitters made from this one)."""
        self._conn.close()

    def __enter__(self) -> Emitter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

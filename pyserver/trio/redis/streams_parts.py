"""The parts of the streams adapter that its node (:mod:`pyserver.trio.redis.streams`) and
its namespace adapters (:mod:`pyserver.trio.redis.streams_namespace`) share, written as
protocols where one needs the other, so neither module imports the one that imports it:
:class:`StreamsNode` (the node, as a namespace adapter sees it), :class:`NamespaceRef` (a
namespace adapter, as the node sees it), :class:`StreamSessions` (the namespace's recovery
store), :class:`Restored` (a session restored from the stream). A request waiting for the other
nodes is :class:`pyserver.trio.redis.requesting.Pending`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pyserver.redis.streams import ClusterMessage
from pyserver.socketio.packets import Sid
from pyserver.socketio.recovery import RecoveredSession, RecoveryStore, StateRecovery
from pyserver.trio.redis.answers import HandlerBudget
from pyserver.trio.redis.requesting import RequestingNode

__all__ = ["NamespaceRef", "Restored", "SessionSaver", "StreamSessions", "StreamsNode"]


class SessionSaver(Protocol):
    """Where :class:`StreamSessions` saves a session (the namespace adapter)."""

    def save_session(
        self, sid: Sid, pid: str, rooms: Iterable[str], data: Any, leaving: bool = False
    ) -> None: ...


class NamespaceRef(Protocol):
    """A namespace adapter as its node needs it."""

    @property
    def name(self) -> str: ...

    @property
    def public(self) -> str: ...

    @property
    def private(self) -> str: ...

    def session_of(self, sid: Sid) -> tuple[str, bytes] | None: ...


@dataclass(frozen=True, slots=True)
class Restored(RecoveredSession):
    """A session restored from the stream: ``ids`` are the entry ids of ``missed``, ``upto``
    the last entry ``XRANGE`` read (what was in the stream then)."""

    ids: tuple[tuple[int, int], ...] = ()
    upto: tuple[int, int] = (0, 0)


class StreamSessions(RecoveryStore):
    """The namespace's recovery store when the stream keeps the packets and Redis the
    sessions: offsets are given on delivery (``stamp`` adds none, ``keep`` keeps nothing),
    ``persist`` and ``put_back`` save the session to Redis, ``restore`` finds nothing here
    (the adapter's ``restore_session`` does it, on any node)."""

    __slots__ = ("adapter",)

    def __init__(self, config: StateRecovery, adapter: SessionSaver) -> None:
        super().__init__(config, "")
        self.adapter = adapter

    def stamp(self, args: Sequence[Any]) -> list[Any]:
        return list(args)

    def keep(
        self,
        parts: list[str | bytes],
        rooms: frozenset[str],
        except_rooms: frozenset[str],
        now: float,
    ) -> None:
        pass

    def persist(self, sid: Sid, pid: str, rooms: frozenset[str], data: Any, now: float) -> None:
        self.adapter.save_session(sid, pid, rooms, data, leaving=True)

    def restore(self, pid: str, offset: str, now: float) -> RecoveredSession | None:
        return None

    def put_back(self, session: RecoveredSession) -> None:
        self.adapter.save_session(session.sid, session.pid, session.rooms, session.data)


class StreamsNode(RequestingNode, Protocol):
    """What a namespace adapter needs of its node (the
    :class:`~pyserver.trio.redis.streams.RedisStreamsAdapter`)."""

    @property
    def channel_prefix(self) -> str: ...

    @property
    def position(self) -> tuple[int, int]:
        """The id of the last stream entry the reader handled."""
        ...

    def send(self, message: ClusterMessage, room: str | None) -> None: ...

    def publish_message(self, channel: str, message: ClusterMessage) -> None: ...

    def save_session(self, pid: str, value: bytes) -> None: ...

    def forget_session(self, pid: str) -> None: ...

    def session_changed(self, adapter: NamespaceRef, sid: Sid) -> None: ...

    async def take_session(
        self, pid: str, offset: str, limit: int
    ) -> tuple[bytes | None, list[tuple[str, ClusterMessage]] | None]: ...

    def recent_after(
        self, upto: tuple[int, int]
    ) -> Iterator[tuple[tuple[int, int], str, ClusterMessage]]: ...

    async def remote_count(self, adapter: NamespaceRef) -> int: ...

    def new_id(self) -> str: ...

    @property
    def handlers(self) -> HandlerBudget: ...

    def forget(self, adapter: NamespaceRef) -> None: ...

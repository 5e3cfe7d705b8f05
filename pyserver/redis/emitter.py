"""What an emitter writes to Redis, sans-IO: the commands (each a tuple of words) that Node's
``@socket.io/redis-emitter`` 5 publishes for the classic adapter, and those of
``@socket.io/redis-streams-emitter`` for the streams adapter, byte for byte. The blocking
client that sends them is :mod:`pyserver.sync.emitter`.

Classic (``key``, default ``"socket.io"``):

* ``emit``: ``PUBLISH <key>#<nsp>#[<room>#] <msgpack [uid "emitter", {type: 2, data, nsp},
  {rooms, flags, except}]>``; the room is in the channel only with exactly one room.
* ``sockets_join`` / ``sockets_leave`` / ``disconnect_sockets`` / ``server_side_emit``:
  ``PUBLISH <key>-request#<nsp># <JSON>`` (types 2, 3, 4 and 6 of the classic protocol; only
  ``server_side_emit`` carries ``"uid": "emitter"``, as Node writes them).

Streams (``stream``, ``max_len``, ``channel_prefix``): broadcasts and room operations are
stream entries (``XADD <stream> MAXLEN ~ <max_len> * uid emitter nsp <nsp> type <t> data
<d>``), ``server_side_emit`` a msgpack cluster message on ``<prefix>#<nsp>#``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from pyserver.redis.codec import encode_json, encode_msgpack
from pyserver.redis.streams import (
    ClusterMessage,
    MessageType,
    channel,
    encode_message,
    entry_fields,
)

__all__ = ["RESERVED_EVENTS", "UID", "Classic", "Streams", "Target"]

UID: Final = "emitter"
RESERVED_EVENTS: Final = frozenset(
    {"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"}
)

Command = tuple[bytes | str | int, ...]


@dataclass(frozen=True)
class Target:
    """Who an emit goes to: namespace, rooms, rooms excepted, flags (``volatile``,
    ``compress``)."""

    nsp: str = "/"
    rooms: tuple[str, ...] = ()
    except_rooms: tuple[str, ...] = ()
    flags: Mapping[str, Any] = field(default_factory=dict)

    def opts(self) -> dict[str, Any]:
        return {"rooms": list(self.rooms), "except": list(self.except_rooms)}


def _rooms(rooms: str | Iterable[str]) -> list[str]:
    return [rooms] if isinstance(rooms, str) else list(rooms)


def _checked(event: str) -> None:
    if event in RESERVED_EVENTS:
        raise ValueError(f'"{event}" is a reserved event name')


@dataclass(frozen=True)
class Classic:
    """Commands for servers on the classic ``RedisAdapter`` (or Node's redis adapter)."""

    key: str = "socket.io"

    def emit(self, target: Target, event: str, args: Iterable[Any]) -> Command:
        _checked(event)
        packet = {"type": 2, "data": [event, *args], "nsp": target.nsp}
        opts = {
            "rooms": list(target.rooms),
            "flags": dict(target.flags),
            "except": list(target.except_rooms),
        }
        name = f"{self.key}#{target.nsp}#"
        if len(target.rooms) == 1:
            name += f"{target.rooms[0]}#"
        return ("PUBLISH", name, encode_msgpack([UID, packet, opts]))

    def _request(self, target: Target, message: dict[str, Any]) -> Command:
        return ("PUBLISH", f"{self.key}-request#{target.nsp}#", encode_json(message))

    def sockets_join(self, target: Target, rooms: str | Iterable[str]) -> Command:
        return self._request(target, {"type": 2, "opts": target.opts(), "rooms": _rooms(rooms)})

    def sockets_leave(self, target: Target, rooms: str | Iterable[str]) -> Command:
        return self._request(target, {"type": 3, "opts": target.opts(), "rooms": _rooms(rooms)})

    def disconnect_sockets(self, target: Target, close: bool) -> Command:
        return self._request(target, {"type": 4, "opts": target.opts(), "close": close})

    def server_side_emit(self, target: Target, event: str, args: Iterable[Any]) -> Command:
        return self._request(target, {"uid": UID, "type": 6, "data": [event, *args]})


@dataclass(frozen=True)
class Streams:
    """Commands for servers on ``RedisStreamsAdapter`` (or Node's streams adapter)."""

    stream: str = "socket.io"
    max_len: int = 10_000
    channel_prefix: str = "socket.io"

    def _xadd(self, target: Target, kind: MessageType, data: Any) -> Command:
        fields = entry_fields(ClusterMessage(UID, target.nsp, kind, data))
        return ("XADD", self.stream, "MAXLEN", "~", self.max_len, "*", *fields)

    def _opts(self, target: Target) -> dict[str, Any]:
        return {**target.opts(), "flags": dict(target.flags)}

    def emit(self, target: Target, event: str, args: Iterable[Any]) -> Command:
        _checked(event)
        packet = {"type": 2, "data": [event, *args], "nsp": target.nsp}
        return self._xadd(
            target, MessageType.BROADCAST, {"packet": packet, "opts": self._opts(target)}
        )

    def sockets_join(self, target: Target, rooms: str | Iterable[str]) -> Command:
        data = {"opts": self._opts(target), "rooms": _rooms(rooms)}
        return self._xadd(target, MessageType.SOCKETS_JOIN, data)

    def sockets_leave(self, target: Target, rooms: str | Iterable[str]) -> Command:
        data = {"opts": self._opts(target), "rooms": _rooms(rooms)}
        return self._xadd(target, MessageType.SOCKETS_LEAVE, data)

    def disconnect_sockets(self, target: Target, close: bool) -> Command:
        data = {"opts": self._opts(target), "close": close}
        return self._xadd(target, MessageType.DISCONNECT_SOCKETS, data)

    def server_side_emit(self, target: Target, event: str, args: Iterable[Any]) -> Command:
        message = ClusterMessage(
            UID, target.nsp, MessageType.SERVER_SIDE_EMIT, {"packet": [event, *args]}
        )
        return ("PUBLISH", channel(self.channel_prefix, target.nsp), encode_message(message))

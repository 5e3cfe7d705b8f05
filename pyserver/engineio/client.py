"""The client side of Engine.IO v4, sans-IO: the handshake's answer, request targets and the
heartbeat watch (no clock: every method that needs the time takes ``now``).

Rules (engine.io-protocol v4, and what engine.io-client 6 does):

* The first packet of a session is OPEN with a JSON object: ``sid`` (a non-empty string),
  ``upgrades`` (a list of transport names), ``pingInterval`` and ``pingTimeout`` (milliseconds,
  positive integers) and ``maxPayload`` (bytes, the most one polling POST may carry). Anything
  else is a :class:`~pyserver.engineio.packets.PacketError` (the server is not speaking
  Engine.IO v4).
* Requests go to ``<path>?EIO=4&transport=<polling|websocket>[&sid=<sid>]`` plus the
  application's query parameters (which never override these three).
* The server pings; the client answers each PING with a PONG. If no PING arrives within
  ``pingInterval + pingTimeout`` of the open or of the previous PING, the connection is dead:
  "ping timeout" (the deadline :class:`Heartbeat` keeps).
* Upgrade: over the new WebSocket the client sends ``2probe``, waits for ``3probe``, lets the
  polling requests in flight end, then sends ``5`` (UPGRADE); from then on only the WebSocket
  is used (:data:`PROBE`, :data:`PROBE_ANSWER`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlencode

from pyserver.engineio.packets import Packet, PacketError, PacketType

__all__ = ["PROBE", "PROBE_ANSWER", "Heartbeat", "OpenInfo", "engine_target", "parse_open"]

PROBE: Final = "2probe"
"""The upgrade probe the client sends over the new WebSocket (a PING with ``probe``)."""
PROBE_ANSWER: Final = "3probe"
"""The server's answer to :data:`PROBE` (a PONG with ``probe``)."""


@dataclass(frozen=True, slots=True)
class OpenInfo:
    """What the server's OPEN packet said; times in seconds."""

    sid: str
    upgrades: tuple[str, ...]
    ping_interval: float
    ping_timeout: float
    max_payload: int


def _positive_int(value: object, name: str) -> int:
    if type(value) is not int or value <= 0:
        raise PacketError(f"OPEN packet: {name} is not a positive integer")
    return value


def parse_open(packet: Packet) -> OpenInfo:
    """The session parameters of an OPEN packet; :class:`PacketError` for anything else."""
    if packet.type is not PacketType.OPEN or not isinstance(packet.data, str):
        raise PacketError(f"expected an OPEN packet, got {packet.type.name}")
    try:
        data = json.loads(packet.data)
    except ValueError:
        raise PacketError("OPEN packet: invalid JSON") from None
    if type(data) is not dict:
        raise PacketError("OPEN packet: not a JSON object")
    sid = data.get("sid")
    if type(sid) is not str or not sid:
        raise PacketError("OPEN packet: no sid")
    upgrades = data.get("upgrades", [])
    if type(upgrades) is not list or not all(type(u) is str for u in upgrades):
        raise PacketError("OPEN packet: upgrades is not a list of names")
    max_payload = data.get("maxPayload", 1_000_000)
    return OpenInfo(
        sid=sid,
        upgrades=tuple(upgrades),
        ping_interval=_positive_int(data.get("pingInterval"), "pingInterval") / 1000,
        ping_timeout=_positive_int(data.get("pingTimeout"), "pingTimeout") / 1000,
        max_payload=_positive_int(max_payload, "maxPayload"),
    )


def engine_target(
    path: str,
    query: Iterable[tuple[str, str]],
    *,
    transport: str,
    sid: str | None = None,
) -> str:
    """The request target (path and query) for one Engine.IO request."""
    params = [(k, v) for k, v in query if k not in ("EIO", "transport", "sid")]
    params += [("EIO", "4"), ("transport", transport)]
    if sid is not None:
        params.append(("sid", sid))
    return f"{path}?{urlencode(params)}"


class Heartbeat:
    """The client's watch on the server's pings: dead once ``deadline`` has passed.

    ``deadline`` is ``pingInterval + pingTimeout`` after the open, then after each PING
    (:meth:`ping_received`); the shell sleeps until it and calls :meth:`expired`.
    """

    __slots__ = ("deadline", "window")

    def __init__(self, info: OpenInfo, now: float) -> None:
        self.window = info.ping_interval + info.ping_timeout
        self.deadline = now + self.window

    def ping_received(self, now: float) -> None:
        self.deadline = now + self.window

    def expired(self, now: float) -> bool:
        return now >= self.deadline

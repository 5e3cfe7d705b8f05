"""The Python nodes of a cluster, as their heartbeats tell (sans-IO: the caller gives ``now``).

A Python node publishes ``{"uid", "type": "heartbeat", "interval"}`` (JSON) on
``<key>-heartbeat#`` every ``interval`` seconds; Node servers neither send nor read these.
A node is **stale** when nothing came from it for two of its announced intervals while we
were listening: ``now - max(last heard, listening since) > 2 * interval``, so a node that
just (re)subscribed gives every other node two intervals before judging it. The table is
bounded (``max_nodes``; the node unheard of longest goes first).
"""

from __future__ import annotations

from pyserver.redis import codec

__all__ = ["NodeTable", "heartbeat_message"]

MIN_INTERVAL = 0.01
MAX_INTERVAL = 3600.0


def heartbeat_message(uid: str, interval: float) -> bytes:
    return codec.encode_json({"uid": uid, "type": "heartbeat", "interval": interval})


class NodeTable:
    """uid -> (when last heard, announced interval), for the other Python nodes."""

    def __init__(self, own_uid: str, max_nodes: int = 10_000) -> None:
        self.own_uid = own_uid
        self.max_nodes = max_nodes
        self.nodes: dict[str, tuple[float, float]] = {}

    def heartbeat(self, payload: bytes, now: float) -> None:
        """Record a heartbeat (raises :class:`~pyserver.redis.codec.CodecError`)."""
        message = codec.decode(payload)
        if not isinstance(message, dict):
            raise codec.CodecError("a heartbeat is a map")
        uid = message.get("uid")
        interval = message.get("interval")
        if not isinstance(uid, str) or not isinstance(interval, int | float):
            raise codec.CodecError("a heartbeat has a uid and an interval")
        if uid == self.own_uid:
            return
        nodes = self.nodes
        if uid not in nodes and len(nodes) >= self.max_nodes:
            del nodes[min(nodes, key=lambda u: nodes[u][0])]
        nodes[uid] = (now, min(max(float(interval), MIN_INTERVAL), MAX_INTERVAL))

    def stale(self, now: float, listening_since: float) -> list[str]:
        """The nodes whose heartbeats stopped (see the module docstring)."""
        return [
            uid
            for uid, (heard, every) in self.nodes.items()
            if now - max(heard, listening_since) > 2 * every
        ]

    def __contains__(self, uid: object) -> bool:
        return uid in self.nodes

    def __len__(self) -> int:
        return len(self.nodes)

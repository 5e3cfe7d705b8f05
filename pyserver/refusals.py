"""Refusals per client, sans-IO: what per-address caps count by (:func:`client_key`) and
one log line per burst of refusals (:class:`BurstLog`). The HTTP server, the App's
connection caps and Engine.IO's session caps use both.
"""

from __future__ import annotations

import ipaddress
import math

__all__ = ["BurstLog", "client_key"]


def client_key(host: str) -> str:
    """What per-address caps count by: the IPv4 address, or the /64 network of an IPv6 one
    (one host is usually given a whole /64, so counting single IPv6 addresses would let it
    open as many as it likes); an IPv4-mapped IPv6 address counts as its IPv4 address."""
    if ":" not in host:
        return host
    try:
        address = ipaddress.IPv6Address(host.partition("%")[0])
    except ValueError:
        return host
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ipaddress.IPv6Network((int(address) >> 64 << 64, 64)))


class BurstLog:
    """One log line per burst of refusals, not one per refusal: the first refusal is logged
    at once, later ones are counted and logged at most once per ``interval`` seconds, with
    how many there were since the last line. Sans-IO: the caller passes ``now``."""

    __slots__ = ("_count", "_last", "interval")

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._last = -math.inf
        self._count = 0

    def due(self, now: float) -> int:
        """Count one refusal; the number to log now (the refusals since the last line,
        this one included), or 0: stay quiet."""
        self._count += 1
        if now - self._last < self.interval:
            return 0
        self._last = now
        count, self._count = self._count, 0
        return count

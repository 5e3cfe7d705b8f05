"""Redis Cluster's key space, sans-IO: which of the 16384 hash slots a key (or a sharded
pub/sub channel) belongs to, which master serves a slot, and what a redirection says.

* :func:`key_slot`: CRC16 (XMODEM: polynomial 0x1021, initial value 0, no reflection) of the
  key modulo 16384, as the Redis Cluster specification defines it; when the key holds a hash
  tag (the bytes between the first ``{`` and the first ``}`` after it, not empty), only the
  tag is hashed, so ``{user1000}.following`` and ``{user1000}.followers`` share a slot.
* :class:`SlotMap`: the masters by slot range, from a ``CLUSTER SLOTS`` reply
  (:func:`parse_cluster_slots`), or one endpoint for every slot (a standalone Redis).
* :func:`parse_redirect`: ``MOVED <slot> <host>:<port>`` and ``ASK ...`` error messages.

No sockets, no clock: the Trio side is :mod:`pyserver.trio.redis.cluster`.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from typing import Final

from pyserver.redis.resp import Reply

__all__ = ["SLOTS", "Redirect", "SlotMap", "crc16", "key_slot", "parse_cluster_slots",
           "parse_redirect"]  # fmt: skip

SLOTS: Final = 16384


def _table() -> tuple[int, ...]:
    out = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
        out.append(crc & 0xFFFF)
    return tuple(out)


_TABLE: Final = _table()


def crc16(data: bytes) -> int:
    """CRC16/XMODEM of ``data`` (``crc16(b"123456789") == 0x31C3``)."""
    crc = 0
    table = _TABLE
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ table[(crc >> 8) ^ byte]
    return crc


def key_slot(key: bytes) -> int:
    """The hash slot of ``key`` (hash tags honoured; see the module docstring)."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    return crc16(key) & (SLOTS - 1)


Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Redirect:
    """A ``MOVED`` (the slot lives elsewhere now) or ``ASK`` (for this one command) error."""

    kind: str
    slot: int
    host: str
    port: int


def parse_redirect(message: str) -> Redirect | None:
    """``"MOVED 3999 127.0.0.1:6381"`` as a :class:`Redirect`; None for any other error. An
    empty host (Redis's "unknown endpoint") stays empty: the caller uses the one it asked."""
    words = message.split()
    if len(words) != 3 or words[0] not in ("MOVED", "ASK") or not words[1].isdigit():
        return None
    host, sep, port = words[2].rpartition(":")
    if not sep or not port.isdigit():
        return None
    slot = int(words[1])
    if slot >= SLOTS:
        return None
    return Redirect(words[0], slot, host, int(port))


def parse_cluster_slots(reply: Reply, default_host: str) -> list[tuple[int, int, Address]]:
    """``CLUSTER SLOTS``'s reply as ``(first, last, (host, port))`` ranges of masters
    (replicas ignored); an empty or ``?`` host is ``default_host`` (the node asked). Raises
    ValueError on a reply of another shape."""
    if not isinstance(reply, list):
        raise ValueError("CLUSTER SLOTS: not an array")
    out = []
    for item in reply:
        if not isinstance(item, list) or len(item) < 3:
            raise ValueError("CLUSTER SLOTS: bad range")
        first, last, master = item[0], item[1], item[2]
        if not (isinstance(first, int) and isinstance(last, int) and isinstance(master, list)):
            raise ValueError("CLUSTER SLOTS: bad range")
        if len(master) < 2 or not isinstance(master[0], bytes) or not isinstance(master[1], int):
            raise ValueError("CLUSTER SLOTS: bad node")
        if not 0 <= first <= last < SLOTS:
            raise ValueError("CLUSTER SLOTS: slot out of range")
        host = master[0].decode("utf-8", "replace")
        out.append((first, last, (host if host not in ("", "?") else default_host, master[1])))
    return out


class SlotMap:
    """The master of each slot. ``SlotMap.single(addr)``: a standalone Redis (every slot);
    ``SlotMap(ranges)``: a cluster's ranges (slots in no range have no owner)."""

    def __init__(self, ranges: list[tuple[int, int, Address]], *, standalone: bool = False):
        self.standalone = standalone
        ordered = sorted(ranges)
        self._firsts = [first for first, _, _ in ordered]
        self._ranges = ordered
        #: Every master, once, in slot order.
        self.masters: list[Address] = list(dict.fromkeys(addr for _, _, addr in ordered))

    @classmethod
    def single(cls, addr: Address) -> SlotMap:
        return cls([(0, SLOTS - 1, addr)], standalone=True)

    def owner(self, slot: int) -> Address | None:
        """The master serving ``slot``, or None when no range covers it."""
        i = bisect_right(self._firsts, slot) - 1
        if i < 0:
            return None
        first, last, addr = self._ranges[i]
        return addr if first <= slot <= last else None

    def covered(self) -> int:
        """How many slots have an owner (16384 on a healthy cluster)."""
        return sum(last - first + 1 for first, last, _ in self._ranges)

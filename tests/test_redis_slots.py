"""pyserver.redis.slots (sans-IO): hash slots as the Redis Cluster specification computes
them, the slot map from a CLUSTER SLOTS reply, and redirection errors. The expected slots
are the specification's examples and what ``CLUSTER KEYSLOT`` answers on redis-server 7.0."""

from __future__ import annotations

import pytest

from pyserver.redis.slots import (
    SLOTS,
    Redirect,
    SlotMap,
    crc16,
    key_slot,
    parse_cluster_slots,
    parse_redirect,
)


def test_crc16_is_xmodem() -> None:
    assert crc16(b"123456789") == 0x31C3  # the specification's check value
    assert crc16(b"") == 0


@pytest.mark.parametrize(
    ("key", "slot"),
    [
        (b"foo", 12182),
        (b"bar", 5061),
        (b"123456789", 12739),
        (b"socket.io#/#", 13868),
        (b"{user1000}.following", 3443),
        (b"foo{}{bar}", 8363),
        (b"", 0),
    ],
)
def test_key_slot(key: bytes, slot: int) -> None:
    assert key_slot(key) == slot


def test_hash_tags() -> None:
    assert key_slot(b"{user1000}.following") == key_slot(b"{user1000}.followers")
    assert key_slot(b"{user1000}.following") == key_slot(b"user1000")
    # only the first {...}; an empty tag means the whole key is hashed
    assert key_slot(b"foo{bar}{zap}") == key_slot(b"bar")
    assert key_slot(b"foo{}{bar}") == crc16(b"foo{}{bar}") % SLOTS
    assert key_slot(b"foo{{bar}}zap") == key_slot(b"{bar")
    assert key_slot(b"{foo") == crc16(b"{foo") % SLOTS


def test_redirects() -> None:
    assert parse_redirect("MOVED 3999 127.0.0.1:6381") == Redirect("MOVED", 3999, "127.0.0.1", 6381)
    assert parse_redirect("ASK 1 ::1:7000") == Redirect("ASK", 1, "::1", 7000)
    assert parse_redirect("MOVED 3999 :6381") == Redirect("MOVED", 3999, "", 6381)
    for other in ("ERR unknown command", "MOVED x 1.2.3.4:5", "MOVED 16384 h:1", "MOVED 1 h"):
        assert parse_redirect(other) is None


def test_slot_map_from_cluster_slots() -> None:
    reply = [
        [0, 5460, [b"127.0.0.1", 7000, b"id-a"], [b"127.0.0.1", 7003, b"replica"]],
        [10923, 16383, [b"", 7002, b"id-c"]],
        [5461, 10922, [b"127.0.0.1", 7001, b"id-b"]],
    ]
    slots = SlotMap(parse_cluster_slots(reply, "10.0.0.9"))
    assert slots.owner(0) == ("127.0.0.1", 7000)
    assert slots.owner(5460) == ("127.0.0.1", 7000)
    assert slots.owner(5461) == ("127.0.0.1", 7001)
    assert slots.owner(12182) == ("10.0.0.9", 7002)  # an unknown endpoint: the node asked
    assert slots.masters == [("127.0.0.1", 7000), ("127.0.0.1", 7001), ("10.0.0.9", 7002)]
    assert slots.covered() == SLOTS and not slots.standalone
    partial = SlotMap(parse_cluster_slots(reply[:1], "h"))
    assert partial.owner(5461) is None and partial.covered() == 5461
    single = SlotMap.single(("h", 1))
    assert single.owner(16383) == ("h", 1) and single.standalone


@pytest.mark.parametrize(
    "reply", [b"x", [[0]], [[0, 1, [b"h"]]], [[0, 99999, [b"h", 1]]], [[b"0", 1, [b"h", 1]]]]
)
def test_bad_cluster_slots(reply: object) -> None:
    with pytest.raises(ValueError):
        parse_cluster_slots(reply, "h")  # type: ignore[arg-type]

"""The room index: membership, broadcast recipients, empty-room reporting, memory release."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyserver.socketio import LocalProtocolError, Sid
from pyserver.socketio.rooms import RoomIndex

A, B, C, D = Sid("a"), Sid("b"), Sid("c"), Sid("d")


def index_with(*sids: Sid) -> RoomIndex:
    index = RoomIndex()
    for sid in sids:
        index.add_socket(sid)
    return index


def test_add_socket_puts_it_in_its_own_room() -> None:
    index = RoomIndex()
    assert index.add_socket(A) is True
    assert index.rooms_of(A) == {A}
    assert index.members(A) == {A}
    assert index.sids_in(A) == {A}
    assert A in index
    assert B not in index


def test_add_socket_twice_is_misuse() -> None:
    index = index_with(A)
    with pytest.raises(LocalProtocolError):
        index.add_socket(A)


def test_join_before_add_socket_is_misuse() -> None:
    with pytest.raises(LocalProtocolError):
        RoomIndex().join(A, "r")
    with pytest.raises(LocalProtocolError):
        RoomIndex().leave(A, "r")


def test_join_reports_the_rooms_it_created() -> None:
    index = index_with(A, B)
    assert index.join(A, {"r1", "r2"}) == {"r1", "r2"}
    assert index.join(B, ["r2", "r3"]) == {"r3"}
    assert index.join(B, "r3") == set()
    assert index.join(A, "r1") == set()  # idempotent
    assert index.rooms_of(A) == {A, "r1", "r2"}
    assert index.members("r2") == {A, B}


def test_join_with_one_name_is_not_split_into_characters() -> None:
    index = index_with(A)
    assert index.join(A, "room") == {"room"}
    assert index.rooms_of(A) == {A, "room"}


def test_leave_reports_whether_the_room_emptied() -> None:
    index = index_with(A, B)
    index.join(A, "r")
    index.join(B, "r")
    assert index.leave(A, "r") is False
    assert index.leave(A, "r") is False  # not in it any more: a no-op
    assert index.leave(A, "elsewhere") is False
    assert index.leave(B, "r") is True
    assert index.members("r") == frozenset()
    assert "r" not in index.room_sizes()


def test_leave_own_room_is_allowed() -> None:
    index = index_with(A)
    assert index.leave(A, A) is True
    assert index.sids_in(A) == set()
    assert index.sids_in() == {A}


def test_leave_all_returns_emptied_rooms_and_forgets_the_socket() -> None:
    index = index_with(A, B)
    index.join(A, {"shared", "alone"})
    index.join(B, "shared")
    assert index.leave_all(A) == {A, "alone"}
    assert A not in index
    assert index.rooms_of(A) == frozenset()
    assert index.members("shared") == {B}
    assert index.leave_all(A) == set()  # unknown sid: no-op
    assert index.leave_all(B) == {B, "shared"}
    assert index.room_count == 0
    assert index.socket_count == 0
    assert index.room_sizes() == {}


def test_sids_in_everyone_when_no_rooms() -> None:
    index = index_with(A, B, C)
    index.join(A, "r")
    assert index.sids_in() == {A, B, C}
    assert index.sids_in([]) == {A, B, C}


def test_sids_in_union_each_sid_once() -> None:
    index = index_with(A, B, C, D)
    index.join(A, {"r1", "r2"})
    index.join(B, "r2")
    index.join(C, "r3")
    assert index.sids_in(["r1", "r2"]) == {A, B}
    assert index.sids_in(["r1", "r2", "r3"]) == {A, B, C}
    assert index.sids_in("missing") == set()
    assert index.sids_in([A, B]) == {A, B}  # rooms named after sids


def test_sids_in_except_rooms_and_sids() -> None:
    index = index_with(A, B, C, D)
    index.join(A, {"game", "red"})
    index.join(B, {"game", "blue"})
    index.join(C, {"game", "red"})
    assert index.sids_in("game", except_rooms="red") == {B}
    assert index.sids_in("game", except_rooms=["red", "blue"]) == set()
    assert index.sids_in(except_rooms="red") == {B, D}
    assert index.sids_in("game", except_sids=[A]) == {B, C}
    assert index.sids_in(except_rooms=[A]) == {B, C, D}  # broadcast from A: skip its room
    assert index.sids_in("game", except_rooms=["missing"]) == {A, B, C}


def test_sids_in_returns_a_fresh_set() -> None:
    index = index_with(A, B)
    index.join(A, "r")
    recipients = index.sids_in("r")
    recipients.add(B)
    assert index.members("r") == {A}
    everyone = index.sids_in()
    everyone.clear()
    assert index.socket_count == 2


def test_version_changes_with_every_change_of_membership() -> None:
    index = RoomIndex()
    seen = [index.version]

    def changed() -> bool:
        seen.append(index.version)
        return seen[-1] != seen[-2]

    index.add_socket(A)
    assert changed()
    index.join(A, "r")
    assert changed()
    index.leave(A, "r")
    assert changed()
    index.leave(A, "r")  # not in it: nothing changes
    assert not changed()
    index.sids_in("r"), index.rooms_of(A), index.members(A)
    assert not changed()
    index.leave_all(A)
    assert changed()
    index.leave_all(A)  # unknown sid: nothing changes
    assert not changed()


def test_counts() -> None:
    index = index_with(A, B)
    index.join(A, {"x", "y"})
    index.join(B, "x")
    assert index.socket_count == 2
    assert index.room_count == 4
    assert index.room_sizes() == {A: 1, B: 1, "x": 2, "y": 1}


def test_room_named_like_a_later_sid() -> None:
    index = index_with(A)
    index.join(A, "b")
    assert index.add_socket(B) is False
    assert index.members(B) == {A, B}
    assert index.leave_all(B) == set()
    assert index.leave_all(A) == {A, "b"}


_operations = st.lists(
    st.tuples(
        st.sampled_from(["add", "join", "leave", "leave_all"]),
        st.sampled_from([A, B, C, D]),
        st.sets(st.sampled_from(["r1", "r2", "r3", A, B]), max_size=3),
    ),
    max_size=40,
)


@given(_operations)
@settings(max_examples=300)
def test_index_matches_a_naive_model(operations: list[tuple[str, Sid, set[str]]]) -> None:
    index = RoomIndex()
    model: dict[Sid, set[str]] = {}
    for op, sid, rooms in operations:
        before = {room for own in model.values() for room in own}
        if op == "add":
            if sid in model:
                continue
            index.add_socket(sid)
            model[sid] = {sid}
        elif sid not in model:
            continue
        elif op == "join":
            created = index.join(sid, rooms)
            model[sid] |= rooms
            assert created == rooms - before
        elif op == "leave":
            for room in rooms:
                emptied = index.leave(sid, room)
                model[sid].discard(room)
                assert emptied == (room in before and all(room not in r for r in model.values()))
                before = {room for own in model.values() for room in own}
        else:
            emptied_rooms = index.leave_all(sid)
            own = model.pop(sid)
            after = {room for r in model.values() for room in r}
            assert emptied_rooms == own - after
        for member, own in model.items():
            assert index.rooms_of(member) == own
        live = {room for own in model.values() for room in own}
        assert set(index.room_sizes()) == live
        assert index.socket_count == len(model)
        for room in live | {"nowhere"}:
            expected = {s for s, own in model.items() if room in own}
            assert index.sids_in(room) == expected
            assert index.sids_in(except_rooms=room) == set(model) - expected

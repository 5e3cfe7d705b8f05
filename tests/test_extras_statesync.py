"""The sans-IO state sync: numbering, catch-up, snapshots, bounds."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from pyserver.extras.statesync import SyncedState


def epochs() -> Callable[[], str]:
    """Epochs as the caller draws them (a counter is enough within one test)."""
    counter = itertools.count(1)
    return lambda: f"e{next(counter)}"


def appender() -> SyncedState[list[int], int]:
    def apply(state: list[int], delta: int) -> list[int]:
        state.append(delta)
        return state

    return SyncedState([], apply, new_epoch=epochs(), max_deltas=5)


def test_commit_numbers_deltas_consecutively() -> None:
    s = appender()
    assert [s.commit(d) for d in (10, 20, 30)] == [1, 2, 3]
    assert s.version == 3
    assert s.state == [10, 20, 30]
    assert s.delta_message(3, 30) == {"type": "delta", "epoch": s.epoch, "seq": 3, "delta": 30}


def test_catch_up_returns_only_what_was_missed() -> None:
    s = appender()
    for d in range(4):
        s.commit(d)
    answer = s.catch_up({"epoch": s.epoch, "version": 2})
    assert answer == {
        "type": "deltas",
        "epoch": s.epoch,
        "from": 2,
        "version": 4,
        "deltas": [[3, 2], [4, 3]],
    }
    assert s.catch_up({"epoch": s.epoch, "version": 4})["deltas"] == []


@pytest.mark.parametrize(
    "known",
    [
        None,
        {},
        {"epoch": "other", "version": 1},
        {"version": 1},
        "junk",
        {"epoch": "E", "version": True},
    ],
)
def test_unknown_or_malformed_knowledge_gets_a_snapshot(known: object) -> None:
    s = appender()
    s.commit(1)
    answer = s.catch_up(known)  # type: ignore[arg-type]
    assert answer == {"type": "snapshot", "epoch": s.epoch, "version": 1, "state": [1]}


def test_too_old_or_future_version_gets_a_snapshot() -> None:
    s = appender()
    for d in range(12):
        s.commit(d)
    assert s.kept_deltas == 5
    assert s.oldest_version == 7
    assert s.catch_up({"epoch": s.epoch, "version": 6})["type"] == "snapshot"
    assert s.catch_up({"epoch": s.epoch, "version": 7})["deltas"] == [
        [8, 7],
        [9, 8],
        [10, 9],
        [11, 10],
        [12, 11],
    ]
    assert s.catch_up({"epoch": s.epoch, "version": 13})["type"] == "snapshot"


def test_weight_bounds_the_history() -> None:
    s: SyncedState[str, str] = SyncedState(
        "", lambda a, b: a + b, new_epoch=epochs(), max_deltas=100, max_delta_weight=10, weight=len
    )
    for chunk in ("aaaa", "bbbb", "cccc"):
        s.commit(chunk)
    assert s.kept_deltas == 2
    assert s.deltas_since(1) == [(2, "bbbb"), (3, "cccc")]
    assert s.deltas_since(0) is None


def test_rejected_delta_is_not_committed() -> None:
    def apply(state: int, delta: int) -> int:
        if delta < 0:
            raise ValueError("negative")
        return state + delta

    s = SyncedState(0, apply, new_epoch=epochs())
    s.commit(2)
    with pytest.raises(ValueError):
        s.commit(-1)
    assert (s.version, s.state) == (1, 2)


def test_reset_starts_a_new_epoch() -> None:
    s = appender()
    s.commit(1)
    old = s.epoch
    s.reset([])
    assert (old, s.epoch) == ("e1", "e2")  # drawn by the caller's new_epoch, once each
    assert s.version == 0 and s.kept_deltas == 0
    assert s.catch_up({"epoch": old, "version": 1})["type"] == "snapshot"


def test_no_history_kept_when_max_deltas_is_zero() -> None:
    s = SyncedState(0, lambda a, b: a + b, new_epoch=epochs(), max_deltas=0)
    s.commit(1)
    assert s.catch_up({"epoch": s.epoch, "version": 0})["type"] == "snapshot"
    assert s.catch_up({"epoch": s.epoch, "version": 1})["deltas"] == []

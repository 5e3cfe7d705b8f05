"""The drawing board's server side: validation, the board's bounds, the board registry, and
the namespace's handlers driven by pyserver's Trio client (pyserver.testing)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
import trio
from helpers.sio_client import eventually, next_event, serving

from pyserver import Server, testing
from pyserver.demo import drawing
from pyserver.demo.drawing import (
    MAX_BATCH_SEGMENTS,
    PALETTE,
    BadBatch,
    Board,
    BoardFull,
    Boards,
    board_name,
    validate_batch,
)
from pyserver.errors import ConnectionRefused


def batch(n: int = 1, *, batch_id: str = "c1-1", w: int = 4) -> dict[str, Any]:
    return {"id": batch_id, "w": w, "p": [10, 20.25, 30, 40] * n}


# -- validation ---------------------------------------------------------------------------------


def test_a_good_batch_is_accepted_and_rounded() -> None:
    assert validate_batch(batch(2)) == ("c1-1", 4, [10.0, 20.2, 30.0, 40.0] * 2)
    full = validate_batch(batch(MAX_BATCH_SEGMENTS))
    assert len(full[2]) == 4 * MAX_BATCH_SEGMENTS
    edge = {"id": "x", "w": 2, "p": [0, 0, drawing.BOARD_WIDTH, drawing.BOARD_HEIGHT]}
    assert validate_batch(edge)[2] == [0, 0, drawing.BOARD_WIDTH, drawing.BOARD_HEIGHT]


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "strokes",
        [10, 20, 30, 40],
        {},
        {"w": 4, "p": [1, 2, 3, 4]},  # no id
        {"id": "", "w": 4, "p": [1, 2, 3, 4]},
        {"id": "a b", "w": 4, "p": [1, 2, 3, 4]},
        {"id": "x" * 49, "w": 4, "p": [1, 2, 3, 4]},
        {"id": 7, "w": 4, "p": [1, 2, 3, 4]},
        {"id": "a", "w": 5, "p": [1, 2, 3, 4]},
        {"id": "a", "w": 4.0, "p": [1, 2, 3, 4]},
        {"id": "a", "w": True, "p": [1, 2, 3, 4]},
        {"id": "a", "w": 4, "p": []},
        {"id": "a", "w": 4, "p": [1, 2, 3]},
        {"id": "a", "w": 4, "p": "1,2,3,4"},
        {"id": "a", "w": 4, "p": [1, 2, 3, "4"]},
        {"id": "a", "w": 4, "p": [1, 2, 3, None]},
        {"id": "a", "w": 4, "p": [1, 2, 3, True]},
        {"id": "a", "w": 4, "p": [1, 2, 3, math.nan]},
        {"id": "a", "w": 4, "p": [1, 2, 3, math.inf]},
        {"id": "a", "w": 4, "p": [1, 2, 3, -0.5]},
        {"id": "a", "w": 4, "p": [drawing.BOARD_WIDTH + 1, 2, 3, 4]},
        {"id": "a", "w": 4, "p": [1, drawing.BOARD_HEIGHT + 1, 3, 4]},
        {"id": "a", "w": 4, "p": [1, 2, 3, 4, 5, 6, 7, [8]]},
        {"id": "a", "w": 4, "p": [1, 2, 3, 4] * (MAX_BATCH_SEGMENTS + 1)},
        {"id": "a", "w": 4, "p": [1, 2, 3, 4], "c": "#000000"},  # the colour is the server's
    ],
)
def test_a_bad_batch_is_refused_with_a_reason(raw: object) -> None:
    with pytest.raises(BadBatch) as info:
        validate_batch(raw)
    assert str(info.value)


def test_board_names() -> None:
    assert board_name(None) == "main"
    assert board_name("") == "main"
    assert board_name("team-1_B") == "team-1_B"
    for bad in ("a b", "x" * 33, "../etc", "é", 5, ["main"], {"a": 1}):
        with pytest.raises(ConnectionRefused) as info:
            board_name(bad)
        assert info.value.message == "invalid board name"


# -- one board ----------------------------------------------------------------------------------


def stroke(n: int, sid: str = "s") -> dict[str, Any]:
    return {"id": sid, "c": PALETTE[0], "w": 4, "p": [1.0, 2.0, 3.0, 4.0] * n}


def test_board_commits_numbered_deltas_and_refuses_past_its_size() -> None:
    board = Board("b", max_segments=10)
    first = board.add(stroke(6, "a"))
    assert first == {"type": "delta", "epoch": board.sync.epoch, "seq": 1, "delta": stroke(6, "a")}
    with pytest.raises(BoardFull):
        board.add(stroke(5, "b"))  # 6 + 5 > 10: refused, nothing changes
    assert board.segments == 6
    assert board.sync.version == 1
    assert board.add(stroke(4, "c"))["seq"] == 2  # exactly full is fine
    assert board.segments == 10
    assert board.sync.catch_up({"epoch": board.sync.epoch, "version": 1})["deltas"] == [
        [2, stroke(4, "c")]
    ]


def test_clear_is_a_new_epoch_and_frees_the_board() -> None:
    board = Board("b", max_segments=10)
    board.add(stroke(10))
    old = board.sync.epoch
    snapshot = board.clear()
    assert snapshot == {"type": "snapshot", "epoch": board.sync.epoch, "version": 0, "state": []}
    assert board.sync.epoch != old
    assert board.segments == 0
    # a client of the old epoch gets the (empty) snapshot, then can draw again
    assert board.sync.catch_up({"epoch": old, "version": 1})["type"] == "snapshot"
    assert board.add(stroke(10))["seq"] == 1


def test_history_is_bounded_and_a_client_too_far_behind_gets_a_snapshot() -> None:
    board = Board("b", max_segments=1000, max_deltas=3)
    for i in range(5):
        board.add(stroke(1, f"s{i}"))
    assert board.sync.kept_deltas == 3
    assert board.sync.catch_up({"epoch": board.sync.epoch, "version": 1})["type"] == "snapshot"
    assert len(board.sync.catch_up({"epoch": board.sync.epoch, "version": 3})["deltas"]) == 2


def test_colours_spread_over_the_palette_and_survive_a_reconnect() -> None:
    board = Board("b")
    seen = []
    for i in range(len(PALETTE)):
        color = board.pick_color(None)
        board.colors[f"s{i}"] = color
        seen.append(color)
    assert sorted(seen) == sorted(PALETTE)  # each colour once before any repeats
    assert board.pick_color(PALETTE[3]) == PALETTE[3]  # a reconnecting user keeps its colour
    assert board.pick_color("#123456") in PALETTE  # not a palette colour: one is chosen
    assert board.pick_color("javascript:alert(1)") in PALETTE


# -- the registry of boards ---------------------------------------------------------------------


def test_boards_evict_the_least_recently_used_idle_board() -> None:
    boards = Boards(max_boards=2)
    a = boards.open("a")
    boards.open("b")
    a.colors["someone"] = PALETTE[0]  # "a" is in use
    boards.open("c")  # evicts "b", the idle one
    assert "b" not in boards and "a" in boards and "c" in boards
    boards.get("a")
    boards.open("d")  # "c" is idle and least recently used
    assert "c" not in boards and len(boards) == 2


def test_boards_refuse_a_new_board_when_all_are_in_use() -> None:
    boards = Boards(max_boards=1)
    boards.open("a").colors["someone"] = PALETTE[0]
    with pytest.raises(ConnectionRefused):
        boards.open("b")
    assert boards.open("a") is boards.get("a")


# -- the namespace, with a real client ----------------------------------------------------------


def board_client(url: str, board: str, transport: str = "websocket") -> Any:
    """pyserver's Trio client on the drawing namespace of ``board``."""
    return testing.connect(url + "/drawing", auth={"board": board}, transports=[transport])


async def test_strokes_are_broadcast_on_the_board_and_sync_catches_up() -> None:
    sio = Server()
    boards = drawing.register(sio, max_segments=8)
    with trio.fail_after(30):
        async with (
            serving(sio) as url,
            board_client(url, "b1") as alice,
            board_client(url, "b1", "polling") as bob,
            board_client(url, "b2") as other,
        ):
            (init,) = await next_event(alice, "init")
            assert init["board"] == "b1" and init["color"] in PALETTE
            (count,) = await next_event(bob, "user count")
            assert count == 2

            ack = await alice.emit_with_ack("strokes", batch(3, batch_id="a-1"))
            assert ack == {"ok": True, "seq": 1}
            for client in (alice, bob):  # the sender too: one consecutive sequence for all
                (delta,) = await next_event(client, "delta")
                assert delta["seq"] == 1
                assert delta["delta"]["c"] == init["color"]  # the server's colour, not the client's
                assert delta["delta"]["p"] == [10.0, 20.2, 30.0, 40.0] * 3

            epoch = boards.get("b1").sync.epoch  # type: ignore[union-attr]
            assert await bob.emit_with_ack("sync", {"epoch": epoch, "version": 1}) == {
                "type": "deltas",
                "epoch": epoch,
                "from": 1,
                "version": 1,
                "deltas": [],
            }
            snap = await other.emit_with_ack("sync")
            assert snap["type"] == "snapshot" and snap["state"] == []  # board b2 is untouched

            bad = await bob.emit_with_ack("strokes", {"id": "x", "w": 4, "p": [1, 2, 3]})
            assert "error" in bad
            full = await bob.emit_with_ack("strokes", batch(6, batch_id="b-1"))
            assert full == {"error": "board full", "max": 8}
            assert boards.get("b1").segments == 3  # type: ignore[union-attr]

            assert await bob.emit_with_ack("clear") == {"ok": True}
            (cleared,) = await next_event(alice, "snapshot")
            assert cleared["state"] == [] and cleared["epoch"] != epoch

            bob.disconnect()
            (count,) = await next_event(alice, "user count")
            assert count == 1


async def test_a_bad_board_name_is_refused_at_connect() -> None:
    sio = Server()
    drawing.register(sio)
    with trio.fail_after(20):
        async with serving(sio) as url:
            with pytest.raises(ConnectionRefused) as info:
                async with board_client(url, "no spaces"):
                    pass
            assert info.value.message == "invalid board name"


# -- snapshots on disk (the room task) ----------------------------------------------------------


async def test_the_snapshotter_saves_a_board_and_a_new_server_restores_it(tmp_path: Any) -> None:
    path = tmp_path / "b1.json"
    with trio.fail_after(30):
        sio = Server()
        drawing.register(sio, snapshot_dir=tmp_path, snapshot_interval=0.05)
        async with serving(sio) as url:
            async with board_client(url, "b1") as alice:
                await next_event(alice, "init")
                assert sio.of("/drawing").room("b1").active  # type: ignore[union-attr]
                ack = await alice.emit_with_ack("strokes", batch(2, batch_id="a-1"))
                assert ack["ok"]
                await eventually(path.exists)  # saved while the room is alive
                ack = await alice.emit_with_ack("strokes", batch(1, batch_id="a-2"))
            # the room empties: its task ends, saving the last change
            await eventually(lambda: not sio.of("/drawing").room("b1").active)  # type: ignore[union-attr]
            await eventually(lambda: len(json.loads(path.read_bytes())) == 2)

        sio = Server()  # a restart
        drawing.register(sio, snapshot_dir=tmp_path, snapshot_interval=0.05)
        async with serving(sio) as url:
            async with board_client(url, "b1") as bob:
                snap = await bob.emit_with_ack("sync")
                assert snap["type"] == "snapshot"
                assert [s["id"] for s in snap["state"]] == ["a-1", "a-2"]
                assert await bob.emit_with_ack("clear") == {"ok": True}
            await eventually(lambda: not path.exists())  # an empty board keeps no file


async def test_a_damaged_snapshot_is_ignored(tmp_path: Any) -> None:
    snapshots = drawing.Snapshots(tmp_path)
    for content in (
        b"not json",
        b"{}",
        b"[1]",
        b'[{"id": "a", "c": "#000000", "w": 4, "p": [1,2,3,4]}]',
    ):
        (tmp_path / "x.json").write_bytes(content)
        assert await snapshots.load("x", 100) == []
    good = [{"id": "a", "c": PALETTE[0], "w": 4, "p": [1, 2, 3, 4] * 3}]
    (tmp_path / "x.json").write_bytes(json.dumps(good).encode())
    assert await snapshots.load("x", 100) == good
    assert await snapshots.load("x", 2) == []  # larger than the board may be
    assert await snapshots.load("missing", 100) == []

"""Orb Rush (pyserver.demo.game): the simulation and the wire checks as plain functions, then
the ``/game`` namespace end to end with pyserver's Trio client against a real server.
"""

from __future__ import annotations

import math
import random
from contextlib import AsyncExitStack
from typing import Any

import pytest
import trio
from helpers.sio_client import eventually, next_event, serving

from pyserver import testing
from pyserver.demo import game as g
from pyserver.demo.game import BadInput, Game, Player, World
from pyserver.extras.statesync import SyncedState
from pyserver.trio.client.socket import ClientSocket
from pyserver.trio.socketio.server import Server

# -- the simulation ------------------------------------------------------------------------


def _player(x: float, y: float, dx: int = 0, dy: int = 0) -> Player:
    return Player("p", "P", "#fff", x, y, dx=dx, dy=dy)


def test_move_along_the_held_direction() -> None:
    p = _player(100, 100, dx=1)
    g.move(p, 0.5)
    assert (p.x, p.y) == (100 + g.SPEED * 0.5, 100)
    p = _player(100, 100)
    g.move(p, 1.0)
    assert (p.x, p.y) == (100, 100)


def test_diagonal_is_no_faster() -> None:
    p = _player(300, 300, dx=-1, dy=1)
    g.move(p, 0.1)
    assert math.hypot(p.x - 300, p.y - 300) == pytest.approx(g.SPEED * 0.1)
    assert p.x < 300 and p.y > 300


@pytest.mark.parametrize(("dx", "dy"), [(-1, 0), (1, 0), (0, -1), (0, 1), (1, 1), (-1, -1)])
def test_players_stay_inside_the_arena(dx: int, dy: int) -> None:
    p = _player(g.ARENA_W / 2, g.ARENA_H / 2, dx=dx, dy=dy)
    for _ in range(200):
        g.move(p, 0.05)
    assert g.PLAYER_R <= p.x <= g.ARENA_W - g.PLAYER_R
    assert g.PLAYER_R <= p.y <= g.ARENA_H - g.PLAYER_R
    if dx:
        assert p.x == (g.PLAYER_R if dx < 0 else g.ARENA_W - g.PLAYER_R)
    if dy:
        assert p.y == (g.PLAYER_R if dy < 0 else g.ARENA_H - g.PLAYER_R)


def test_overlapping_players_are_pushed_apart_evenly() -> None:
    a, b = _player(200, 200), _player(210, 200)
    assert g.separate(a, b)
    assert b.x - a.x == pytest.approx(2 * g.PLAYER_R)
    assert (a.x + b.x) / 2 == pytest.approx(205)  # each moved half the overlap
    assert not g.separate(a, b)  # now just touching: nothing to do
    far = _player(400, 400)
    assert not g.separate(a, far) and far.x == 400


def test_players_on_the_same_spot_are_parted() -> None:
    a, b = _player(300, 300), _player(300, 300)
    assert g.separate(a, b)
    assert math.hypot(b.x - a.x, b.y - a.y) == pytest.approx(2 * g.PLAYER_R)


def test_separation_at_a_wall_stays_inside() -> None:
    a, b = _player(g.PLAYER_R, 100), _player(g.PLAYER_R + 4, 100)
    g.separate(b, a)
    assert a.x >= g.PLAYER_R and b.x >= g.PLAYER_R


def test_world_step_moves_and_collides() -> None:
    world = World(random.Random(1))
    a = world.add_player("A")
    b = world.add_player("B")
    a.x, a.y, b.x, b.y = 100.0, 100.0, 160.0, 100.0
    world.orbs = {"o0": (700.0, 400.0)}
    assert world.set_input(a.id, 1, 1, 0)
    for _ in range(10):  # A walks into B and shoves it
        world.step(1 / g.TICK_RATE)
    assert world.tick == 10
    assert b.x - a.x == pytest.approx(2 * g.PLAYER_R, abs=0.01)
    assert b.x > 160  # B was pushed
    assert a.y == b.y == 100


def test_collecting_an_orb_scores_and_respawns_it() -> None:
    world = World(random.Random(2))
    p = world.add_player("A")
    p.x, p.y = 300.0, 300.0
    world.orbs = {"o0": (300.0 + g.PLAYER_R + g.ORB_R - 1, 300.0), "o1": (700.0, 50.0)}
    world.step(0.0)
    assert p.score == 1
    assert world.orbs["o0"] != (300.0 + g.PLAYER_R + g.ORB_R - 1, 300.0)
    assert not g.touches(p, world.orbs["o0"])  # respawned away from the players
    assert world.orbs["o1"] == (700.0, 50.0)
    world.step(0.0)
    assert p.score == 1


def test_join_and_leave() -> None:
    world = World(random.Random(3))
    assert len(world.orbs) == g.ORBS
    players = [world.add_player(f"P{i}", token=f"token-{i:012d}") for i in range(g.MAX_PLAYERS)]
    assert len({p.id for p in players}) == g.MAX_PLAYERS
    assert len({p.colour for p in players}) == g.MAX_PLAYERS  # a colour each
    for p in players:
        assert g.PLAYER_R <= p.x <= g.ARENA_W - g.PLAYER_R
    with pytest.raises(BadInput, match="full"):
        world.add_player("one too many")
    assert world.by_token("token-000000000003") is players[3]
    assert world.by_token("nobody") is None and world.by_token(None) is None
    world.remove_player(players[0].id)
    world.remove_player("p-unknown")  # a no-op
    assert players[0].id not in world.players
    newcomer = world.add_player("late")
    assert newcomer.colour == players[0].colour  # the freed colour is reused
    assert newcomer.id not in {p.id for p in players}  # ids are never reused


def test_stale_input_is_ignored() -> None:
    world = World(random.Random(4))
    p = world.add_player("A")
    assert world.set_input(p.id, 5, 1, 0)
    assert not world.set_input(p.id, 5, -1, 0)  # repeated
    assert not world.set_input(p.id, 3, 0, 1)  # older, arrived late
    assert (p.dx, p.dy) == (1, 0)
    assert not world.set_input("p-unknown", 9, 1, 1)


# -- state sync: diff and apply ------------------------------------------------------------


def test_diff_then_apply_reproduces_the_view() -> None:
    world = World(random.Random(5))
    a = world.add_player("A")
    synced: SyncedState[dict[str, Any], dict[str, Any]] = SyncedState(
        world.view(), g.apply_delta, new_epoch=lambda: "e", max_deltas=10
    )
    client = world.view()  # what a client got as its snapshot
    b = world.add_player("B")
    world.set_input(a.id, 1, 1, 1)
    for _ in range(5):
        world.step(0.05)
        delta = g.diff(synced.state, world.view())
        assert delta is not None
        synced.commit(delta)
        g.apply_delta(client, delta)
    assert synced.state == world.view() == client
    first = synced.catch_up({"epoch": synced.epoch, "version": 0})["deltas"][0][1]
    assert first["players"][b.id]["name"] == "B"  # a joiner arrives whole
    world.set_input(a.id, 2, 0, 0)
    world.step(0.05)
    assert g.diff(synced.state, world.view()) is None  # only the tick moved: no delta
    world.remove_player(b.id)
    delta = g.diff(synced.state, world.view())
    assert delta is not None and delta["left"] == [b.id] and "players" not in delta


def test_a_delta_carries_only_changed_fields() -> None:
    world = World(random.Random(6))
    a = world.add_player("A")
    world.add_player("B")
    before = world.view()
    world.set_input(a.id, 1, 1, 0)
    world.step(0.05)
    delta = g.diff(before, world.view())
    assert delta is not None
    assert list(delta["players"]) == [a.id]
    assert set(delta["players"][a.id]) == {"x"}


# -- input validation ----------------------------------------------------------------------


def test_parse_input() -> None:
    assert g.parse_input({"seq": 7, "dx": -1, "dy": 1}) == (7, -1, 1)
    for bad in (
        None,
        [1, 0, 0],
        "up",
        {"dx": 1, "dy": 0},
        {"seq": -1, "dx": 1, "dy": 0},
        {"seq": 2**60, "dx": 1, "dy": 0},
        {"seq": 1.5, "dx": 1, "dy": 0},
        {"seq": True, "dx": 1, "dy": 0},
        {"seq": 1, "dx": 2, "dy": 0},
        {"seq": 1, "dx": 1, "dy": "0"},
        {"seq": 1, "dx": 0.5, "dy": 0},
        {"seq": 1, "dx": True, "dy": 0},
    ):
        with pytest.raises(BadInput):
            g.parse_input(bad)


def test_parse_join() -> None:
    assert g.parse_join({"match": "red-team_2", "name": "  Ada   L. "}) == (
        "red-team_2",
        "Ada L.",
        None,
        None,
    )
    assert g.parse_join({})[:2] == ("lobby", "Player")
    assert g.parse_join({"name": "\x00\u202e\n"})[1] == "Player"  # control characters only
    assert len(g.parse_join({"name": "x" * 5000})[1]) == g.MAX_NAME
    assert g.parse_join({"name": 42})[1] == "Player"
    known = {"epoch": "e", "version": 3}
    assert g.parse_join({"token": "a" * 16, "known": known})[2:] == ("a" * 16, known)
    for bad in (
        None,
        "lobby",
        {"match": ""},
        {"match": "../etc"},
        {"match": "x" * 33},
        {"match": 5},
        {"token": "short"},
        {"token": "has spaces in it!!"},
        {"token": 1234567890123456},
    ):
        with pytest.raises(BadInput):
            g.parse_join(bad)


# -- the namespace, end to end -------------------------------------------------------------


def _client(url: str) -> Any:
    """pyserver's Trio client on the game's namespace."""
    return testing.connect(url + "/game", transports=["websocket"])


async def _join(client: ClientSocket, **payload: Any) -> dict[str, Any]:
    reply: dict[str, Any] = await client.emit_with_ack("join", {"match": "m1", **payload})
    return reply


def _server() -> tuple[Server, Game]:
    sio = Server()
    return sio, g.register(sio)


async def test_join_input_and_sync() -> None:
    sio, game = _server()
    with trio.fail_after(30):
        async with serving(sio) as url:
            async with _client(url) as a:
                reply = await _join(a, name="Ada")
                assert reply["ok"] and reply["match"] == "m1"
                snapshot = reply["sync"]
                assert snapshot["type"] == "snapshot"
                assert snapshot["state"]["players"][reply["you"]]["name"] == "Ada"
                room = sio.namespaces["/game"].room("match:m1")
                assert "m1" in game.matches
                # the tick loop was started by the join; it counts once it runs (the reply may
                # reach the client first)
                await eventually(lambda: room.task_count == 1)

                assert await a.emit_with_ack("input", {"seq": 1, "dx": 1, "dy": 0}) == {"ok": True}
                assert await a.emit_with_ack("input", {"seq": 1, "dx": 0, "dy": 0}) == {"ok": False}
                # the tick loop moves the player and sends numbered deltas
                x0 = snapshot["state"]["players"][reply["you"]]["x"]
                while True:
                    (message,) = await next_event(a, "delta")
                    assert message["epoch"] == snapshot["epoch"]
                    moved = message["delta"].get("players", {}).get(reply["you"], {})
                    if moved.get("x", x0) > x0:
                        break
                # a client that missed deltas gets exactly those
                known = {"epoch": snapshot["epoch"], "version": snapshot["version"]}
                answer = await a.emit_with_ack("sync", known)
                missed = answer["sync"]
                assert missed["type"] == "deltas" and missed["from"] == snapshot["version"]
                seqs = [seq for seq, _ in missed["deltas"]]
                assert seqs == list(range(snapshot["version"] + 1, missed["version"] + 1))
                state = snapshot["state"]
                for _, delta in missed["deltas"]:
                    g.apply_delta(state, delta)
                assert state["players"][reply["you"]]["x"] > x0
                # another epoch, or far behind: a snapshot
                other = await a.emit_with_ack("sync", {"epoch": "other", "version": 1})
                assert other["sync"]["type"] == "snapshot"
            await eventually(lambda: room.task_count == 0 and "m1" not in game.matches)


async def test_bad_input_is_refused_and_the_server_lives_on() -> None:
    sio, game = _server()
    with trio.fail_after(30):
        async with serving(sio) as url, _client(url) as a:
            assert (
                "join a match first"
                in (await a.emit_with_ack("input", {"seq": 1, "dx": 1, "dy": 0}))["error"]
            )
            assert "join a match first" in (await a.emit_with_ack("sync"))["error"]
            # no argument, then bad ones
            for bad in ((), ("m1",), ({"match": "no spaces"},), ({"match": "m1", "token": "?"},)):
                assert "error" in await a.emit_with_ack("join", *bad)
            assert game.matches == {}
            reply = await a.emit_with_ack("join", {"match": "m1"})
            assert reply["ok"]
            for bad_input in ({"seq": "1", "dx": 1, "dy": 0}, [1], {"seq": 2, "dx": 9, "dy": 0}):
                assert "error" in await a.emit_with_ack("input", bad_input)
            assert (await a.emit_with_ack("sync", "junk"))["sync"]["type"] == "snapshot"
            assert (await a.emit_with_ack("input", {"seq": 3, "dx": 0, "dy": 1})) == {"ok": True}


async def test_a_full_match_and_too_many_matches_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(g, "MAX_PLAYERS", 2)
    monkeypatch.setattr(g, "MAX_MATCHES", 1)
    sio, game = _server()
    with trio.fail_after(30):
        async with serving(sio) as url:
            async with AsyncExitStack() as stack:
                clients = [await stack.enter_async_context(_client(url)) for _ in range(3)]
                assert (await _join(clients[0]))["ok"]
                assert (await _join(clients[1]))["ok"]
                refused = await _join(clients[2])
                assert "full" in refused["error"]
                other = await clients[2].emit_with_ack("join", {"match": "m2"})
                assert "too many matches" in other["error"]
                assert list(game.matches) == ["m1"] and len(game.matches["m1"].world.players) == 2
            await eventually(lambda: game.matches == {})


async def test_a_page_with_its_token_takes_its_player_back() -> None:
    sio, game = _server()
    token = "tab-token-0123456789"
    with trio.fail_after(30):
        async with serving(sio) as url:
            async with _client(url) as old, _client(url) as new:
                first = await _join(old, name="Ada", token=token)
                game.matches["m1"].world.players[first["you"]].score = 7
                # new: the same page, reconnected on a new connection
                known = {"epoch": first["sync"]["epoch"], "version": first["sync"]["version"]}
                second = await _join(new, name="Ada", token=token, known=known)
                assert second["you"] == first["you"]
                assert second["sync"]["type"] == "deltas"  # only what it missed
                assert len(game.matches["m1"].world.players) == 1
                args = await next_event(old, "replaced")
                assert args[0]["message"]
                # the old socket no longer controls the player; its leaving removes nothing
                assert (
                    "join a match first"
                    in (await old.emit_with_ack("input", {"seq": 1, "dx": 1, "dy": 0}))["error"]
                )
                old.disconnect()
                assert (await new.emit_with_ack("input", {"seq": 1, "dx": 1, "dy": 0})) == {
                    "ok": True
                }
                assert game.matches["m1"].world.players[first["you"]].score == 7
            await eventually(lambda: game.matches == {})


async def test_inputs_are_rate_limited() -> None:
    sio = Server()
    g.register(sio, rate_limit=(5, 60.0))
    with trio.fail_after(30):
        async with serving(sio) as url, _client(url) as a:
            assert (await _join(a))["ok"]
            answers = [
                await a.emit_with_ack("input", {"seq": i, "dx": 1, "dy": 0}) for i in range(6)
            ]
            assert answers[:4] == [{"ok": True}] * 4
            assert answers[4] == {"error": "rate limited"}


async def test_a_match_made_again_during_the_grace_period_ticks() -> None:
    sio = Server(room_grace_period=30.0)  # the room's loop outlives its last player
    game = g.register(sio)
    with trio.fail_after(30):
        async with serving(sio) as url:
            async with _client(url) as a:
                assert (await _join(a))["ok"]
                room = sio.namespaces["/game"].room("match:m1")
                first = game.matches["m1"]
            await eventually(lambda: "m1" not in game.matches)
            assert room.active and room.task_count == 1  # the loop waits out the grace period
            async with _client(url) as b:
                reply = await _join(b)
                assert game.matches["m1"] is not first and room.task_count == 1
                x0 = reply["sync"]["state"]["players"][reply["you"]]["x"]
                sign = 1 if x0 < g.ARENA_W / 2 else -1
                assert await b.emit_with_ack("input", {"seq": 1, "dx": sign, "dy": 0}) == {
                    "ok": True
                }
                await eventually(
                    lambda: sign * (game.matches["m1"].world.players[reply["you"]].x - x0) > 20
                )

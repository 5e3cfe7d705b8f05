"""Orb Rush (``/game/``) in headless Chromium: two browser contexts join one match, each holds
keys and each sees the other move; the match's tick loop (a task of the room's nursery) stops
when the room empties; one run with the client forced to long-polling.

Positions are read from the player list (``#players li[data-player-id][data-x][data-y]``,
the latest server state as the page applied it); the server side is read from the demo
server itself (``demo_server.app`` is the :class:`~pyserver.trio.socketio.server.Server`).
"""

from __future__ import annotations

import itertools
import time
import uuid
from typing import Any

import pytest
from helpers.server_thread import ServerThread

from pyserver.demo.game import Game, game_of
from pyserver.trio.socketio.server import Server

from .conftest import screenshot

pytestmark = pytest.mark.interop

SERVER_WAIT = 10.0


def _match_name() -> str:
    return "e2e-" + uuid.uuid4().hex[:10]


def _game(demo_server: ServerThread) -> tuple[Server, Game]:
    sio: Server = demo_server.app
    game = game_of(sio)
    assert game is not None
    return sio, game


def _wait_server(predicate: Any, what: str) -> None:
    """Poll the server thread's state until ``predicate()`` (bounded)."""
    deadline = time.monotonic() + SERVER_WAIT
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _join(new_page: Any, url: str) -> tuple[Any, str]:
    page = new_page(url)
    page.wait_for_selector('#status[data-state="connected"]')
    me = page.get_attribute("#game", "data-me")
    assert me
    return page, me


def _position(page: Any, pid: str) -> tuple[float, float]:
    row = page.locator(f'#players li[data-player-id="{pid}"]')
    return float(row.get_attribute("data-x")), float(row.get_attribute("data-y"))


def _wait_players(page: Any, count: int) -> None:
    page.wait_for_function(
        "n => document.querySelectorAll('#players li').length === n"
        " && +document.querySelector('#arena').dataset.drawn === n",
        arg=count,
    )


def _hold_and_watch(mover: Any, mover_id: str, watcher: Any, axis: str) -> None:
    """``mover`` holds a key along ``axis`` (away from the nearer wall) until ``watcher``
    sees its player 60 px away from where it was, then lets go."""
    x0, y0 = _position(watcher, mover_id)
    if axis == "x":
        key, start, attr = ("ArrowRight" if x0 < 400 else "ArrowLeft"), x0, "x"
    else:
        key, start, attr = ("ArrowDown" if y0 < 250 else "ArrowUp"), y0, "y"
    mover.keyboard.down(key)
    try:
        watcher.wait_for_function(
            """([id, attr, start]) => {
                const row = document.querySelector(`#players li[data-player-id="${id}"]`);
                return row !== null && Math.abs(Number(row.dataset[attr]) - start) > 60;
            }""",
            arg=[mover_id, attr, start],
        )
    finally:
        mover.keyboard.up(key)


def test_two_players_see_each_other_move(demo_server: ServerThread, new_page: Any) -> None:
    sio, game = _game(demo_server)
    match = _match_name()
    url = f"{demo_server.base_url}/game/?match={match}"
    a, a_id = _join(new_page, url + "&name=Alice")
    b, b_id = _join(new_page, url + "&name=Bob")
    assert a_id != b_id
    for page in (a, b):
        _wait_players(page, 2)
        assert page.locator("#match-name").inner_text() == match
    assert a.locator(f'#players li[data-player-id="{a_id}"]').get_attribute("data-me") == "true"
    assert "Bob" in a.locator(f'#players li[data-player-id="{b_id}"]').inner_text()

    room = sio.namespaces["/game"].room(f"match:{match}")
    assert room.task_count == 1  # one tick loop for the match, however many players

    _hold_and_watch(a, a_id, b, "x")  # B sees A move
    _hold_and_watch(b, b_id, a, "y")  # A sees B move
    _hold_and_watch(a, a_id, a, "y")  # and A sees itself move

    # A steers onto the orb farthest from B with the mouse; both pages see the score
    world = game.matches[match].world
    bx, by = world.players[b_id].x, world.players[b_id].y
    ox, oy = max(world.orbs.values(), key=lambda o: (o[0] - bx) ** 2 + (o[1] - by) ** 2)
    box = a.locator("#arena").bounding_box()
    scale = box["width"] / 800
    a.mouse.move(box["x"] + ox * scale, box["y"] + oy * scale)
    a.mouse.down()
    try:
        for page in (a, b):
            page.wait_for_function(
                "id => Number(document.querySelector("
                '`#players li[data-player-id="${id}"]`).dataset.score) >= 1',
                arg=a_id,
            )
    finally:
        a.mouse.up()
    screenshot(a, "game-two-players")
    screenshot(b, "game-two-players-other")

    # the loop stops with the room: close both pages, the room empties
    a.context.close()
    b.context.close()
    _wait_server(lambda: room.task_count == 0 and not room.active, "the tick loop to stop")
    _wait_server(lambda: match not in game.matches, "the match to be dropped")


def test_polling_client_plays_with_a_websocket_client(
    demo_server: ServerThread, new_page: Any
) -> None:
    match = _match_name()
    url = f"{demo_server.base_url}/game/?match={match}"
    polled, polled_id = _join(new_page, url + "&transport=polling&name=Polly")
    upgraded, upgraded_id = _join(new_page, url + "&name=Webb")
    for page in (polled, upgraded):
        _wait_players(page, 2)
    upgraded.wait_for_selector('#status[data-transport="websocket"]')

    _hold_and_watch(polled, polled_id, upgraded, "x")
    _hold_and_watch(upgraded, upgraded_id, polled, "y")
    assert polled.get_attribute("#status", "data-transport") == "polling"
    screenshot(polled, "game-polling")


def test_bad_match_name_falls_back_to_lobby(demo_server: ServerThread, new_page: Any) -> None:
    page = new_page(f"{demo_server.base_url}/game/?match=../../etc")
    page.wait_for_selector('#status[data-state="connected"]')
    assert page.locator("#match-name").inner_text() == "lobby"
    page.set_viewport_size({"width": 420, "height": 900})  # a phone: one column
    _wait_players(page, 1)
    screenshot(page, "game-narrow")


def test_a_reconnecting_page_catches_up_with_the_deltas_it_missed(
    demo_server: ServerThread, new_page: Any
) -> None:
    sio, game = _game(demo_server)
    match = _match_name()
    url = f"{demo_server.base_url}/game/?match={match}"
    a, a_id = _join(new_page, url + "&name=Stay")
    b, b_id = _join(new_page, url + "&name=Drop")
    for page in (a, b):
        _wait_players(page, 2)
    assert b.get_attribute("#game", "data-last-sync") == "snapshot"

    def cut_b() -> None:  # in the server's thread: close B's connection under it
        socket = sio.namespaces["/game"].sockets[game.matches[match].owners[b_id]]
        socket.client.close("cut by the test")  # no DISCONNECT packet: the client retries

    demo_server.run_sync(cut_b)
    # the client reconnects by itself, joins again and asks only for what it missed
    b.wait_for_selector('#game[data-joins="2"]')
    b.wait_for_selector('#status[data-state="connected"]')
    assert b.get_attribute("#game", "data-last-sync") == "deltas"
    # B plays a new player, or (had the server not yet seen the cut) takes its own back
    new_b_id = b.get_attribute("#game", "data-me")
    _wait_players(a, 2)
    _wait_players(b, 2)
    assert a.locator(f'#players li[data-player-id="{new_b_id}"]').count() == 1
    _hold_and_watch(a, a_id, b, "x")
    _hold_and_watch(b, new_b_id, a, "y")
    screenshot(b, "game-after-reconnect")


def test_movement_is_interpolated_between_server_states(
    demo_server: ServerThread, new_page: Any
) -> None:
    page, me = _join(new_page, f"{demo_server.base_url}/game/?match={_match_name()}")
    _wait_players(page, 1)
    x0, _ = _position(page, me)
    key, sign = ("ArrowRight", 1) if x0 < 400 else ("ArrowLeft", -1)
    page.keyboard.down(key)
    try:
        # record every x the server sent (the list's data-x) and what 40 frames drew
        seen = page.evaluate(
            """() => new Promise((resolve) => {
                const row = document.querySelector('#players li[data-me="true"]');
                const canvas = document.querySelector('#arena');
                const states = new Set([Number(row.dataset.x)]);
                new MutationObserver(() => states.add(Number(row.dataset.x)))
                    .observe(row, { attributes: true, attributeFilter: ['data-x'] });
                const drawn = [];
                const frame = () => {
                    drawn.push(Number(canvas.dataset.meX));
                    if (drawn.length < 40 || states.size < 4) requestAnimationFrame(frame);
                    else resolve({ drawn, states: [...states] });
                };
                requestAnimationFrame(frame);
            })"""
        )
    finally:
        page.keyboard.up(key)
    drawn, states = seen["drawn"], set(seen["states"])
    assert len(states) >= 4, seen  # the server moved the player over several ticks
    steps = [sign * (b - a) for a, b in itertools.pairwise(drawn)]
    assert all(step >= -0.01 for step in steps), seen  # never jumps back
    between = [x for x in drawn if all(abs(x - s) > 0.05 for s in states)]
    assert between, f"every frame drew a server position: no interpolation ({seen})"


def test_holding_the_mouse_on_the_arena_steers(demo_server: ServerThread, new_page: Any) -> None:
    _, game = _game(demo_server)
    match = _match_name()
    page, me = _join(new_page, f"{demo_server.base_url}/game/?match={match}")
    _wait_players(page, 1)
    x0, y0 = _position(page, me)
    box = page.locator("#arena").bounding_box()
    scale = box["width"] / 800
    target_x = 760 if x0 < 400 else 40  # the far side, on the player's row
    page.mouse.move(box["x"] + target_x * scale, box["y"] + y0 * scale)
    page.mouse.down()
    try:
        page.wait_for_function(
            """([id, x0, y0]) => {
                const row = document.querySelector(`#players li[data-player-id="${id}"]`);
                return Math.abs(Number(row.dataset.x) - x0) > 60
                    && Math.abs(Number(row.dataset.y) - y0) < 1;
            }""",
            arg=[me, x0, y0],
        )
    finally:
        page.mouse.up()
    player = game.matches[match].world.players[me]
    _wait_server(lambda: (player.dx, player.dy) == (0, 0), "the player to stop")

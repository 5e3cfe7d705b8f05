"""The collaborative drawing board in headless Chromium: real mouse (and touch) strokes, read
back as pixels on the other users' canvases.

Each test uses its own board (``?board=...``) so the module's one demo server can serve them
all without one test's strokes showing up in another's.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from helpers.server_thread import ServerThread

from .conftest import screenshot

pytestmark = pytest.mark.interop

# board coordinates -> page coordinates (the canvas is scaled by CSS; 1px border)
TO_PAGE = """([bx, by]) => {
  const c = document.querySelector('#canvas');
  const r = c.getBoundingClientRect();
  return [r.left + c.clientLeft + bx * c.clientWidth / c.width,
          r.top + c.clientTop + by * c.clientHeight / c.height];
}"""

# is the pixel at board (x, y) close to the colour `hex` (a 3x3 neighbourhood, any pixel)?
PIXELS = """(x, y) => document.querySelector('#canvas').getContext('2d')
  .getImageData(x - 1, y - 1, 3, 3).data"""

# is a pixel near board (x, y) (a 3x3 neighbourhood) close to the colour `hex`?
INKED_WITH = f"""([x, y, hex]) => {{
  const want = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  const d = ({PIXELS})(x, y);
  const off = (i) => [0, 1, 2].reduce((sum, k) => sum + Math.abs(d[i + k] - want[k]), 0);
  for (let i = 0; i < d.length; i += 4) if (off(i) < 40) return true;
  return false;
}}"""

# is the 3x3 neighbourhood of board (x, y) all background (white)?
BLANK = f"""([x, y]) => {{
  const d = ({PIXELS})(x, y);
  for (let i = 0; i < d.length; i++) if (i % 4 !== 3 && d[i] < 250) return false;
  return true;
}}"""

SYNCED = "document.querySelector('#canvas').dataset.synced === 'true'"
CONFIRMED = "document.querySelector('#canvas').dataset.pending === '0'"


def open_board(new_page: Any, server: ServerThread, board: str, query: str = "", **ctx: Any) -> Any:
    page = new_page(f"{server.base_url}/drawing/?board={board}{query}", **ctx)
    page.wait_for_function(SYNCED)
    page.wait_for_function("document.querySelector('#your-color').dataset.color")
    return page


def color_of(page: Any) -> str:
    color = page.get_attribute("#your-color", "data-color")
    assert color is not None and color.startswith("#") and len(color) == 7
    return color


def draw(page: Any, points: list[tuple[float, float]]) -> None:
    """Drag the mouse through ``points`` (board coordinates), button held."""
    at = [page.evaluate(TO_PAGE, list(p)) for p in points]
    page.mouse.move(*at[0])
    page.mouse.down()
    for x, y in at[1:]:
        page.mouse.move(x, y, steps=12)
    page.mouse.up()


def along(start: tuple[int, int], end: tuple[int, int], n: int = 5) -> list[list[int]]:
    """``n`` points strictly inside the segment start-end (board coordinates)."""
    (x0, y0), (x1, y1) = start, end
    return [
        [round(x0 + (x1 - x0) * k / (n + 1)), round(y0 + (y1 - y0) * k / (n + 1))]
        for k in range(1, n + 1)
    ]


def wait_inked(page: Any, points: list[list[int]], color: str) -> None:
    for x, y in points:
        page.wait_for_function(INKED_WITH, arg=[x, y, color])


def wait_users(page: Any, count: int) -> None:
    page.wait_for_function(
        "(n) => document.querySelector('#user-count').textContent === `Users: ${n}`", arg=count
    )


def dataset(page: Any, key: str) -> str:
    return str(page.evaluate("(k) => document.querySelector('#canvas').dataset[k]", key))


def test_two_users_see_each_others_strokes_and_a_late_joiner_sees_both(
    demo_server: ServerThread, new_page: Any
) -> None:
    alice = open_board(new_page, demo_server, "pixels")
    bob = open_board(new_page, demo_server, "pixels")
    wait_users(alice, 2)
    wait_users(bob, 2)
    a_color, b_color = color_of(alice), color_of(bob)
    assert a_color != b_color, "two users on a board get different colours"
    assert alice.text_content("#board-name") == "pixels"

    a_line = ((150, 200), (650, 260))
    b_line = ((150, 480), (650, 420))
    draw(alice, list(a_line))
    draw(bob, list(b_line))

    wait_inked(bob, along(*a_line), a_color)  # Bob sees Alice's stroke, in her colour
    wait_inked(alice, along(*b_line), b_color)  # and Alice sees Bob's

    bob.click('.width[data-width="16"]')  # the marker: 16 units wide
    marker = ((750, 620), (1100, 620))
    draw(bob, list(marker))
    wait_inked(alice, [[x, y + 6] for x, y in along(*marker)], b_color)  # 6 off the middle
    alice.click('.width[data-width="8"]')
    wave = [(760 + 20 * i, 300 + 90 * math.sin(i / 2.2)) for i in range(18)]
    draw(alice, wave)
    wait_inked(bob, [[round(x), round(y)] for x, y in wave[1:-1]], a_color)
    alice.wait_for_function(CONFIRMED)
    bob.wait_for_function(CONFIRMED)
    screenshot(bob, "drawing-two-users")

    carol = open_board(new_page, demo_server, "pixels")  # a late joiner
    wait_inked(carol, along(*a_line), a_color)
    wait_inked(carol, along(*b_line), b_color)
    wait_inked(carol, along(*marker), b_color)
    wait_inked(carol, [[round(x), round(y)] for x, y in wave[1:-1]], a_color)
    assert dataset(carol, "lastSync") == "snapshot"
    alice.wait_for_function(  # the same board: same version (Alice may be a delta behind)
        "(v) => document.querySelector('#canvas').dataset.version === v",
        arg=dataset(carol, "version"),
    )
    for page in (alice, bob, carol):
        wait_users(page, 3)
    screenshot(carol, "drawing-late-joiner")

    carol.context.close()  # leaving lowers everyone's count
    wait_users(alice, 2)


def test_clear_clears_everyone(demo_server: ServerThread, new_page: Any) -> None:
    alice = open_board(new_page, demo_server, "clearing")
    bob = open_board(new_page, demo_server, "clearing")
    line = ((300, 300), (900, 300))
    draw(alice, list(line))
    wait_inked(bob, along(*line), color_of(alice))
    epoch = dataset(bob, "epoch")

    bob.click("#clear-btn")
    for page in (alice, bob):
        for x, y in along(*line):
            page.wait_for_function(BLANK, arg=[x, y])
        page.wait_for_function("document.querySelector('#canvas').dataset.strokes === '0'")
    assert dataset(alice, "epoch") != epoch, "a clear starts a new epoch"

    late = open_board(new_page, demo_server, "clearing")  # the clear is kept for newcomers
    assert dataset(late, "strokes") == "0"
    assert all(late.evaluate(BLANK, p) for p in along(*line))


def test_boards_are_separate_rooms(demo_server: ServerThread, new_page: Any) -> None:
    red = open_board(new_page, demo_server, "room-a")
    blue = open_board(new_page, demo_server, "room-b")
    wait_users(red, 1)
    wait_users(blue, 1)
    draw(red, [(200, 200), (400, 200)])
    red.wait_for_function(CONFIRMED)
    assert int(dataset(red, "version")) >= 1
    # the delta went out before Red's ack; Blue, on another board, never got it
    assert dataset(blue, "version") == "0"
    assert all(blue.evaluate(BLANK, p) for p in along((200, 200), (400, 200)))
    wait_users(blue, 1)
    assert blue.is_visible("#hint")  # an empty board says what to do
    assert not red.is_visible("#hint")
    screenshot(blue, "drawing-empty-board")


def test_touch_draws_for_the_others(demo_server: ServerThread, new_page: Any) -> None:
    watcher = open_board(new_page, demo_server, "touch")
    phone = open_board(new_page, demo_server, "touch", has_touch=True)
    x, y = phone.evaluate(TO_PAGE, [600, 375])
    phone.touchscreen.tap(x, y)  # a tap is a dot
    watcher.wait_for_function(INKED_WITH, arg=[600, 375, color_of(phone)])


def test_reconnect_shows_status_and_loses_nothing(demo_server: ServerThread, new_page: Any) -> None:
    alice = open_board(new_page, demo_server, "reconnect")
    bob = open_board(new_page, demo_server, "reconnect")
    a_color, b_color = color_of(alice), color_of(bob)
    first = ((100, 120), (500, 120))
    draw(alice, list(first))
    wait_inked(bob, along(*first), a_color)
    alice.wait_for_function(CONFIRMED)
    known = int(dataset(alice, "version"))

    # cut Alice's connection and keep it down (no automatic reconnect) while both draw
    alice.evaluate("() => { const io = window.drawingApp.socket.io; io.reconnection(false); }")
    alice.evaluate("() => window.drawingApp.socket.io.engine.close()")
    alice.wait_for_function("document.querySelector('#status').dataset.state === 'reconnecting'")
    assert "Reconnecting" in (alice.text_content("#status") or "")
    wait_users(bob, 1)

    offline = ((100, 300), (500, 340))
    missed = ((700, 500), (1100, 520))
    draw(alice, list(offline))  # queued on Alice's page
    alice.wait_for_function("Number(document.querySelector('#canvas').dataset.pending) > 0")
    assert "waiting to be sent" in (alice.text_content("#status") or "")
    screenshot(alice, "drawing-reconnecting")
    draw(bob, list(missed))  # drawn while Alice is away
    bob.wait_for_function(CONFIRMED)
    missed_deltas = int(dataset(bob, "version")) - known
    assert missed_deltas >= 1

    alice.evaluate(
        "() => { const s = window.drawingApp.socket; s.io.reconnection(true); s.connect(); }"
    )
    alice.wait_for_function("document.querySelector('#status').dataset.state === 'connected'")
    alice.wait_for_function(CONFIRMED)
    wait_inked(bob, along(*offline), a_color)  # what Alice drew offline arrived
    wait_inked(alice, along(*missed), b_color)  # and Alice caught up with what she missed
    # only what she missed (Bob's stroke's batches), not a snapshot
    assert dataset(alice, "lastSync") == f"deltas:{missed_deltas}"
    assert color_of(alice) == a_color, "the colour survives a reconnect"
    wait_users(bob, 2)
    # Alice's last batch is the board's last delta, and she has it (it is confirmed)
    bob.wait_for_function(
        "(v) => document.querySelector('#canvas').dataset.version === v",
        arg=dataset(alice, "version"),
    )
    screenshot(alice, "drawing-reconnected")


def test_automatic_reconnect_over_long_polling(demo_server: ServerThread, new_page: Any) -> None:
    alice = open_board(new_page, demo_server, "auto", "&transport=polling")
    bob = open_board(new_page, demo_server, "auto")
    first_id = alice.evaluate("window.drawingApp.socket.id")
    alice.evaluate("() => window.drawingApp.socket.io.engine.close()")  # the client reconnects
    alice.wait_for_function("document.querySelector('#status').dataset.reconnects === '1'")
    alice.wait_for_function(SYNCED)
    assert alice.evaluate("window.drawingApp.socket.id") != first_id
    line = ((300, 500), (900, 500))
    draw(alice, list(line))
    wait_inked(bob, along(*line), color_of(alice))
    wait_users(bob, 2)


def test_long_polling(demo_server: ServerThread, new_page: Any) -> None:
    alice = open_board(new_page, demo_server, "polling", "&transport=polling")
    bob = open_board(new_page, demo_server, "polling", "&transport=polling")
    for page in (alice, bob):
        assert page.evaluate("window.drawingApp.socket.io.engine.transport.name") == "polling"
    a_line = ((200, 150), (800, 600))
    b_line = ((200, 600), (800, 150))
    draw(alice, list(a_line))
    draw(bob, list(b_line))
    wait_inked(bob, along(*a_line)[:2], color_of(alice))  # away from the crossing
    wait_inked(alice, along(*b_line)[:2], color_of(bob))
    assert alice.evaluate("window.drawingApp.socket.io.engine.transport.name") == "polling"
    screenshot(alice, "drawing-polling")


def test_bad_batches_are_refused_and_the_rate_limit_answers(
    demo_server: ServerThread, new_page: Any
) -> None:
    page = open_board(new_page, demo_server, "abuse")
    replies = page.evaluate(
        """async () => {
          const s = window.drawingApp.socket;
          const bad = [
            null, "x", [1, 2, 3, 4],
            {id: "a", w: 4, p: [1, 2, 3]},                 // not whole segments
            {id: "a", w: 5, p: [1, 2, 3, 4]},              // unknown width
            {id: "a", w: 4, p: [1, 2, 3, 99999]},          // off the board
            {id: "a", w: 4, p: [1, 2, 3, "4"]},            // not a number
            {id: "a b", w: 4, p: [1, 2, 3, 4]},            // bad id
            {id: "a", w: 4, p: new Array(4 * 1000).fill(1)},  // too many segments
            {id: "a", w: 4, p: [1, 2, 3, 4], extra: 1},
          ];
          const out = [];
          for (const b of bad) out.push(await s.timeout(5000).emitWithAck("strokes", b));
          return out;
        }"""
    )
    assert all(isinstance(r, dict) and r.get("error") for r in replies), replies
    assert dataset(page, "version") == "0", "nothing bad was committed"

    answers = page.evaluate(
        """async () => {
          const s = window.drawingApp.socket;
          const all = [];
          for (let i = 0; i < 80; i++) all.push(s.timeout(5000).emitWithAck("sync", null));
          return Promise.all(all);
        }"""
    )
    limited = [a for a in answers if a.get("error") == "rate limited"]
    assert limited, "80 events at once go over the per-socket limit"
    assert any(a.get("type") == "snapshot" for a in answers)
    # still connected, still drawing
    assert page.evaluate("window.drawingApp.socket.connected")
    page.wait_for_function("document.querySelector('#status').dataset.state === 'connected'")


def test_invalid_board_name_is_refused_in_the_page(
    demo_server: ServerThread, new_page: Any
) -> None:
    page = new_page(f"{demo_server.base_url}/drawing/?board=no%20spaces!")
    page.wait_for_function("document.querySelector('#status').dataset.state === 'error'")
    assert "invalid board name" in (page.text_content("#status") or "")

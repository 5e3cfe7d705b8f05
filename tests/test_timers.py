"""DeadlineTimer: one task wakes many sans-IO cores at their deadlines."""

from __future__ import annotations

import trio
import trio.testing

from pyserver.transports.timers import DeadlineTimer


async def test_items_fire_in_deadline_order_and_earlier_deadlines_win(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fired: list[tuple[str, float]] = []
    timer: DeadlineTimer[str] = DeadlineTimer(lambda item, now: fired.append((item, now)))
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(timer.run)
            start = trio.current_time()
            timer.schedule("b", start + 2)
            timer.schedule("a", start + 1)
            timer.schedule("a", start + 3)  # later than the pending one: ignored
            timer.schedule("c", None)  # no deadline: nothing to do
            await trio.sleep(1.5)
            timer.schedule("b", start + 1.6)  # earlier than the pending 2.0: replaces it
            await trio.sleep(1)
            nursery.cancel_scope.cancel()
    assert [item for item, _ in fired] == ["a", "b"]
    assert fired[0][1] >= start + 1 and fired[1][1] >= start + 1.6
    assert fired[1][1] < start + 2  # the superseded entry did not fire a second time


async def test_an_item_can_reschedule_itself_from_on_due(
    autojump_clock: trio.testing.MockClock,
) -> None:
    count = 0

    def due(item: str, now: float) -> None:
        nonlocal count
        count += 1
        if count < 3:
            timer.schedule(item, now + 1)

    timer: DeadlineTimer[str] = DeadlineTimer(due)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(timer.run)
            timer.schedule("x", trio.current_time() + 1)
            await trio.sleep(5)
            nursery.cancel_scope.cancel()
    assert count == 3

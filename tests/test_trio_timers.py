"""DeadlineTimer: one task wakes many sans-IO cores at their deadlines."""

from __future__ import annotations

import trio
import trio.testing

from pyserver.trio.timers import DeadlineTimer


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


async def test_unscheduled_items_do_not_fire_and_do_not_pile_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """``unschedule`` (a connection that closed): the item does not fire, and the heap is
    rebuilt without such entries once they are most of it, so gone items are let go."""
    fired: list[int] = []
    timer: DeadlineTimer[int] = DeadlineTimer(lambda item, now: fired.append(item))
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(timer.run)
            start = trio.current_time()
            for item in range(1000):
                timer.schedule(item, start + 1 + item / 1000)
                if item % 10:
                    timer.unschedule(item)  # nine in ten go before their deadline
            timer.unschedule(-1)  # never scheduled: nothing happens
            assert len(timer._heap) <= 100 + 65
            timer.schedule(5, start + 0.5)  # scheduled again after it went: fires
            await trio.sleep(3)
            nursery.cancel_scope.cancel()
    assert fired == [5, *range(0, 1000, 10)]

"""Room nurseries: ``sio.room(name).start_soon(fn)`` tasks live as long as the room.

Most tests drive room membership through the namespace's adapter (what ``socket.join`` /
``leave`` / a disconnect do) under ``MockClock(autojump_threshold=0)``, so grace periods
pass without waiting; one runs with real clients on loopback.
"""

from __future__ import annotations

import pytest
import trio
import trio.lowlevel
import trio.testing
from helpers.sio_client import RawClient, serving

from pyserver import Server
from pyserver.socketio import Sid
from pyserver.trio.socketio import Socket, current_room


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


class Ticker:
    def __init__(self) -> None:
        self.ticks = 0
        self.rooms: list[str] = []
        self.cancelled = 0

    async def __call__(self, period: float) -> None:
        self.rooms.append(current_room())
        try:
            while True:
                await trio.sleep(period)
                self.ticks += 1
        except trio.Cancelled:
            self.cancelled += 1
            raise


async def test_room_task_cancelled_when_room_empties(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sio = Server()
    adapter = sio.main.adapter
    ticker = Ticker()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(sio.run)
            adapter.add_all(Sid("s1"), ["game"])
            adapter.add_all(Sid("s2"), ["game"])
            sio.room("game").start_soon(ticker, 1.0)
            sio.room("game").start_soon(ticker, 1.0)
            await trio.sleep(5.5)
            assert ticker.ticks == 10 and ticker.rooms == ["game", "game"]
            assert sio.room("game").task_count == 2
            assert sio.statistics()["namespaces"]["/"]["room_tasks"] == 2
            adapter.del_all(Sid("s1"))
            await trio.sleep(2)
            assert ticker.cancelled == 0  # one member left
            adapter.del_(Sid("s2"), "game")
            await trio.lowlevel.checkpoint()
            await trio.sleep(0.1)
            assert ticker.cancelled == 2
            assert not sio.room("game").active
            assert "game" not in sio.main.room_nurseries
            nursery.cancel_scope.cancel()


async def test_grace_period_and_rejoin(autojump_clock: trio.testing.MockClock) -> None:
    sio = Server(room_grace_period=10.0)
    adapter = sio.main.adapter
    ticker = Ticker()
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            await nursery.start(sio.run)
            adapter.add_all(Sid("s1"), ["board"])
            sio.room("board").start_soon(ticker, 1.0)
            await trio.sleep(1)
            adapter.del_all(Sid("s1"))
            await trio.sleep(5)
            assert ticker.cancelled == 0  # within the grace period
            adapter.add_all(Sid("s2"), ["board"])  # someone came back: the room lives on
            await trio.sleep(20)
            assert ticker.cancelled == 0
            adapter.del_all(Sid("s2"))
            await trio.sleep(9)
            assert ticker.cancelled == 0
            await trio.sleep(2)
            assert ticker.cancelled == 1
            # a per-room grace overrides the server's
            adapter.add_all(Sid("s3"), ["quick"])
            sio.room("quick", grace=0.5).start_soon(ticker, 1.0)
            await trio.sleep(0.1)
            adapter.del_all(Sid("s3"))
            await trio.sleep(1)
            assert ticker.cancelled == 2
            nursery.cancel_scope.cancel()


async def test_room_close_failing_task_and_shutdown(autojump_clock: trio.testing.MockClock) -> None:
    sio = Server()
    adapter = sio.main.adapter
    ticker = Ticker()

    async def crash() -> None:
        await trio.sleep(1)
        raise RuntimeError("room task bug")

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(sio.run)
            adapter.add_all(Sid("s1"), ["a", "b"])
            sio.room("a").start_soon(ticker, 1.0)
            sio.room("a").start_soon(crash)  # logged, ends only itself
            await trio.sleep(3.5)
            assert ticker.ticks == 3 and ticker.cancelled == 0
            sio.room("a").close()
            await trio.sleep(0.1)
            assert ticker.cancelled == 1
            # a closed room's nursery is reopened by the next start_soon
            sio.room("a").start_soon(ticker, 1.0)
            sio.room("b").start_soon(ticker, 1.0)
            await trio.sleep(1.5)
            nursery.cancel_scope.cancel()
    assert ticker.cancelled == 3  # the server stopping ends every room


async def test_room_tasks_with_real_clients() -> None:
    sio = Server()
    started = trio.Event()
    ended = trio.Event()

    async def game_loop(room: str) -> None:
        started.set()
        try:
            while True:
                sio.to(room).emit("tick", current_room())
                await trio.sleep(0.02)
        finally:
            ended.set()

    @sio.on("play")
    async def play(socket: Socket, room: str) -> None:
        socket.join(room)
        sio.room(room).start_soon(game_loop, room)

    with trio.fail_after(10):
        async with serving(sio) as url:
            raw = await RawClient.open(url)
            await raw.join()
            await raw.send_sio('2["play","g1"]')
            await started.wait()
            assert await raw.recv_sio() == '2["tick","g1"]'
            await raw.close()  # the last member leaves: the loop is cancelled
            await ended.wait()

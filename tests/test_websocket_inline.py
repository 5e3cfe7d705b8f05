"""Inline work (``pyserver.trio.websocket.inline``): handlers run by the task that read their
message.

Three levels: the module's plain functions (the slot, ``run_first_step``/``resume`` against
Trio's own primitives), the WebSocket shell (work offered from ``serve_messages`` callbacks:
run in the reading task, replies of a batch in one write, work that blocks keeps its task
while a new one goes on reading, ``on_end`` at the end of the reading even while blocked
work runs), and the Socket.IO server (a blocked handler delays neither the connection's
other namespaces nor the disconnect of its client).

Peers: raw sockets with hand-made frames (``tests/helpers/ws_client.py``'s ``RawClient``)
and raw Engine.IO over ``websockets`` (``tests/helpers/sio_client.py``)."""

from __future__ import annotations

import contextvars
from collections.abc import Coroutine
from typing import Any

import pytest
import trio
from helpers.sio_client import RawClient as SioRawClient
from helpers.sio_client import eventually, serving
from helpers.ws_client import CLOSE, TEXT, RawClient, masked
from helpers.ws_client import serving as serving_app

from pyserver import Server, _frames
from pyserver.errors import SocketDisconnected
from pyserver.http import WebSocket
from pyserver.trio.http.app import App
from pyserver.trio.socketio import Socket
from pyserver.trio.websocket import fanout, inline, reactor, sending, writer
from pyserver.trio.websocket.connection import WebSocket as TrioWebSocket
from pyserver.trio.websocket.reader import Reading

TIMEOUT = 20


@pytest.fixture(autouse=True, params=["reactor", "reader-tasks"])
def reading(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs with the run's reactor reading the sockets and with a reader task
    per connection (the reactor turned off, as on other platforms)."""
    monkeypatch.setattr(reactor, "ENABLED", request.param == "reactor" and reactor.ENABLED)
    return str(request.param)


# -- the module ---------------------------------------------------------------------------


def test_first_step_of_work_that_does_not_block() -> None:
    seen: list[int] = []

    async def work() -> int:
        seen.append(1)
        return 5

    assert inline.run_first_step(work()) is inline.FINISHED
    assert seen == [1]


def test_first_step_exception_propagates() -> None:
    async def work() -> None:
        raise KeyError("x")

    with pytest.raises(KeyError):
        inline.run_first_step(work())


async def _finish(coro: Coroutine[Any, Any, Any]) -> Any:
    yielded = inline.run_first_step(coro)
    assert yielded is not inline.FINISHED
    return await inline.resume(coro, yielded)


async def test_resume_continues_blocked_work_with_its_result() -> None:
    event = trio.Event()

    async def work() -> str:
        await event.wait()  # registers the current task in the event, then yields
        await trio.lowlevel.checkpoint()
        return "done"

    async with trio.open_nursery() as nursery:
        nursery.start_soon(_set_later, event)
        with trio.fail_after(TIMEOUT):
            assert await _finish(work()) == "done"


async def _set_later(event: trio.Event) -> None:
    await trio.sleep(0.01)
    event.set()


async def test_resume_delivers_cancellation_and_exceptions() -> None:
    cleaned: list[str] = []

    async def forever() -> None:
        try:
            await trio.sleep_forever()
        finally:
            cleaned.append("forever")

    with trio.move_on_after(0.01) as scope:
        await _finish(forever())
    assert scope.cancelled_caught
    assert cleaned == ["forever"]

    async def fails() -> None:
        await trio.lowlevel.checkpoint()
        raise ValueError("late")

    with pytest.raises(ValueError, match="late"):
        await _finish(fails())


async def test_resume_runs_every_step_in_the_given_context() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("inline_test_var")
    gate = trio.Event()
    seen: list[str] = []

    async def work() -> None:
        var.set("set by the first step")
        await gate.wait()
        seen.append(var.get("unset"))

    async def open_gate() -> None:
        gate.set()

    context = contextvars.copy_context()
    coro = work()
    yielded = context.run(inline.run_first_step, coro)  # the first step, in ``context``
    assert var.get("unset") == "unset"  # (not in this task's context)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(open_gate)  # (runs once resume has handed the wait to Trio)
        await inline.resume(coro, yielded, context)
    assert seen == ["set by the first step"]


# -- the WebSocket shell ------------------------------------------------------------------


class Offers:
    """A ``serve_messages`` consumer whose every message offers work to the reader:
    "wait" blocks on ``gate`` ("wait then fail" then raises), "open" opens it, "fail" raises
    at once, anything else is echoed at once (with ``send_nowait``, or as an encoded frame,
    as emits are, with ``by_frame``)."""

    def __init__(self, by_frame: bool = False) -> None:
        self.by_frame = by_frame
        self.gate = trio.Event()
        self.tasks: list[tuple[str, trio.lowlevel.Task]] = []
        self.reader_tasks: list[trio.lowlevel.Task] = []
        self.ended: list[str] = []
        self.returned = trio.Event()
        self.waiting = trio.Event()
        self.ws: TrioWebSocket | None = None

    def app(self) -> App:
        app = App()

        @app.websocket("/offers")
        async def handler(ws: WebSocket) -> None:
            assert isinstance(ws, TrioWebSocket)
            self.ws = ws

            def on_message(message: str | bytes) -> inline.Work:
                assert isinstance(message, str)
                self.reader_tasks.append(trio.lowlevel.current_task())
                if message == "open":
                    self.gate.set()
                return lambda: self.work(ws, message)  # (run by the reader, after the batch)

            await ws.serve_messages(on_message, lambda: self.ended.append("end"))
            self.returned.set()

        return app

    async def closed_normally(self, client: RawClient) -> None:
        """The client closes with 1000, the server answers, and serve_messages returns."""
        await client.send(masked(CLOSE, b"\x03\xe8"))
        assert (await client.until_close())[1] == 1000
        await self.returned.wait()

    async def work(self, ws: TrioWebSocket, message: str) -> None:
        self.tasks.append((message, trio.lowlevel.current_task()))
        if message in ("wait", "wait then fail"):
            self.waiting.set()
            await self.gate.wait()
            if message == "wait then fail":
                raise RuntimeError("work failed after blocking")
            if not ws.closed:
                ws.send_nowait("released")
            return
        if message == "fail":
            raise RuntimeError("work failed")
        if self.by_frame:
            ws.send_frame_nowait(_frames.Encoder().text(message))
        else:
            ws.send_nowait(message)


def count_writes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every write(2) the shell makes from now on: its own, and the Rust fan-out's."""
    writes: list[bytes] = []
    real, many, each = sending._os_write, fanout._write_many, sending._write_each

    def write(fd: int, data: bytes | memoryview) -> int:
        writes.append(bytes(data))
        return real(fd, data)

    monkeypatch.setattr(sending, "_os_write", write)  # direct writes
    monkeypatch.setattr(writer, "_os_write", write)  # the writer task's
    if many is not None and each is not None:

        def write_many(fds: list[int], data: bytes) -> list[tuple[int, int]]:
            writes.extend(data for _ in fds)
            return many(fds, data)

        def write_each(fds: list[int], datas: list[bytes]) -> list[tuple[int, int]]:
            writes.extend(datas)
            return each(fds, datas)

        monkeypatch.setattr(fanout, "_write_many", write_many)
        monkeypatch.setattr(sending, "_write_each", write_each)
    return writes


@pytest.mark.parametrize("by_frame", [False, True], ids=["send_nowait", "send_frame_nowait"])
async def test_work_runs_in_the_reading_task_and_its_replies_go_in_one_write(
    monkeypatch: pytest.MonkeyPatch, by_frame: bool
) -> None:
    offers = Offers(by_frame)
    with trio.fail_after(TIMEOUT):
        async with serving_app(offers.app()) as (_, port):
            client = await RawClient.open(port, "/offers")
            writes = count_writes(monkeypatch)
            # three messages in one segment: one read, one batch
            await client.send(masked(TEXT, b"a") + masked(TEXT, b"b") + masked(TEXT, b"c"))
            assert [await client.next() for _ in range(3)] == ["a", "b", "c"]
            assert len(writes) == 1  # the reader wrote the three replies itself, at once
            assert [task for _, task in offers.tasks] == offers.reader_tasks
            await offers.closed_normally(client)
    assert offers.ended == ["end"]


async def test_blocked_work_keeps_its_task_and_reading_goes_on() -> None:
    offers = Offers()
    with trio.fail_after(TIMEOUT):
        async with serving_app(offers.app()) as (_, port):
            client = await RawClient.open(port, "/offers")
            # "wait" blocks; "x", offered in the same batch, runs in the new reader at once
            await client.send(masked(TEXT, b"wait") + masked(TEXT, b"x"))
            assert await client.next() == "x"
            await client.send(masked(TEXT, b"y"))
            assert await client.next() == "y"
            await client.send(masked(TEXT, b"open"))
            assert {await client.next(), await client.next()} == {"released", "open"}
            by_message = dict(offers.tasks)
            first_reader = offers.reader_tasks[0]
            assert by_message["wait"] is first_reader  # the blocked work stayed where it began
            assert by_message["x"] is not first_reader
            assert by_message["y"] is offers.reader_tasks[2]
            await offers.closed_normally(client)
    assert offers.ended == ["end"]


async def test_end_of_reading_is_reported_while_blocked_work_runs(reading: str) -> None:
    offers = Offers()
    with trio.fail_after(TIMEOUT):
        async with serving_app(offers.app()) as (_, port):
            client = await RawClient.open(port, "/offers")
            await client.send(masked(TEXT, b"wait"))
            await offers.waiting.wait()
            await client.send(masked(CLOSE, b"\x03\xe8"))
            assert (await client.until_close())[1] == 1000
            # the peer is gone: on_end is called although the blocked work still runs (in
            # the handler task, which read first, or in a reactor task)
            await eventually(lambda: offers.ended == ["end"])
            if reading == "reader-tasks":
                assert not offers.returned.is_set()  # the handler task is the one keeping it
            offers.gate.set()
            await offers.returned.wait()
            assert offers.ws is not None and offers.ws._reading is Reading.ENDED


async def test_failing_work_closes_with_1011(caplog: pytest.LogCaptureFixture) -> None:
    offers = Offers()
    with trio.fail_after(TIMEOUT):
        async with serving_app(offers.app()) as (_, port):
            client = await RawClient.open(port, "/offers")
            await client.send(masked(TEXT, b"a") + masked(TEXT, b"fail"))
            assert await client.next() == "a"
            assert (await client.until_close())[1] == 1011
            await offers.returned.wait()
    assert caplog.text.count("inline work failed") == 1


async def test_work_failing_after_it_blocked_is_logged_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Whichever task finishes the blocked work (the reader that began it, or a reactor
    task), the one log line carries the work's traceback."""
    offers = Offers()
    with trio.fail_after(TIMEOUT):
        async with serving_app(offers.app()) as (_, port):
            client = await RawClient.open(port, "/offers")
            await client.send(masked(TEXT, b"wait then fail"))
            await offers.waiting.wait()
            await client.send(masked(TEXT, b"open"))
            assert await client.next() == "open"
            assert (await client.until_close())[1] == 1011  # (logged before)
    [logged] = [r for r in caplog.records if "inline work failed" in r.getMessage()]
    assert logged.exc_info is not None and logged.exc_info[0] is RuntimeError
    assert "RuntimeError: work failed after blocking" in (logged.exc_text or "")
    assert "in work" in (logged.exc_text or "")  # (the frame of Offers.work)


# -- the Socket.IO server -----------------------------------------------------------------


def blocking_server() -> tuple[Server, dict[str, Any]]:
    sio = Server()
    state: dict[str, Any] = {"gate": trio.Event(), "asked": trio.Event(), "outcomes": []}

    @sio.on("block")
    async def block(socket: Socket) -> str:
        await state["gate"].wait()
        return "unblocked"

    @sio.on("ask-client")
    async def ask_client(socket: Socket) -> None:
        state["asked"].set()
        try:
            state["outcomes"].append(await socket.emit_with_ack("question"))
        except SocketDisconnected as exc:
            state["outcomes"].append(exc)

    @sio.on("disconnect")
    async def gone(socket: Socket, reason: str) -> None:
        state["outcomes"].append(reason)

    other = sio.of("/other")

    @other.on("ping")
    async def ping(socket: Socket) -> str:
        return "pong"

    return sio, state


async def test_blocked_handler_does_not_delay_other_namespaces() -> None:
    sio, state = blocking_server()
    with trio.fail_after(TIMEOUT):
        async with serving(sio) as url:
            client = await SioRawClient.open(url)
            await client.join("/")
            await client.join("/other")
            await client.send_sio('21["block"]')
            await client.send_sio('2/other,7["ping"]')
            assert await client.recv_sio() == '3/other,7["pong"]'
            state["gate"].set()
            assert await client.recv_sio() == '31["unblocked"]'
            await client.close()


async def test_disconnect_reaches_a_handler_blocked_on_its_client() -> None:
    sio, state = blocking_server()
    with trio.fail_after(TIMEOUT):
        async with serving(sio) as url:
            client = await SioRawClient.open(url)
            await client.join("/")
            await client.send_sio('2["ask-client"]')
            assert (await client.recv_sio()).startswith('20["question"]')
            await state["asked"].wait()
            await client.close()  # never answers: the pending ack fails at once, no timeout
            await eventually(lambda: len(state["outcomes"]) == 2)
            assert isinstance(state["outcomes"][0], SocketDisconnected)
            assert state["outcomes"][1] == "transport close"

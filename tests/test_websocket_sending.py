"""The one rule of who writes a connection's bytes (``Sender._route``, in
``pyserver/trio/websocket/sending.py``) against its inline copies on the hot paths.

``_enqueue`` (every frame queued), ``fanout._write_to_many`` (every recipient of a
broadcast) and ``sending.queue_for_step`` (every recipient during a reactor step) take the
rule's decision without calling it, and ``_enqueue``/``queue_for_step`` check the outbox's
limit (``Outbox._no_room``) inline. These tests put a connection in every combination of
the state the rule reads and check that each copy does what the rule says. The connection
is real (a socket pair, the real core); only the last step of each route (waking the
writer, deferring to the ticker, closing as a slow consumer, the Rust write) is recorded
instead of done."""

from __future__ import annotations

import itertools
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import trio

from pyserver.http import Headers, Request
from pyserver.trio.websocket import fanout, sending
from pyserver.trio.websocket.connection import WebSocket
from pyserver.trio.websocket.sending import Route
from pyserver.trio.websocket.writer import WriterState
from pyserver.ws.connection import WebSocketConnection

FRAME = b"\x81\x05hello"


class Probe(WebSocket):
    """A connection whose routes' last steps are recorded, not taken."""

    __slots__ = ("calls",)

    def __init__(self, stream: trio.abc.Stream) -> None:
        super().__init__(
            stream, Request("GET", "/probe", "", Headers()), WebSocketConnection(), max_outbox=4
        )
        self.calls: list[str] = []

    def _wake_writer(self) -> None:
        self.calls.append("wake")

    def _defer(self) -> None:
        self.calls.append("defer")

    def _slow_consumer(self) -> None:
        self.calls.append("slow")


STATES = list(
    itertools.product(
        [False, True],  # corked
        [False, True],  # the writer parked (``_writer`` set)
        list(WriterState),
        [False, True],  # a reactor step under way
        [False, True],  # a direct write in this batch
        [False, True],  # something queued already
        [False, True],  # the connection's nursery runs
        [False, True],  # done
    )
)


def put(ws: Probe, state: tuple[Any, ...], nursery: trio.Nursery, step: list[Any]) -> None:
    corked, parked, writer_state, in_step, this_batch, queued, running, done = state
    ticker = sending.ticker_of_run()
    ws._ticker = ticker
    ws.calls = []
    ws._corked = corked
    ws._writer = trio.lowlevel.current_task() if parked else None
    ws._writer_state = writer_state
    ws._writer_busy = False
    ws._stepped = False
    ticker.step = step if in_step else None
    ticker.first = None
    ws._direct_gen = ticker.generation if this_batch else ticker.generation - 1
    ws._outbox = [FRAME] if queued else []
    ws._outbox_bytes = len(FRAME) if queued else 0
    ws._nursery = nursery if running else None
    ws._done = done


def observed(ws: Probe, step: list[Any]) -> Route:
    """The route ``_enqueue`` (or ``queue_for_step``) took, from what it did."""
    if "wake" in ws.calls or ws._writer_busy:
        return Route.WRITER
    if "defer" in ws.calls:
        return Route.TICKER
    if ws in step:
        return Route.STEP
    assert ws.calls == []
    return Route.READER


@pytest.fixture
async def probes() -> Iterator[tuple[Probe, Probe, trio.Nursery]]:
    """Two probes: one on a plain socket (direct writes possible), one on a memory stream."""
    a, b = socket.socketpair()
    with a, b:
        plain = Probe(trio.SocketStream(trio.socket.from_stdlib_socket(a)))
        memory = Probe(trio.testing.memory_stream_pair()[0])
        assert plain._sock is not None and memory._sock is None
        async with trio.open_nursery() as nursery:
            yield plain, memory, nursery
            for ws in (plain, memory):
                ws._writer = None  # (never rescheduled: the probes' writers are pretend)
                ws._nursery = None
        sending.ticker_of_run().step = None


async def test_enqueue_takes_the_route_the_rule_names(
    probes: tuple[Probe, Probe, trio.Nursery],
) -> None:
    checked = set()
    for ws in probes[:2]:
        for state in STATES:
            step: list[Any] = []
            put(ws, state, probes[2], step)
            ws._outbox.append(FRAME)  # the rule, once the frame is queued
            ws._outbox_bytes += len(FRAME)
            expected = ws._route()
            put(ws, state, probes[2], step)
            ws._enqueue(FRAME)
            assert expected is not Route.DIRECT  # (something is queued)
            assert observed(ws, step) is expected, (ws._sock, state)
            checked.add(expected)
    assert checked == {Route.READER, Route.WRITER, Route.STEP, Route.TICKER}


async def test_write_to_many_writes_directly_where_the_rule_says_direct(
    probes: tuple[Probe, Probe, trio.Nursery], monkeypatch: pytest.MonkeyPatch
) -> None:
    if fanout._write_many is None:
        pytest.skip("no write_many on this platform")
    written: list[list[int]] = []

    def write_many(fds: list[int], data: bytes) -> list[tuple[int, int]]:
        written.append(fds)
        return [(index, 0) for index in range(len(fds))]  # (nothing written: queued)

    monkeypatch.setattr(fanout, "_write_many", write_many)
    directs = 0
    for ws in probes[:2]:
        for state in STATES:
            if state[3]:
                continue  # (_write_to_many never runs in a step)
            put(ws, state, probes[2], [])
            direct = ws._route() is Route.DIRECT
            put(ws, state, probes[2], [])
            written.clear()
            fanout._write_to_many([ws], [FRAME], sending.ticker_of_run())
            assert bool(written) is direct, (ws._sock, state)
            directs += direct
    assert directs > 0


async def test_queue_for_step_takes_the_route_the_rule_names(
    probes: tuple[Probe, Probe, trio.Nursery],
) -> None:
    for ws in probes[:2]:
        for state in STATES:
            if not state[3]:
                continue  # (only during a step)
            step: list[Any] = []
            put(ws, state, probes[2], step)
            expected = ws._route()
            put(ws, state, probes[2], step)
            sending.queue_for_step([ws], [FRAME], step)
            assert observed(ws, step) is expected, (ws._sock, state)


@pytest.mark.parametrize(
    ("frames", "size", "limit_bytes"),
    [(f, s, lb) for f in range(6) for s in (1, 10, 100) for lb in (0, 50, 1000)],
)
async def test_inline_outbox_limits_are_no_room(
    probes: tuple[Probe, Probe, trio.Nursery], frames: int, size: int, limit_bytes: int
) -> None:
    ws = probes[0]
    for copy in ("enqueue", "queue_for_step"):
        put(ws, (True, False, WriterState.NONE, True, False, False, True, False), probes[2], [])
        ws._outbox = [b"x" * size] * frames
        ws._outbox_bytes = size * frames
        ws._max_outbox_bytes = limit_bytes
        frame = b"y" * size
        no_room = ws._no_room(len(frame))
        if copy == "enqueue":
            ws._enqueue(frame)
        else:
            sending.queue_for_step([ws], [frame], [])
        assert ("slow" in ws.calls) is no_room, (copy, frames, size, limit_bytes)

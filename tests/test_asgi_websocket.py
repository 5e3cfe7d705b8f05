"""``AsgiWebSocket`` (pyserver.trio.asgi.websocket) against a scripted ASGI peer: the bounded
outbox (a consumer that does not read is dropped with 1008, never buffered without bound),
encoded frames taken back to messages, and work returned by callbacks run by the reading
task, handed off when it blocks."""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import pytest
import trio

from pyserver import _frames
from pyserver.http import Headers, Request
from pyserver.trio.asgi.websocket import AsgiWebSocket, message_of


class Peer:
    """An ASGI server's side: events for ``receive``; ``send`` records, and blocks while
    ``stalled`` (a client that does not read)."""

    def __init__(self) -> None:
        self.to_app, self._inbox = trio.open_memory_channel[dict[str, Any]](math.inf)
        self.sent: list[dict[str, Any]] = []
        self.stalled = False
        self._unstall = trio.Event()

    async def receive(self) -> dict[str, Any]:
        return await self._inbox.receive()

    async def send(self, message: dict[str, Any]) -> None:
        if self.stalled:
            await self._unstall.wait()
        self.sent.append(message)

    def texts(self) -> list[str]:
        return [m["text"] for m in self.sent if m["type"] == "websocket.send" and "text" in m]


def make(peer: Peer, **limits: int) -> AsgiWebSocket:
    request = Request("GET", "/ws", "", Headers(), remote_address=("127.0.0.1", 1))
    return AsgiWebSocket(
        request,
        peer.receive,
        peer.send,
        subprotocol=None,
        max_message_size=limits.get("max_message_size"),
        max_outbox=limits.get("max_outbox", 4),
        max_outbox_bytes=limits.get("max_outbox_bytes", 1 << 20),
    )


def test_message_of_takes_the_payload_back() -> None:
    for message in ["4hello", "é" * 200, "x" * 70_000, b"\x00\x01", b"y" * 300]:
        assert message_of(_frames.encode_message(message)) == message


async def test_slow_consumer_is_closed_1008_not_buffered() -> None:
    peer = Peer()
    ws = make(peer, max_outbox=4)
    async with trio.open_nursery() as nursery:
        ws._nursery = nursery
        nursery.start_soon(ws.run_writer)
        ws.send_nowait("first")
        await trio.testing.wait_all_tasks_blocked()
        assert peer.texts() == ["first"]
        peer.stalled = True
        ws.send_nowait("in flight")  # the writer takes it and blocks in send
        await trio.testing.wait_all_tasks_blocked()
        for i in range(4):
            ws.send_nowait(f"queued {i}")
        assert ws.outbox_depth == 5 and not ws.closed
        ws.send_nowait("one too many")  # does not fit: dropped, and the connection with it
        assert ws.closed and ws.close_code == 1008
        assert ws.outbox_depth == 1  # only the message the server is sending
        with pytest.raises(Exception, match="1008"):
            ws.send_nowait("after")
        peer.stalled = False
        peer._unstall.set()
        await trio.testing.wait_all_tasks_blocked()
        assert peer.sent[-1] == {"type": "websocket.close", "code": 1008, "reason": "slow consumer"}
        assert peer.texts() == ["first", "in flight"]


async def test_outbox_bytes_bound_too() -> None:
    peer = Peer()
    ws = make(peer, max_outbox=100, max_outbox_bytes=1000)
    ws.send_nowait("x" * 5000)  # an empty outbox takes any message
    ws.send_nowait("y" * 10)
    assert ws.closed and ws.close_code == 1008


async def test_broadcast_frames_reach_the_asgi_server_as_messages() -> None:
    peer = Peer()
    ws = make(peer)
    frames = [
        _frames.encode_message('451-["e",{"_placeholder":true,"num":0}]'),
        _frames.encode_message(b"\x01"),
    ]
    assert ws.send_frames_nowait(frames)
    ws.send_frame_nowait(_frames.encode_message('42["x"]'))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ws.run_writer)
        await trio.testing.wait_all_tasks_blocked()
        ws.close_nowait(1000)
    assert [m.get("text", m.get("bytes")) for m in peer.sent] == [
        '451-["e",{"_placeholder":true,"num":0}]',
        b"\x01",
        '42["x"]',
        None,
    ]
    assert not ws.send_frames_nowait(frames)  # closed: nothing queued


async def test_serve_messages_runs_work_and_hands_off_when_it_blocks() -> None:
    """Work that finishes runs in the reading task; work that blocks keeps its task while a
    new one goes on reading (the next messages are delivered before it finishes)."""
    peer = Peer()
    ws = make(peer)
    seen: list[str] = []
    release = trio.Event()

    def on_message(message: str | bytes) -> Any:
        assert isinstance(message, str)
        seen.append(f"got {message}")

        async def work() -> None:
            if message == "block":
                await release.wait()
            seen.append(f"done {message}")

        return work

    ended: list[bool] = []
    async with trio.open_nursery() as nursery:
        ws._nursery = nursery
        nursery.start_soon(ws.serve_messages, on_message, lambda: ended.append(True))
        for text in ("a", "block", "b"):
            peer.to_app.send_nowait({"type": "websocket.receive", "text": text})
        await trio.testing.wait_all_tasks_blocked()
        assert seen == ["got a", "done a", "got block", "got b", "done b"]
        release.set()
        await trio.testing.wait_all_tasks_blocked()
        assert seen[-1] == "done block"
        peer.to_app.send_nowait({"type": "websocket.disconnect", "code": 1001})
    assert ended == [True] and ws.close_code == 1001


async def test_message_over_the_limit_closes_1009() -> None:
    peer = Peer()
    ws = make(peer, max_message_size=10)
    peer.to_app.send_nowait({"type": "websocket.receive", "bytes": b"z" * 11})
    peer.to_app.send_nowait({"type": "websocket.disconnect", "code": 1009})
    with pytest.raises(Exception, match="1009"):
        await ws.receive()
    assert ws.close_code == 1009


async def test_callbacks_and_work_run_in_the_given_context() -> None:
    """``serve_messages(..., context=)``: the message callback, its work (also once handed
    off) and ``on_end`` see the session's context, not the reading task's."""
    import contextvars

    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="task")
    context = contextvars.copy_context()
    context.run(var.set, "session")
    peer = Peer()
    ws = make(peer)
    seen: list[str] = []
    release = trio.Event()

    def on_message(message: str | bytes) -> Any:
        seen.append(f"callback {var.get()}")

        async def work() -> None:
            if message == "block":
                await release.wait()
            seen.append(f"work {message} {var.get()}")

        return work

    async with trio.open_nursery() as nursery:
        ws._nursery = nursery
        nursery.start_soon(
            partial(
                ws.serve_messages,
                on_message,
                lambda: seen.append(f"end {var.get()}"),
                context=context,
            )
        )
        for text in ("block", "a"):
            peer.to_app.send_nowait({"type": "websocket.receive", "text": text})
        await trio.testing.wait_all_tasks_blocked()
        release.set()
        peer.to_app.send_nowait({"type": "websocket.disconnect", "code": 1000})
    assert sorted(seen) == sorted(
        [
            "callback session",
            "callback session",
            "work a session",
            "work block session",
            "end session",
        ]
    )


async def test_our_close_ends_the_reading_without_the_peer() -> None:
    """Closed from this side (a slow consumer, a session that ended) while the ASGI server
    never reports the peer's end: the reading ends after close_timeout anyway, so the layer
    above sees the connection end (as the native close handshake's timeout does)."""
    peer = Peer()
    ws = AsgiWebSocket(
        Request("GET", "/ws", "", Headers()),
        peer.receive,
        peer.send,
        subprotocol=None,
        max_message_size=None,
        max_outbox=4,
        max_outbox_bytes=1 << 20,
        close_timeout=0.05,
    )
    ended: list[int | None] = []
    with trio.fail_after(10):  # (before: the reading waited for the peer forever)
        async with trio.open_nursery() as nursery:
            ws._nursery = nursery
            nursery.start_soon(ws.run_writer)
            nursery.start_soon(
                ws.serve_messages, lambda m: None, lambda: ended.append(ws.close_code)
            )
            await trio.testing.wait_all_tasks_blocked()
            ws.close_nowait(1008, "slow consumer")
    assert ended == [1008]
    assert peer.sent[-1]["type"] == "websocket.close"

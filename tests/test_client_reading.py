"""How the client reads a WebSocket over plain TCP (the socket's descriptor read directly,
and read again at once while reads come back full), against pyserver's own Server: messages
larger than one read arrive whole, and a burst of a thousand events (2 MB, over the server's
writes) arrives complete and in order."""

from __future__ import annotations

from typing import Any

import trio

from pyserver import Server, testing
from pyserver.trio.client.transports import READ_SIZE


def build_server() -> Server:
    sio = Server(max_http_buffer_size=4_000_000)

    @sio.on("big")
    async def big(socket: Any, size: int) -> None:
        socket.emit("text", "t" * size)
        socket.emit("blob", bytes(range(256)) * (size // 256))

    @sio.on("burst")
    async def burst(socket: Any, n: int) -> int:
        for i in range(n):
            socket.emit("tick", i, "p" * 2000)
        return n

    return sio


async def test_messages_larger_than_one_read_arrive_whole() -> None:
    size = 5 * READ_SIZE + 123
    with trio.fail_after(20):
        async with (
            testing.serve(build_server()) as url,
            testing.connect(url, transports=["websocket"], max_message_bytes=4_000_000) as socket,
        ):
            socket.emit("big", size)
            assert await testing.wait_for_event(socket, "text") == ["t" * size]
            blob = await testing.wait_for_event(socket, "blob")
            assert blob == [bytes(range(256)) * (size // 256)]


async def test_a_burst_over_many_reads_arrives_complete_and_in_order() -> None:
    n = 1000  # within the server's 1024 queued packets
    with trio.fail_after(30):
        async with (
            testing.serve(build_server()) as url,
            testing.connect(url, transports=["websocket"]) as socket,
        ):
            got: list[int] = []
            done = trio.Event()

            def tick(i: int, pad: str) -> None:
                assert pad == "p" * 2000
                got.append(i)
                if len(got) == n:
                    done.set()

            socket.on("tick", tick)
            assert await socket.emit_with_ack("burst", n) == n
            await done.wait()
            assert got == list(range(n))

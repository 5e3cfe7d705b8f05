"""Rooms and every broadcast form, against clients on loopback: to / in_ / several rooms /
except_ / socket.to (sender excluded) / socket.broadcast / volatile, encode-once, broadcasts
with acks (replies and timeouts), fetch_sockets, sockets_join / sockets_leave /
disconnect_sockets."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import pytest
import trio
from helpers.sio_client import RawClient, eventually, serving

import pyserver.trio.socketio.adapter as adapter_module
from pyserver import Server, testing
from pyserver.errors import SocketDisconnected
from pyserver.trio.socketio import Socket


def room_server() -> Server:
    sio = Server()

    @sio.on("join")
    async def join(socket: Socket, room: str) -> list[str]:
        socket.join(room)
        return sorted(socket.rooms)

    @sio.on("leave")
    async def leave(socket: Socket, room: str) -> list[str]:
        socket.leave(room)
        return sorted(socket.rooms)

    return sio


async def received_until_marker(raw: RawClient, marker: int) -> list[str]:
    """Every packet before the ``["sync", marker]`` event."""
    got = []
    while (packet := await raw.recv_sio()) != f'2["sync",{marker}]':
        got.append(packet)
    return got


class Trio:
    """Three raw clients a, b, c and their server-side sockets."""

    def __init__(self, sio: Server, clients: dict[str, RawClient], sids: dict[str, str]):
        self.sio = sio
        self.clients = clients
        self.sids = sids
        self.marker = 0

    def socket(self, name: str) -> Socket:
        return self.sio.main.sockets[self.sids[name]]

    async def seen(self) -> dict[str, list[str]]:
        """What each client got since the last call."""
        self.marker += 1
        self.sio.emit("sync", self.marker)
        return {
            name: await received_until_marker(raw, self.marker)
            for name, raw in self.clients.items()
        }


async def three_clients(sio: Server, url: str) -> Trio:
    clients = {name: await RawClient.open(url) for name in "abc"}
    sids = {name: await raw.join() for name, raw in clients.items()}
    return Trio(sio, clients, sids)


async def test_every_broadcast_form() -> None:
    sio = room_server()
    with trio.fail_after(10):
        async with serving(sio) as url:
            t = await three_clients(sio, url)
            a, b, c = t.socket("a"), t.socket("b"), t.socket("c")
            a.join("r1")
            b.join(["r2"])
            c.join(["r1", "r2"])
            assert a.rooms == {a.id, "r1"} and c.rooms == {c.id, "r1", "r2"}
            m = '2["m"]'
            sio.to("r1").emit("m")
            assert await t.seen() == {"a": [m], "b": [], "c": [m]}
            sio.to("r1").to("r2").emit("m")  # union, each socket once
            assert await t.seen() == {"a": [m], "b": [m], "c": [m]}
            sio.in_(["r1", "r2"]).emit("m")
            assert await t.seen() == {"a": [m], "b": [m], "c": [m]}
            sio.except_("r2").emit("m")
            assert await t.seen() == {"a": [m], "b": [], "c": []}
            sio.to("r1").except_("r2").emit("m")
            assert await t.seen() == {"a": [m], "b": [], "c": []}
            a.to("r1").emit("m")  # the sender is left out
            assert await t.seen() == {"a": [], "b": [], "c": [m]}
            a.broadcast.emit("m")
            assert await t.seen() == {"a": [], "b": [m], "c": [m]}
            a.except_("r2").emit("m")
            assert await t.seen() == {"a": [], "b": [], "c": []}
            sio.to(b.id).emit("m")  # a socket's own room
            assert await t.seen() == {"a": [], "b": [m], "c": []}
            sio.emit("m")
            assert await t.seen() == {"a": [m], "b": [m], "c": [m]}
            sio.local.compress(False).emit("m")
            assert await t.seen() == {"a": [m], "b": [m], "c": [m]}
            c.leave("r1")
            sio.to("r1").emit("m")
            assert await t.seen() == {"a": [m], "b": [], "c": []}
            assert sio.main.rooms()["r2"] == 2
            # rooms are left on disconnect; an emptied room is forgotten
            await t.clients["a"].close()
            await eventually(lambda: not a.connected)
            assert "r1" not in sio.main.rooms()
            # a client asks to join through an event
            await t.clients["b"].send_sio('21["join","r9"]')
            assert await t.clients["b"].recv_sio() == f"31[{sorted([b.id, 'r2', 'r9'])}]".replace(
                "'", '"'
            ).replace(", ", ",")


async def test_recipients_follow_every_membership_change() -> None:
    """Broadcasting to the same room, and to everyone, again and again (a game's tick)
    while sockets join, leave, connect and disconnect: each broadcast reaches the members
    of that moment (the adapter keeps a room's recipients only while the index is
    unchanged)."""
    sio = room_server()
    m, e = '2["m"]', '2["e"]'
    with trio.fail_after(10):
        async with serving(sio) as url:
            t = await three_clients(sio, url)
            a, b = t.socket("a"), t.socket("b")
            a.join("g")

            async def tick() -> dict[str, list[str]]:
                sio.to("g").emit("m")
                sio.emit("e")
                return await t.seen()

            assert await tick() == {"a": [m, e], "b": [e], "c": [e]}
            b.join("g")
            assert await tick() == {"a": [m, e], "b": [m, e], "c": [e]}
            a.leave("g")
            assert await tick() == {"a": [e], "b": [m, e], "c": [e]}
            t.clients["d"] = await RawClient.open(url)
            t.sids["d"] = await t.clients["d"].join()
            t.socket("d").join("g")
            assert await tick() == {"a": [e], "b": [m, e], "c": [e], "d": [m, e]}
            await t.clients.pop("b").close()
            await eventually(lambda: not b.connected)
            assert await tick() == {"a": [e], "c": [e], "d": [m, e]}
            # the other forms go through the same recipients, filtered
            t.socket("d").to("g").emit("m")
            sio.to("g").except_(t.sids["d"]).emit("m")
            assert await t.seen() == {"a": [], "c": [], "d": []}


async def test_what_a_handler_sends_arrives_in_the_order_it_was_sent() -> None:
    """A handler that broadcasts to everyone (its sender included), emits to its sender
    and returns an ack: the sender gets the three in that order, the others the
    broadcast."""
    sio = Server()

    @sio.on("go")
    async def go(socket: Socket, n: int) -> int:
        sio.emit("all", n)
        socket.emit("own", n)
        return n

    with trio.fail_after(10):
        async with serving(sio) as url:
            t = await three_clients(sio, url)
            sender = t.clients["a"]
            for n in range(3):
                await sender.send_sio(f'2{n}["go",{n}]')
                got = [await sender.recv_sio() for _ in range(3)]
                assert got == [f'2["all",{n}]', f'2["own",{n}]', f"3{n}[{n}]"]
                for other in "bc":
                    assert await t.clients[other].recv_sio() == f'2["all",{n}]'


async def test_broadcast_is_encoded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[Any] = []
    original = adapter_module.OutgoingMessage

    def counting(data: str | bytes) -> Any:
        built.append(data)
        return original(data)

    monkeypatch.setattr(adapter_module, "OutgoingMessage", counting)
    sio = room_server()
    with trio.fail_after(10):
        async with serving(sio) as url:
            t = await three_clients(sio, url)
            sio.emit("bin", {"x": b"\x01\x02"})
            assert built == ['51-["bin",{"x":{"_placeholder":true,"num":0}}]', b"\x01\x02"]
            for raw in t.clients.values():
                assert await raw.recv_sio() == built[0]
                assert await raw.recv() == b"\x01\x02"


async def test_volatile_drops_for_a_busy_outbox() -> None:
    sio = room_server()
    with trio.fail_after(10):
        async with serving(sio) as url:
            t = await three_clients(sio, url)
            # no checkpoint between: the first is still in the outbox when the second comes
            sio.volatile.emit("v", 1)
            sio.volatile.emit("v", 2)
            t.socket("a").volatile.emit("v", 3)
            seen = await t.seen()
            assert seen == {"a": ['2["v",1]'], "b": ['2["v",1]'], "c": ['2["v",1]']}
            sio.volatile.emit("v", 4)  # outboxes are empty again
            seen = await t.seen()
            assert seen == {"a": ['2["v",4]'], "b": ['2["v",4]'], "c": ['2["v",4]']}


async def test_room_emit_with_ack_replies_and_timeout() -> None:
    sio = room_server()
    with trio.fail_after(15):
        async with serving(sio) as url, AsyncExitStack() as clients:
            for _ in range(2):
                client = await clients.enter_async_context(
                    testing.connect(url, transports=["websocket"])
                )
                client.on("ask", lambda *args: args[0] if len(args) == 1 else args)
                client.on("ask-many", lambda *args: ("one", 2, b"\x03"))
                assert await client.emit_with_ack("join", "game") == sorted([client.id, "game"])
            replies = await sio.to("game").timeout(5).emit_with_ack("ask", "v")
            assert replies == ["v", "v"]
            replies = await sio.to("game").emit_with_ack("ask-many")
            assert replies == [("one", 2, b"\x03")] * 2
            assert await sio.to("nobody").timeout(1).emit_with_ack("ask", 1) == []
            # a client that never answers: TimeoutError, no hang
            raw = await RawClient.open(url)
            sid = await raw.join()
            sio.main.sockets[sid].join("game")
            with pytest.raises(TimeoutError):
                await sio.to("game").timeout(0.3).emit_with_ack("ask", "v")
            # socket.emit_with_ack times out too
            with pytest.raises(TimeoutError):
                await sio.main.sockets[sid].emit_with_ack("ask", 1, timeout=0.2)
            with pytest.raises(TimeoutError):
                await sio.main.sockets[sid].timeout(0.2).emit_with_ack("ask", 1)
            # a socket that leaves while asked: SocketDisconnected
            async with trio.open_nursery() as nursery:
                waiting = sio.main.sockets[sid]

                async def ask_and_fail() -> None:
                    with pytest.raises(SocketDisconnected):
                        await waiting.emit_with_ack("ask", 1)

                nursery.start_soon(ask_and_fail)
                await trio.sleep(0.05)
                waiting.disconnect()
            await raw.close()


async def test_fetch_join_leave_disconnect_sockets() -> None:
    sio = room_server()
    gone: list[tuple[str, str]] = []

    @sio.on("disconnect")
    async def disconnected(socket: Socket, reason: str) -> None:
        gone.append((socket.id, reason))

    with trio.fail_after(10):
        async with serving(sio) as url:
            t = await three_clients(sio, url)
            a, b, c = t.socket("a"), t.socket("b"), t.socket("c")
            a.join("red")
            b.join("red")
            assert {s.id for s in await sio.in_("red").fetch_sockets()} == {a.id, b.id}
            assert len(await sio.fetch_sockets()) == 3
            sio.in_("red").sockets_join(["blue", "green"])
            assert {s.id for s in await sio.in_("blue").fetch_sockets()} == {a.id, b.id}
            sio.in_("red").except_(a.id).sockets_leave("blue")
            assert b.rooms == {b.id, "red", "green"}
            assert a.rooms == {a.id, "red", "blue", "green"}
            sio.in_("green").disconnect_sockets()
            assert await t.clients["a"].recv_sio() == "1"
            assert await t.clients["b"].recv_sio() == "1"
            await eventually(lambda: len(gone) >= 2)
            assert sorted(gone) == sorted(
                [(a.id, "server namespace disconnect"), (b.id, "server namespace disconnect")]
            )
            assert [s.id for s in await sio.fetch_sockets()] == [c.id]
            sio.disconnect_sockets(close=True)
            got = await t.clients["c"].wait_closed()
            assert got[:1] == ["41"] or got[:1] == ["1"] or "41" in got

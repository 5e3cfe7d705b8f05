"""The Server's lifecycle and its server-side listeners: ``await sio.close()`` (200 clients
connected: every socket leaves with "server shutting down", every client sees its end, the
call returns with no task left, no new connection is taken), the adapter's room events
(``create-room``, ``join-room``, ``leave-room``, ``delete-room``), ``new_namespace``, and the
broadcast operators of a dynamic parent namespace. Driven by pyserver's Trio client."""

from __future__ import annotations

import gc
import re
from collections import Counter
from typing import Any

import pytest
import trio

from pyserver import ConnectionLost, Server, SocketDisconnected, testing
from pyserver.trio.client import Manager
from pyserver.trio.socketio.socket import Socket

CLIENTS = 200


def _url(listeners: Any) -> str:
    return f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}"


async def test_close_with_200_clients_connected() -> None:
    sio = Server()
    left: list[str] = []
    sio.on("disconnect", lambda socket, reason: left.append(reason))
    ended: list[str | None] = []
    ready = 0
    all_ready = trio.Event()

    async with trio.open_nursery() as outer:
        url = _url(await outer.start(sio.serve, "127.0.0.1", 0))

        async def client() -> None:
            nonlocal ready
            # (the connection is lost, as with Node's io.close(): the context says so)
            with pytest.raises(ConnectionLost):
                async with testing.connect(url, transports=["websocket"]) as socket:
                    ready += 1
                    if ready == CLIENTS:
                        all_ready.set()
                    with pytest.raises(SocketDisconnected):
                        await socket.wait_for("never")
                    ended.append(socket.disconnect_reason)

        with trio.fail_after(60):
            async with trio.open_nursery() as clients:
                for _ in range(CLIENTS):
                    clients.start_soon(client)
                await all_ready.wait()
                assert len(sio.main.sockets) == CLIENTS
                await sio.close()
                # returned: every socket left, its disconnect handler ran, serve ended
                assert left == ["server shutting down"] * CLIENTS
                assert not sio.running and not sio.clients and not sio.eio.sessions
                assert not outer.child_tasks  # no task left (serve and its listeners)
        assert len(ended) == CLIENTS and all(ended)
        with pytest.raises(ConnectionLost):  # no new connection taken
            async with testing.connect(url, transports=["websocket"]):
                pass
    await sio.close()  # not running: a no-op


async def test_close_a_server_run_without_listening() -> None:
    sio = Server()
    async with trio.open_nursery() as nursery:
        await nursery.start(sio.run)
        assert sio.running
        await sio.close()
        assert not sio.running and not nursery.child_tasks
    # it can run again after a close
    async with trio.open_nursery() as nursery:
        await nursery.start(sio.run)
        assert sio.running
        await sio.close()


async def test_room_events() -> None:
    sio = Server()
    events: list[tuple[str, ...]] = []
    adapter = sio.main.adapter
    for name in ("create-room", "join-room", "leave-room", "delete-room"):
        adapter.on(name, lambda *args, name=name: events.append((name, *args)))
    with pytest.raises(ValueError, match="unknown adapter event"):
        adapter.on("join", print)

    @sio.on("rooms")
    def rooms(socket: Socket, action: str, room: str) -> None:
        if action == "join":
            socket.join(room)
        else:
            socket.leave(room)

    gone = trio.Event()
    sio.on("disconnect", lambda socket, reason: gone.set())
    async with testing.serve(sio) as url:
        async with testing.connect(url) as client, testing.connect(url) as other_client:
            await client.emit_with_ack("rooms", "join", "r")
            await other_client.emit_with_ack("rooms", "join", "r")
            await client.emit_with_ack("rooms", "join", "r")  # already in it: no event
            await client.emit_with_ack("rooms", "leave", "r")
            sid, other = client.id, other_client.id
            other_client.disconnect()
            with trio.fail_after(5):
                await gone.wait()
    # as Node's adapter: room by room, a socket's own room (its id) first
    expected = [
        ("create-room", sid),
        ("join-room", sid, sid),
        ("create-room", other),
        ("join-room", other, other),
        ("create-room", "r"),
        ("join-room", "r", sid),
        ("join-room", "r", other),
        ("leave-room", "r", sid),
        ("leave-room", "r", other),
        ("delete-room", "r"),
        ("leave-room", other, other),
        ("delete-room", other),
    ]
    assert events[: len(expected)] == expected
    adapter.off("join-room")
    adapter.off("create-room")
    adapter.off("leave-room")
    adapter.off("delete-room")
    assert adapter.room_listeners is None


async def test_new_namespace() -> None:
    sio = Server()
    made: list[str] = []

    @sio.on("new_namespace")
    def new_namespace(nsp: Any) -> None:
        made.append(nsp.name)

    sio.of("/static")
    sio.of("/static")  # exists: not new
    sio.of(re.compile(r"/dyn-\d+"))
    async with testing.serve(sio) as url:
        async with testing.connect(url + "/dyn-1"), testing.connect(url + "/dyn-2"):
            pass
        async with testing.connect(url + "/dyn-1"):  # kept: not new
            pass
    assert made == ["/static", "/dyn-1", "/dyn-2"]
    assert "new_namespace" not in sio.main.handlers


async def test_dynamic_parent_operators() -> None:
    sio = Server()
    parent = sio.of(re.compile(r"/dyn-\d+"))

    @parent.on("join")
    def join(socket: Socket, room: str) -> None:
        socket.join(room)

    async with testing.serve(sio) as url:
        async with testing.connect(url + "/dyn-1") as one, testing.connect(url + "/dyn-2") as two:
            await one.emit_with_ack("join", "vip")
            assert {s.id for s in await parent.fetch_sockets()} == {one.id, two.id}
            assert [s.id for s in await parent.in_("vip").fetch_sockets()] == [one.id]
            assert parent.volatile.emit("tick", 2) == 2  # (both outboxes empty)
            assert parent.except_("vip").emit("news", 1) == 1
            assert parent.local.compress(False).emit("tock", 3) == 2
            parent.except_("vip").sockets_join("plain")
            assert [s.id for s in await parent.in_("plain").fetch_sockets()] == [two.id]
            parent.in_("plain").sockets_leave("plain")
            assert await parent.in_("plain").fetch_sockets() == []
            assert await testing.wait_for_event(two, "news") == [1]
            assert await testing.wait_for_event(one, "tick") == [2]
            assert await testing.wait_for_event(one, "tock") == [3]
            # "news" (sent before "tock" on the same connection) did not reach the vip
            with pytest.raises(TimeoutError):
                await one.wait_for("news", timeout=0.01)
            parent.disconnect_sockets()
            for client in (one, two):
                with pytest.raises(SocketDisconnected):
                    await client.wait_for("never", timeout=5)
                assert client.disconnect_reason == "io server disconnect"


async def test_a_namespace_per_user_cleaned_when_empty_memory_flat() -> None:
    """10,000 dynamic children made and left (one per "user", one connection) with
    ``cleanup_empty_child_namespaces``: each goes once empty, and nothing of them stays (the
    server's objects are as many after 9,000 more as before)."""
    sio = Server(cleanup_empty_child_namespaces=True)
    parent = sio.of(re.compile(r"/user-\d+"))
    made = 0

    def count(nsp: Any) -> None:
        nonlocal made
        made += 1

    sio.on_new_namespace(count)
    parent.on("hello", lambda socket: socket.nsp.name)

    async def cycle(manager: Manager, start: int, stop: int) -> None:
        for n in range(start, stop):
            async with manager.connect(f"/user-{n}") as socket:
                assert await socket.emit_with_ack("hello") == f"/user-{n}"

    async with testing.serve(sio) as url, Manager(url, reconnection=False) as manager:
        await cycle(manager, 0, 1_000)  # warm up (caches, pools)
        before = _server_objects()
        await cycle(manager, 1_000, 10_000)
        with trio.fail_after(10):
            while parent.children:  # noqa: ASYNC110 (the last leave is on its way)
                await trio.sleep(0.01)
        after = _server_objects()
    assert made == 10_000
    assert sorted(sio.namespaces) == ["/"] and not parent.children
    grown = {name: after[name] - before.get(name, 0) for name in after}
    assert all(n <= 2 for n in grown.values()), grown


def _server_objects() -> Counter[str]:
    """Live objects of the server's classes (pyserver's, the client's left out: it runs in
    this process too), by class: a namespace made and removed leaves none behind."""
    gc.collect()
    found: Counter[str] = Counter()
    for obj in gc.get_objects():
        module = type(obj).__dict__.get("__module__")  # (some types' is a descriptor)
        if (
            isinstance(module, str)
            and module.startswith("pyserver.")
            and not module.startswith(("pyserver.trio.client", "pyserver.socketio.client"))
        ):
            found[f"{module}.{type(obj).__qualname__}"] += 1
    return found

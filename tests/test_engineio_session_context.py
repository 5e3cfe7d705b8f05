"""A connection's handlers share one ``contextvars`` context whatever carries their events:
long-polling (each POST a request of its own, its work in a task of its own), WebSocket (the
reader or the reactor), and a session that upgrades from one to the other.

What is checked, through python-socketio's client: a ``ContextVar`` set by the code that calls
``serve`` is seen by every handler; one a handler sets, before or after it blocked, is seen
by the later handlers of its connection (also after the upgrade, and by its disconnect
handler) and never by another connection's. Runs with the reactor on and off."""

from __future__ import annotations

import contextvars
import json

import pytest
import trio
from helpers.eio_client import WsClient, http
from helpers.sio_client import PyClient, eventually, serving

from pyserver import Server
from pyserver.trio.socketio import Socket
from pyserver.trio.websocket import reactor

TIMEOUT = 30

VALUE: contextvars.ContextVar[str] = contextvars.ContextVar("test_session_context_value")


@pytest.fixture(autouse=True, params=["reactor", "reader-tasks"])
def reading(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(reactor, "ENABLED", request.param == "reactor" and reactor.ENABLED)
    return str(request.param)


def context_server() -> tuple[Server, list[str]]:
    sio = Server()
    disconnects: list[str] = []

    @sio.on("disconnect")
    async def disconnected(socket: Socket, reason: str) -> None:
        disconnects.append(VALUE.get("unset"))

    @sio.on("set")
    async def set_value(socket: Socket, when: str, value: str) -> str:
        if when == "before":
            VALUE.set(value)
        await trio.sleep(0.01)  # blocks
        if when == "after":
            VALUE.set(value)
        return VALUE.get("unset")

    @sio.on("get")
    async def get_value(socket: Socket) -> str:
        return VALUE.get("unset")

    return sio, disconnects


async def test_polling_handlers_share_their_connections_context() -> None:
    sio, disconnects = context_server()
    VALUE.set("set by the caller")
    with trio.fail_after(TIMEOUT):
        async with serving(sio) as url:
            a, b = PyClient(), PyClient()
            await a.connect(url, "polling")
            await b.connect(url, "polling")
            try:
                assert await a.call("get") == "set by the caller"
                assert await a.call("set", ("before", "a1")) == "a1"
                assert await a.call("get") == "a1"
                assert await a.call("set", ("after", "a2")) == "a2"
                assert await a.call("get") == "a2"  # set after the handler blocked
                assert await b.call("get") == "set by the caller"  # nothing of a's
                assert await b.call("set", ("after", "b1")) == "b1"
                assert await a.call("get") == "a2"  # nothing of b's
            finally:
                await a.disconnect()
                await b.disconnect()
            await eventually(lambda: len(disconnects) == 2)
    assert sorted(disconnects) == ["a2", "b1"]


async def test_a_value_set_over_polling_is_seen_after_the_upgrade() -> None:
    """By hand (python-socketio's client upgrades before it emits): Engine.IO over
    long-polling with h11, then the upgrade on wsproto (``tests/helpers/eio_client.py``)."""
    sio, disconnects = context_server()
    with trio.fail_after(TIMEOUT):
        async with serving(sio) as url:
            port = int(url.rsplit(":", 1)[1])

            async def connect() -> trio.abc.Stream:
                return await trio.open_tcp_stream("127.0.0.1", port)

            path = "/socket.io/?EIO=4&transport="
            opened = await http(connect, "GET", path + "polling")
            sid = json.loads(opened.text[1:])["sid"]
            polling = f"{path}polling&sid={sid}"

            async def poll_until(prefix: str) -> str:
                while True:
                    result = await http(connect, "GET", polling)
                    for packet in result.text.split("\x1e"):
                        if packet.startswith(prefix):
                            return packet

            assert (await http(connect, "POST", polling, b"40")).status == 200
            await poll_until("40")
            await http(connect, "POST", polling, b'421["set","after","p1"]')
            assert await poll_until("431") == '431["p1"]'  # set over long-polling
            ws = await WsClient.open(connect, f"{path}websocket&sid={sid}")
            await ws.send("2probe")
            assert await ws.recv() == "3probe"
            await ws.send("5")
            await ws.send('422["get"]')
            while (message := await ws.recv()) != '432["p1"]':  # seen over WebSocket
                assert isinstance(message, str) and message[:1] in "26", message
            await ws.send('423["set","before","w1"]')
            while (message := await ws.recv()) != '433["w1"]':
                assert isinstance(message, str) and message[:1] in "26", message
            await ws.send("41")  # leaves the namespace: its disconnect handler runs
            await eventually(lambda: len(disconnects) == 1)
    assert disconnects == ["w1"]

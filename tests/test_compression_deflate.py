"""permessage-deflate options and ``compress(False)`` on the WebSocket paths, seen by the
``websockets`` client (a peer nobody here wrote): which messages arrive with RSV1 set
(compressed) and which without, per ``threshold``, per ``compress(False)`` on a socket's
emit, a namespace broadcast and a room broadcast, for acks, and on a raw WebSocket route;
and that ``level`` reaches zlib (a higher level, a smaller frame on the same message)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import pytest
import trio
from helpers.ws_client import serving as serving_app
from websockets.extensions.base import Extension, ExtensionParameter
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.sync.client import connect

from pyserver import Server, WebSocket, broadcast, testing
from pyserver.trio.engineio import session as session_module
from pyserver.trio.http.app import App
from pyserver.ws.deflate import PerMessageDeflate, deflate_options

TIMEOUT = 20
WS_PATH = "/socket.io/?EIO=4&transport=websocket"


class Recording(ClientPerMessageDeflateFactory):
    """The ``websockets`` client's permessage-deflate, noting each data frame's RSV1 and
    size (as it arrived, before inflating) in ``seen``."""

    def __init__(self, seen: list[tuple[bool, int]]) -> None:
        super().__init__()
        self.seen = seen

    def process_response_params(
        self, params: Sequence[ExtensionParameter], accepted: Sequence[Extension]
    ) -> Any:
        extension = super().process_response_params(params, accepted)
        decode = extension.decode
        seen = self.seen

        def recording(frame: Frame, *, max_size: int | None = None) -> Frame:
            if frame.opcode in (Opcode.TEXT, Opcode.BINARY):
                seen.append((frame.rsv1, len(frame.data)))
            return decode(frame, max_size=max_size)

        extension.decode = recording
        return extension


def socketio_session(
    port: int, send: list[str], count: int, deflate: bool = True
) -> tuple[list[str], list[tuple[bool, int]]]:
    """Open a Socket.IO session over WebSocket (Engine.IO open, CONNECT to "/"), send
    ``send``, and return the next ``count`` messages and their (RSV1, size) (none recorded
    without ``deflate``: the client then offers no permessage-deflate)."""
    seen: list[tuple[bool, int]] = []
    with connect(
        f"ws://127.0.0.1:{port}{WS_PATH}",
        compression=None,
        extensions=[Recording(seen)] if deflate else None,
    ) as ws:
        assert str(ws.recv()).startswith("0{")
        ws.send("40")
        assert str(ws.recv()).startswith("40{")
        del seen[:]
        for message in send:
            ws.send(message)
        got = [str(ws.recv()) for _ in range(count)]
    return got, seen


def event_of(message: str) -> tuple[str, int]:
    """(event name or "ack", length of its argument) of a ``42``/``43`` packet."""
    if message.startswith("43"):
        return "ack", len(json.loads(message[message.index("[") :])[0])
    assert message.startswith("42"), message
    name, arg = json.loads(message[2:])
    return name, len(arg)


async def test_threshold_and_compress_false_on_every_path() -> None:
    sio = Server(per_message_deflate={"threshold": 200, "level": 9})

    @sio.on("go")
    def go(socket: Any) -> str:
        socket.join("r")
        socket.emit("small", "s" * 50)  # under the threshold: plain
        socket.emit("own", "o" * 500)  # compressed
        socket.compress(False).emit("own-plain", "p" * 500)
        sio.emit("all", "a" * 500)  # a broadcast: compressed
        sio.compress(False).emit("all-plain", "b" * 500)
        sio.to("r").emit("room", "r" * 500)
        sio.to("r").compress(False).emit("room-plain", "q" * 500)
        return "k" * 500  # the ack: compressed, as in Node (no flag for acks)

    with trio.fail_after(TIMEOUT):
        async with testing.serve(sio) as url:
            port = urlsplit(url).port
            assert port is not None
            got, seen = await trio.to_thread.run_sync(socketio_session, port, ['421["go"]'], 8)
    events = [event_of(message) for message in got]
    compressed = {name: rsv1 for (name, _), (rsv1, _) in zip(events, seen, strict=True)}
    assert compressed == {
        "small": False,
        "own": True,
        "own-plain": False,
        "all": True,
        "all-plain": False,
        "room": True,
        "room-plain": False,
        "ack": True,
    }


async def test_threshold_counts_bytes_on_both_paths() -> None:
    """The threshold is in UTF-8 bytes for a broadcast as for a socket's own message: a text
    of 100 characters and 300 bytes (over 200) is compressed either way."""
    sio = Server(per_message_deflate={"threshold": 200})
    text = "\u00e9\u20ac" * 50  # 100 characters, 250 bytes, plus the packet's framing

    @sio.on("go")
    def go(socket: Any) -> None:
        socket.emit("own", text)
        sio.emit("all", text)

    with trio.fail_after(TIMEOUT):
        async with testing.serve(sio) as url:
            port = urlsplit(url).port
            assert port is not None
            got, seen = await trio.to_thread.run_sync(socketio_session, port, ['42["go"]'], 2)
    assert [event_of(message)[0] for message in got] == ["own", "all"]
    assert [rsv1 for rsv1, _ in seen] == [True, True]


async def test_a_broadcast_is_encoded_once_per_variant(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two deflate peers and a plain one: one compressed encoding, one plain, whatever the
    number of recipients of each."""
    calls: list[int | None] = []
    real = session_module._frames

    class Counting:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def encode_message(self, data: str | bytes, **options: Any) -> bytes:
            calls.append(options.get("deflate_window_bits"))
            return real.encode_message(data, **options)

    monkeypatch.setattr(session_module, "_frames", Counting())
    sio = Server(per_message_deflate={"threshold": 100})
    joined: list[Any] = []
    both = trio.Event()

    @sio.on("connect")
    def on_connect(socket: Any) -> None:
        joined.append(socket)
        if len(joined) == 2:
            both.set()

    @sio.on("go")
    def go(socket: Any) -> None:
        sio.emit("all", "a" * 500)

    results: list[tuple[bool, list[tuple[bool, int]]]] = []

    async def peer(port: int, deflate: bool, send: list[str]) -> None:
        got, seen = await trio.to_thread.run_sync(socketio_session, port, send, 1, deflate)
        assert [event_of(message) for message in got] == [("all", 500)]
        results.append((deflate, seen))

    with trio.fail_after(TIMEOUT):
        async with testing.serve(sio) as url, trio.open_nursery() as nursery:
            port = urlsplit(url).port
            assert port is not None
            nursery.start_soon(peer, port, True, [])
            nursery.start_soon(peer, port, True, [])
            await both.wait()
            nursery.start_soon(peer, port, False, ['42["go"]'])
    assert sorted(calls, key=str) == [15, None]  # (the window: 15 bits)
    compressed = [seen for deflate, seen in results if deflate]
    assert len(compressed) == 2 and compressed[0] == compressed[1]  # the one shared frame
    assert compressed[0][0][0] is True and compressed[0][0][1] < 500


def _words(size: int) -> str:
    rng = random.Random(16)
    vocabulary = ["".join(rng.choices("abcdefghij", k=rng.randint(3, 9))) for _ in range(400)]
    return " ".join(rng.choices(vocabulary, k=size // 6))[:size]


async def test_level_reaches_zlib() -> None:
    text = _words(20_000)
    sizes: dict[int, list[int]] = {}
    for level in (1, 9):
        sio = Server(per_message_deflate={"threshold": 0, "level": level})

        @sio.on("go")
        def go(socket: Any) -> None:
            socket.emit("one", text)
            socket.nsp.emit("all", text)

        with trio.fail_after(TIMEOUT):
            async with testing.serve(sio) as url:
                port = urlsplit(url).port
                assert port is not None
                got, seen = await trio.to_thread.run_sync(socketio_session, port, ['42["go"]'], 2)
        assert [event_of(message) for message in got] == [("one", len(text)), ("all", len(text))]
        assert all(rsv1 for rsv1, _ in seen)
        sizes[level] = [size for _, size in seen]
    # the same message, smaller at 9 than at 1, on the socket's own path and the broadcast's
    assert all(nine < one for nine, one in zip(sizes[9], sizes[1], strict=True)), sizes


async def test_raw_route_threshold() -> None:
    members: list[WebSocket] = []
    ready = trio.Event()

    async def hub(ws: WebSocket) -> None:
        members.append(ws)
        ready.set()
        async for _ in ws:
            pass

    app = App(compression={"threshold": 300})
    app.add_websocket("/hub", hub)
    seen: list[tuple[bool, int]] = []

    def client(port: int) -> list[str]:
        with connect(
            f"ws://127.0.0.1:{port}/hub", compression=None, extensions=[Recording(seen)]
        ) as ws:
            return [str(ws.recv()) for _ in range(4)]

    with trio.fail_after(TIMEOUT):
        async with serving_app(app) as (nursery, port):
            result: list[list[str]] = []
            done = trio.Event()

            async def run_client() -> None:
                result.append(await trio.to_thread.run_sync(client, port))
                done.set()

            nursery.start_soon(run_client)
            await ready.wait()
            ws = members[0]
            await ws.send("x" * 299)
            await ws.send("y" * 300)
            assert broadcast(members, "z" * 299) == 1
            assert broadcast(members, "w" * 300) == 1
            await done.wait()
    assert [len(message) for message in result[0]] == [299, 300, 299, 300]
    assert [rsv1 for rsv1, _ in seen] == [False, True, False, True]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (True, PerMessageDeflate(1024, -1)),
        ({"threshold": 10}, PerMessageDeflate(10, -1)),
        ({"level": 0}, PerMessageDeflate(1024, 0)),
        (PerMessageDeflate(5, 9), PerMessageDeflate(5, 9)),
        (False, None),
        (None, None),
    ],
)
def test_deflate_options(spec: Any, expected: PerMessageDeflate | None) -> None:
    assert deflate_options(spec) == expected


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ({"level": 10}, ValueError),
        ({"level": -2}, ValueError),
        ({"threshold": -1}, ValueError),
        ({"zlibDeflateOptions": {"level": 1}}, TypeError),
        ("yes", TypeError),
    ],
)
def test_bad_deflate_options(spec: Any, error: Callable[..., Exception]) -> None:
    with pytest.raises(error):  # type: ignore[call-overload]
        deflate_options(spec)

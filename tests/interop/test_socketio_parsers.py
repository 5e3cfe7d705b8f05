"""The official ``socket.io-client`` (npm 4.8, under Node) with ``socket.io-msgpack-parser``
3.0.2 against ``Server(parser="msgpack")``, and with its default parser against
``Server(json=orjson)``, over long-polling, WebSocket and the upgrade.

``sio_parser_client.js`` runs one scenario (two clients on "/", one on "/chat", one refused)
and prints what they observed; the server runs in the test's Trio run. Covered: CONNECT,
events and acks both ways with bytes (msgpack ``bin``; attachments with JSON) and dates
(notepack's Date extension), a broadcast to both clients, an ack the server asks for, a
namespace with a sync middleware that refuses with data, a server-side disconnect.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import trio
from helpers.redis_process import RedisProcess, redis_server

from pyserver import ConnectionRefused, RedisAdapter, Server, testing

pytestmark = pytest.mark.interop
__all__ = ["redis_server"]  # the fixture: a real redis-server (skipped where not installed)

HERE = Path(__file__).parent
SCRIPT = HERE / "sio_parser_client.js"
WHEN = datetime.datetime(2024, 1, 2, 3, 4, 5, 6000, tzinfo=datetime.UTC)


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    for package in ("socket.io-client", "socket.io-msgpack-parser"):
        if not (HERE / "node_modules" / package).is_dir():
            pytest.fail(f"{package} is missing: run `npm ci` in {HERE}")
    return node


def build(**options: Any) -> tuple[Server, list[Any]]:
    sio = Server(**options)
    seen: list[Any] = []

    @sio.on("connection")
    def connection(socket: Any) -> None:
        socket.emit("welcome", b"\x00\x01", {"k": [1, None]}, WHEN)

    @sio.on("echo")
    def echo(socket: Any, *args: Any) -> tuple[Any, ...]:
        seen.append(args)
        return args

    @sio.on("shout")
    def shout(socket: Any, *args: Any) -> str:
        sio.emit("shout", *args)
        return "ok"

    @sio.on("ask")
    async def ask(socket: Any) -> Any:
        return await socket.emit_with_ack("asked", 42)

    @sio.on("bye")
    def bye(socket: Any) -> None:
        socket.disconnect()

    chat = sio.of("/chat")

    @chat.use
    def token(socket: Any) -> None:  # a sync middleware
        if socket.handshake.auth.get("token") != "letmein":
            raise ConnectionRefused("not allowed", data={"why": "token"})

    @chat.on("where")
    def where(socket: Any) -> str:
        return str(socket.nsp.name)

    return sio, seen


async def run_client(url: str, transports: str, parser: str, *extra: str) -> list[dict[str, Any]]:
    argv = [_node(), str(SCRIPT), "--url", url, "--transports", transports, "--parser", parser]
    argv += extra
    with trio.fail_after(30):
        proc = await trio.run_process(
            argv, capture_stdout=True, capture_stderr=True, check=False, cwd=HERE, env=os.environ
        )
    lines = [json.loads(line) for line in proc.stdout.decode().splitlines() if line.strip()]
    assert proc.returncode == 0 and lines[-1] == {"event": "done"}, (
        lines,
        proc.stderr.decode(),
    )
    return lines


def one(lines: list[dict[str, Any]], event: str, **match: Any) -> dict[str, Any]:
    found = [
        line
        for line in lines
        if line["event"] == event and all(line.get(k) == v for k, v in match.items())
    ]
    assert len(found) == 1, (event, match, lines)
    return found[0]


def b(data: bytes) -> dict[str, str]:
    return {"$bin": data.hex()}


DATE = {"$date": "2024-01-02T03:04:05.006Z"}


@pytest.mark.parametrize("transports", ["polling", "websocket", "both"])
async def test_msgpack_parser_with_the_official_client(transports: str) -> None:
    sio, seen = build(parser="msgpack")
    async with testing.serve(sio) as url:
        lines = await run_client(url, transports, "msgpack")
    if transports != "both":
        assert one(lines, "connect")["transport"] == transports
    assert one(lines, "welcome")["args"] == [b(b"\x00\x01"), {"k": [1, None]}, DATE]
    echoed = ["hi", 1.5, b(b"\x01\x02\x03"), {"nested": [b(b"\xff"), None, True]}, DATE]
    assert one(lines, "ack", name="echo")["args"] == echoed
    # what the server's handler got: bytes as bytes, the Date as an aware datetime
    assert seen == [("hi", 1.5, b"\x01\x02\x03", {"nested": [b"\xff", None, True]}, WHEN)]
    for client in ("a", "b"):
        assert one(lines, "broadcast", client=client)["args"] == ["to everyone", b(b"\x07")]
    assert one(lines, "ack", name="ask")["args"] == [{"got": 42, "bin": b(b"\x09\x08")}]
    assert one(lines, "ack", name="where")["args"] == ["/chat"]
    refused = one(lines, "refused")
    assert (refused["message"], refused["data"]) == ("not allowed", {"why": "token"})
    assert one(lines, "disconnect")["reason"] == "io server disconnect"


@pytest.mark.parametrize("transports", ["polling", "websocket"])
async def test_orjson_codec_with_the_official_client(transports: str) -> None:
    orjson = pytest.importorskip("orjson")
    sio, _ = build(json=orjson)
    async with testing.serve(sio) as url:
        lines = await run_client(url, transports, "json")
    # orjson writes the datetime itself (JSON has no date: the client gets the ISO string)
    assert one(lines, "welcome")["args"] == [
        b(b"\x00\x01"),
        {"k": [1, None]},
        "2024-01-02T03:04:05.006000+00:00",
    ]
    echoed = ["hi", 1.5, b(b"\x01\x02\x03"), {"nested": [b(b"\xff"), None, True]}]
    assert one(lines, "ack", name="echo")["args"] == [*echoed, "2024-01-02T03:04:05.006Z"]
    for client in ("a", "b"):
        assert one(lines, "broadcast", client=client)["args"] == ["to everyone", b(b"\x07")]
    assert one(lines, "ack", name="ask")["args"] == [{"got": 42, "bin": b(b"\x09\x08")}]
    refused = one(lines, "refused")
    assert (refused["message"], refused["data"]) == ("not allowed", {"why": "token"})


async def test_msgpack_node_gets_a_broadcast_made_on_a_json_node_over_redis(
    redis_server: RedisProcess,
) -> None:
    """Two nodes on the Redis adapter: the broadcast made on the JSON node is re-encoded once
    by the msgpack node for its client (the official client with the msgpack parser)."""
    json_node = Server(adapter=RedisAdapter(redis_server.url, key="parsers"))
    msgpack_node = Server(parser="msgpack", adapter=RedisAdapter(redis_server.url, key="parsers"))
    ready = trio.Event()
    msgpack_node.on("ready", lambda socket: ready.set())

    async def broadcast_when_ready() -> None:
        await ready.wait()
        json_node.emit("news", "from the json node", b"\x05", {"n": [1, 2.5]})

    async with testing.serve(json_node), testing.serve(msgpack_node) as url:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(broadcast_when_ready)
            lines = await run_client(url, "websocket", "msgpack", "--scenario", "listen")
    assert one(lines, "news")["args"] == ["from the json node", b(b"\x05"), {"n": [1, 2.5]}]

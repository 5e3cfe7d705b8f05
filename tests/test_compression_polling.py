"""Long-polling answers and compression, through raw HTTP: ``http_compression_level``
reaches zlib (the same answer gzipped smaller at 9 than at 1), and an answer made only of
packets sent with ``compress(False)`` is not compressed, while one with any packet that
wants compression is (Node's polling transport: ``packets.some(p => p.options.compress)``)."""

from __future__ import annotations

import gzip
import json
import random
from typing import Any
from urllib.parse import urlsplit

import pytest
import trio
from helpers.http_client import Reply, fetch

from pyserver import Server, testing

HANDSHAKE = "/socket.io/?EIO=4&transport=polling"
TIMEOUT = 20


def _words(size: int) -> str:
    rng = random.Random(16)
    vocabulary = ["".join(rng.choices("abcdefghij", k=rng.randint(3, 9))) for _ in range(400)]
    return " ".join(rng.choices(vocabulary, k=size // 6))[:size]


TEXT = _words(20_000)


def _server(**options: Any) -> Server:
    sio = Server(http_compression_threshold=100, **options)

    @sio.on("plain")
    def plain(socket: Any) -> None:
        socket.compress(False).emit("m", TEXT)
        sio.compress(False).emit("m", TEXT)

    @sio.on("mixed")
    def mixed(socket: Any) -> None:
        socket.compress(False).emit("m", TEXT)
        socket.emit("m", TEXT)

    @sio.on("one")
    def one(socket: Any) -> None:
        socket.emit("m", TEXT)

    return sio


async def _answer(port: int, event: str) -> Reply:
    """Open a session over polling, connect to "/", send ``event`` and return the GET
    that carries what the handler emitted (gzip accepted)."""
    gzip_ok = [("Accept-Encoding", "gzip")]
    reply = await fetch(port, "GET", HANDSHAKE)
    sid = json.loads(reply.body[1:])["sid"]
    url = f"{HANDSHAKE}&sid={sid}"
    assert (await fetch(port, "POST", url, body=b"40")).status == 200
    connected = await fetch(port, "GET", url, headers=gzip_ok)
    assert connected.body.startswith(b"40{"), connected
    assert (await fetch(port, "POST", url, body=f'42["{event}"]'.encode())).status == 200
    return await fetch(port, "GET", url, headers=gzip_ok)


def _events(body: bytes) -> list[str]:
    return [json.loads(packet[2:])[1] for packet in body.decode().split("\x1e")]


@pytest.mark.parametrize(("event", "gzipped"), [("plain", False), ("mixed", True), ("one", True)])
async def test_compress_false_over_polling(event: str, gzipped: bool) -> None:
    with trio.fail_after(TIMEOUT):
        async with testing.serve(_server()) as url:
            port = urlsplit(url).port
            assert port is not None
            reply = await _answer(port, event)
    assert (reply.headers.get("content-encoding") == "gzip") is gzipped
    body = gzip.decompress(reply.body) if gzipped else reply.body
    assert _events(body) == [TEXT] * (1 if event == "one" else 2)


async def test_http_compression_level() -> None:
    sizes = {}
    for level in (1, 9):
        with trio.fail_after(TIMEOUT):
            async with testing.serve(_server(http_compression_level=level)) as url:
                port = urlsplit(url).port
                assert port is not None
                reply = await _answer(port, "one")
        assert reply.headers["content-encoding"] == "gzip"
        assert _events(gzip.decompress(reply.body)) == [TEXT]
        sizes[level] = len(reply.body)
    assert sizes[9] < sizes[1], sizes


def test_bad_http_compression_level() -> None:
    with pytest.raises(ValueError, match="compression_level"):
        Server(http_compression_level=10)

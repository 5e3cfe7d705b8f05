"""Engine.IO hooks on the Socket.IO Server: ``cookie`` (as Node writes it),
``initial_headers``/``headers``, ``generate_id``, an ``async`` ``allow_request`` (over
long-polling and over a WebSocket that opens the session) and
``http_compression_threshold``. Raw HTTP for what is about headers, pyserver's Trio client for
whole connections."""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import pytest
import trio
from helpers.http_client import Reply, fetch

from pyserver import ConnectionLost, Request, Server, testing
from pyserver.trio.engineio.hooks import Cookie

HANDSHAKE = "/socket.io/?EIO=4&transport=polling"


@asynccontextmanager
async def serving(sio: Server) -> AsyncIterator[tuple[str, int]]:
    async with testing.serve(sio) as url:
        port = urlsplit(url).port
        assert port is not None
        yield url, port


def sid_of(reply: Reply) -> str:
    assert reply.status == 200, reply
    body = reply.body.decode()
    assert body.startswith("0"), body
    return str(json.loads(body[1:])["sid"])


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        (True, "io={sid}; Path=/; HttpOnly; SameSite=Lax"),
        ("lb", "lb={sid}; Path=/; HttpOnly; SameSite=Lax"),
        ({"name": "lb", "path": None}, "lb={sid}; SameSite=Lax"),  # Node's path: false
        (
            Cookie(name="a", path="/app", same_site="none", secure=True, max_age=60),
            "a={sid}; Max-Age=60; Path=/app; HttpOnly; Secure; SameSite=None",
        ),
        (Cookie(http_only=False, same_site=None), "io={sid}; Path=/"),
    ],
)
async def test_cookie_on_the_handshake(option: Any, expected: str) -> None:
    async with serving(Server(cookie=option)) as (_, port):
        reply = await fetch(port, "GET", HANDSHAKE)
    assert reply.headers["set-cookie"] == expected.format(sid=sid_of(reply))


async def test_no_cookie_by_default_and_a_bad_same_site_fails_at_once() -> None:
    async with serving(Server()) as (_, port):
        reply = await fetch(port, "GET", HANDSHAKE)
    sid_of(reply)
    assert "set-cookie" not in reply.headers
    with pytest.raises(ValueError, match="same_site"):
        Server(cookie={"same_site": "sometimes"})


async def test_initial_headers_and_headers_hooks() -> None:
    seen: list[tuple[str, str]] = []

    def initial(headers: list[tuple[str, str]], request: Request) -> None:
        assert ("Set-Cookie", headers[-1][1]) == headers[-1]  # the cookie is in already
        headers.append(("X-Initial", request.query["tag"]))

    def every(headers: list[tuple[str, str]], request: Request) -> None:
        seen.append((request.method, request.query.get("sid", "")))
        headers.append(("X-Every", "1"))

    sio = Server(cookie=True, initial_headers=initial, headers=every)
    async with serving(sio) as (_, port):
        handshake = await fetch(port, "GET", HANDSHAKE + "&tag=t1")
        sid = sid_of(handshake)
        post = await fetch(port, "POST", f"{HANDSHAKE}&sid={sid}", body=b"40")
        poll = await fetch(port, "GET", f"{HANDSHAKE}&sid={sid}")
    assert handshake.headers["x-initial"] == "t1" and handshake.headers["x-every"] == "1"
    for later in (post, poll):
        assert later.status == 200 and later.headers["x-every"] == "1"
        assert "x-initial" not in later.headers and "set-cookie" not in later.headers
    assert poll.body.startswith(b"40{")  # the Socket.IO CONNECT answer
    assert seen == [("GET", ""), ("POST", sid), ("GET", sid)]


async def test_generate_id() -> None:
    made: list[str] = []

    def generate_id(request: Request) -> str:
        made.append(f"user-{request.query.get('n', 'x')}-{len(made)}")
        return made[-1]

    sio = Server(generate_id=generate_id)
    ids: list[str] = []
    sio.on("whoami", lambda socket: socket.client.session.sid)
    async with serving(sio) as (url, port):
        reply = await fetch(port, "GET", HANDSHAKE + "&n=7")
        ids.append(sid_of(reply))
        for transports in (["polling"], ["websocket"]):
            async with testing.connect(url, transports=transports) as socket:
                ids.append(await socket.emit_with_ack("whoami"))
    assert ids == made == ["user-7-0", "user-x-1", "user-x-2"]


async def test_generate_id_duplicate_falls_back_to_a_random_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sio = Server(generate_id=lambda request: "same")
    async with serving(sio) as (_, port):
        first = sid_of(await fetch(port, "GET", HANDSHAKE))
        second = sid_of(await fetch(port, "GET", HANDSHAKE))
    assert first == "same" and second != "same"
    assert "the id of a live session" in caplog.text


@pytest.mark.parametrize("transports", [["polling"], ["websocket"]])
async def test_async_allow_request(transports: list[str]) -> None:
    asked: list[str | None] = []

    async def allow_request(request: Request) -> bool:
        await trio.lowlevel.checkpoint()  # (a database look-up)
        asked.append(request.headers.get("x-token"))
        return request.headers.get("x-token") == "good"

    sio = Server(allow_request=allow_request)
    sio.on("ping", lambda socket: "pong")
    async with serving(sio) as (url, port):
        async with testing.connect(url, transports=transports, headers={"x-token": "good"}) as s:
            assert await s.emit_with_ack("ping") == "pong"
        with pytest.raises(ConnectionLost):
            async with testing.connect(url, transports=transports, headers={"x-token": "bad"}):
                pass
        refused = await fetch(port, "GET", HANDSHAKE, headers=[("X-Token", "bad")])
    assert asked == ["good", "bad", "bad"]
    assert refused.status == 403
    assert json.loads(refused.body) == {"code": 4, "message": "Forbidden"}
    assert not sio.eio.sessions  # a refused WebSocket left no session behind


async def test_http_compression_threshold() -> None:
    sio = Server(http_compression_threshold=10)
    async with serving(sio) as (_, port):
        reply = await fetch(port, "GET", HANDSHAKE, headers=[("Accept-Encoding", "gzip")])
    assert reply.headers.get("content-encoding") == "gzip"
    assert gzip.decompress(reply.body).startswith(b'0{"sid"')
    async with serving(Server()) as (_, port):  # the default: 1024 bytes
        reply = await fetch(port, "GET", HANDSHAKE, headers=[("Accept-Encoding", "gzip")])
    assert "content-encoding" not in reply.headers


async def _upgrade_answer(port: int) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(
            b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
        )
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += await stream.receive_some(4096)
        return answer.split(b"\r\n\r\n")[0].lower()


async def test_per_message_deflate() -> None:
    async with serving(Server(per_message_deflate=True)) as (_, port):
        answer = await _upgrade_answer(port)
    assert answer.startswith(b"http/1.1 101")
    assert b"sec-websocket-extensions: permessage-deflate; server_no_context_takeover" in answer
    async with serving(Server()) as (_, port):  # off by default, as in Node
        assert b"permessage-deflate" not in await _upgrade_answer(port)

"""The official ``engine.io-client`` (under Node) opening a session over WebSocket directly
against the Socket.IO :class:`~pyserver.Server`: the ``101`` answer carries the
``initial_headers``/``headers`` hooks' headers (as Node's ``ws.on("headers")`` does), and an
``async`` ``allow_request`` refuses before the upgrade (an HTTP 403 with the Engine.IO error
JSON, no ``101``, no session). ``eio_ws_open.js`` reports what the client's ``ws`` saw."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio

from pyserver import Request, Server, testing

pytestmark = pytest.mark.interop

HERE = Path(__file__).parent


async def _open(node: str, url: str, *header: str) -> list[dict[str, Any]]:
    with trio.fail_after(20):
        done = await trio.run_process(
            [node, str(HERE / "eio_ws_open.js"), url, "/socket.io/", *header],
            capture_stdout=True,
            check=False,
        )
    return [json.loads(line) for line in done.stdout.decode().splitlines()]


async def test_hooks_headers_on_the_101(node: str) -> None:
    calls: list[str] = []

    def initial(headers: list[tuple[str, str]], request: Request) -> None:
        calls.append("initial")
        headers.append(("X-Initial", request.query.get("transport") or "?"))

    def every(headers: list[tuple[str, str]], request: Request) -> None:
        calls.append("headers")
        headers.append(("X-Every", "1"))

    sio = Server(initial_headers=initial, headers=every, cookie=True)
    async with testing.serve(sio) as url:
        lines = await _open(node, url)
    events = [line["event"] for line in lines]
    assert events == ["upgrade", "open"], lines
    headers = lines[0]["headers"]
    assert lines[0]["status"] == 101
    assert headers["x-initial"] == "websocket"
    assert headers["x-every"] == "1"
    assert calls == ["initial", "headers"]
    # as Node: the cookie is set by the polling handshake only (no session id before the 101)
    assert "set-cookie" not in headers


async def test_async_allow_request_refuses_before_the_upgrade(node: str) -> None:
    asked: list[str | None] = []

    async def allow_request(request: Request) -> bool:
        await trio.lowlevel.checkpoint()  # (a database look-up)
        asked.append(request.headers.get("x-token"))
        return request.headers.get("x-token") == "good"

    sio = Server(allow_request=allow_request)
    async with testing.serve(sio) as url:
        refused = await _open(node, url, "X-Token", "bad")
        accepted = await _open(node, url, "X-Token", "good")
        assert not sio.eio.sessions or all(s.closed for s in sio.eio.sessions.values())
    assert [line["event"] for line in refused] == ["refused"], refused
    assert refused[0]["status"] == 403
    assert json.loads(refused[0]["body"]) == {"code": 4, "message": "Forbidden"}
    assert [line["event"] for line in accepted] == ["upgrade", "open"], accepted
    assert asked == ["bad", "good"]

"""Audit (issue 20), items 4-7: caps on connections and Engine.IO sessions, a deadline for
a whole request, keepalive pings on raw WebSocket routes, and log lines a client cannot forge.

Through real HTTP on loopback TCP (h11 as the client), or, where a timeout is the point,
in-memory streams under trio's mock clock: no test waits on the wall clock or asserts a
timing. Every client here is 127.0.0.1, so "per address" is per 127.0.0.1.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
from helpers.http_client import Client, fetch, raw_exchange, serving
from wsproto import ConnectionType, WSConnection
from wsproto.events import CloseConnection, Ping, Request

from pyserver.http import Request as HttpRequest
from pyserver.http import Response, WebSocket
from pyserver.trio.engineio import EngineIOServer, RequestRefused
from pyserver.trio.http.app import App
from pyserver.trio.socketio.server import Server

TIMEOUT = 20
EIO = "/engine.io/?EIO=4&transport=polling"
REQUEST = b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def hello_app(**options: Any) -> App:
    app = App(serve_client=False, health_path=None, **options)

    @app.route("/hello")
    async def hello(request: HttpRequest) -> Response:
        return Response(200, [("Content-Type", "text/plain")], b"hello")

    @app.route("/echo", methods=("POST",))
    async def echo(request: HttpRequest) -> Response:
        return Response(200, [("Content-Type", "application/octet-stream")], request.body)

    @app.websocket("/ws")
    async def ws(ws: WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    return app


def upgrade_headers() -> list[tuple[str, str]]:
    return [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", base64.b64encode(os.urandom(16)).decode()),
        ("Sec-WebSocket-Version", "13"),
    ]


async def until(condition: Any) -> None:
    """Wait (real time, bounded by the caller's fail_after) until ``condition()``."""
    while not condition():  # noqa: ASYNC110 (a counter, not an event)
        await trio.sleep(0.01)


async def settle(condition: Any) -> None:
    """Under a frozen clock: let every task run until ``condition()`` (no sleeping)."""
    while not condition():
        await trio.testing.wait_all_tasks_blocked()
        await trio.lowlevel.checkpoint()


# -- item 4: max_connections -----------------------------------------------------------------


async def test_audit_caps_max_connections_refused_503_others_served_count_goes_down() -> None:
    app = hello_app(max_connections=2)
    with trio.fail_after(TIMEOUT):
        async with serving(app) as port:
            first = Client(await trio.open_tcp_stream("127.0.0.1", port))
            second = Client(await trio.open_tcp_stream("127.0.0.1", port))
            assert (await first.request("GET", "/hello")).status == 200
            assert (await second.request("GET", "/hello")).status == 200
            assert app.connection_count == 2
            # a third is refused at once, answered and closed; the others go on
            out = await raw_exchange(port, REQUEST)
            assert out.startswith(b"HTTP/1.1 503 ")
            assert b"Connection: close" in out
            assert (await first.request("GET", "/hello")).status == 200
            assert app.connection_count == 2
            # one goes: its place is free again (the count is given back however it ends)
            await second.stream.aclose()
            await until(lambda: app.connection_count == 1)
            assert (await fetch(port, "GET", "/hello")).status == 200
            await first.stream.aclose()
            await until(lambda: app.connection_count == 0)


async def test_audit_caps_connections_per_ip_503_upgrade_too_one_log_line(
    mock_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The clock stands still: every refusal falls in one burst, which logs one line."""
    caplog.set_level(logging.WARNING, logger="pyserver.http")
    app = hello_app(max_connections=None, max_connections_per_ip=2)
    with trio.fail_after(TIMEOUT):
        async with serving(app) as port:
            held = [Client(await trio.open_tcp_stream("127.0.0.1", port)) for _ in range(2)]
            for client in held:
                assert (await client.request("GET", "/hello")).status == 200
            for _ in range(5):
                out = await raw_exchange(port, REQUEST)
                assert out.startswith(b"HTTP/1.1 503 ")
            # a WebSocket upgrade over the cap: refused before the upgrade
            upgrade = Client(await trio.open_tcp_stream("127.0.0.1", port))
            reply = await upgrade.request("GET", "/ws", upgrade_headers())
            assert reply.status == 503
            await upgrade.stream.aclose()
            assert (await held[0].request("GET", "/hello")).status == 200
            await held[1].stream.aclose()
            await settle(lambda: app.connection_count == 1)
            assert (await fetch(port, "GET", "/hello")).status == 200
            await held[0].stream.aclose()
    lines = [r for r in caplog.records if r.name == "pyserver.http" and "refused" in r.message]
    assert len(lines) == 1, [r.message for r in lines]
    assert "max_connections_per_ip (2)" in lines[0].message


def test_audit_caps_server_and_defaults() -> None:
    sio = Server(max_connections=7, max_connections_per_ip=3, max_sessions_per_ip=2)
    assert sio.app.max_connections == 7
    assert sio.app.max_connections_per_ip == 3
    assert sio.eio.max_sessions_per_ip == 2
    app = App()
    # finite by default: the open-file limit less a reserve (where there is a limit)
    assert app.max_connections is None or 0 < app.max_connections < 1 << 30
    assert app.max_connections_per_ip is None  # a reverse proxy is one address
    assert App(max_connections=None).max_connections is None


# -- item 4: Engine.IO sessions per address --------------------------------------------------


@asynccontextmanager
async def engineio(**options: Any) -> AsyncIterator[tuple[EngineIOServer, int]]:
    eio = EngineIOServer(**options)
    app = App(serve_client=False, health_path=None)
    app.mount("/engine.io/", eio)
    async with trio.open_nursery() as nursery:
        await nursery.start(eio.serve)
        listeners = await nursery.start(app.serve, "127.0.0.1", 0)
        yield eio, listeners[0].socket.getsockname()[1]
        nursery.cancel_scope.cancel()


async def test_audit_caps_engineio_sessions_per_ip_503_one_log_line(
    mock_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Handshakes from one keep-alive connection (what the audit's probe did): past
    ``max_sessions_per_ip`` each gets 503 with the reference server's JSON (code 4, the
    code of a refused handshake), ``on_connection_error`` hears of each, the log has one
    line for the burst; a session that ends frees its place."""
    caplog.set_level(logging.INFO, logger="pyserver.engineio")
    refusals: list[RequestRefused] = []
    async with engineio(max_sessions_per_ip=3, on_connection_error=refusals.append) as (
        eio,
        port,
    ):
        with trio.fail_after(TIMEOUT):
            client = Client(await trio.open_tcp_stream("127.0.0.1", port))
            sids = []
            for _ in range(3):
                reply = await client.request("GET", EIO)
                assert reply.status == 200
                sids.append(json.loads(reply.body[1:])["sid"])
            for _ in range(20):
                reply = await client.request("GET", EIO)
                assert reply.status == 503
                assert json.loads(reply.body) == {"code": 4, "message": "Too many sessions"}
            assert len(eio.sessions) == 3
            # a WebSocket handshake (no sid) is refused before the upgrade too
            upgrade = Client(await trio.open_tcp_stream("127.0.0.1", port))
            reply = await upgrade.request(
                "GET", "/engine.io/?EIO=4&transport=websocket", upgrade_headers()
            )
            assert reply.status == 503
            await upgrade.stream.aclose()
            assert len(refusals) == 21
            assert {(r.code, r.message) for r in refusals} == {(4, "Too many sessions")}
            # the client closes one session: a new one may open
            reply = await client.request(
                "POST", f"{EIO}&sid={sids[0]}", [("Content-Type", "text/plain")], b"1"
            )
            assert reply.status == 200
            await settle(lambda: len(eio.sessions) == 2)
            assert (await client.request("GET", EIO)).status == 200
            await client.stream.aclose()
    lines = [r for r in caplog.records if r.name == "pyserver.engineio" and "refused" in r.message]
    assert len(lines) == 1, [r.message for r in lines]
    assert "max_sessions_per_ip (3)" in lines[0].message


# -- item 5: a deadline for the whole request --------------------------------------------------


async def test_audit_request_timeout_slow_body_408_and_closed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The audit's probe: an 8-byte body at one byte per 1.5 s, each read well within
    ``read_timeout``; past ``request_timeout`` the answer is 408 and the connection closes
    (before, the request was answered in full after 12 s)."""
    app = hello_app(read_timeout=2.0, request_timeout=5.0)
    client_stream, server_stream = trio.testing.memory_stream_pair()

    async def drip() -> None:
        head = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\n"
        try:
            await client_stream.send_all(head)
            for _ in range(8):
                await trio.sleep(1.5)
                await client_stream.send_all(b"x")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    out = b""
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(app.serve_stream, server_stream)
            nursery.start_soon(drip)
            while chunk := await client_stream.receive_some(1000):
                out += chunk
            nursery.cancel_scope.cancel()
    assert out.startswith(b"HTTP/1.1 408 "), out
    assert app.connection_count == 0


async def test_audit_request_timeout_counts_from_the_first_byte(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Idle keep-alive time before a request is not the request's: a request sent whole
    after a pause longer than ``request_timeout`` (within ``read_timeout``) is served."""
    app = hello_app(read_timeout=30.0, request_timeout=5.0)
    client_stream, server_stream = trio.testing.memory_stream_pair()
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(app.serve_stream, server_stream)
            client = Client(client_stream)
            assert (await client.request("GET", "/hello")).status == 200
            await trio.sleep(10)
            assert (await client.request("GET", "/hello")).status == 200
            nursery.cancel_scope.cancel()


# -- item 6: keepalive pings on raw WebSocket routes by default --------------------------------


async def test_audit_ws_keepalive_idle_raw_websocket_gets_ping_by_default(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An idle raw WebSocket gets a Ping from the server with the App's defaults, and a
    peer that never answers is closed (1011) instead of holding the connection."""
    app = hello_app()
    client_stream, server_stream = trio.testing.memory_stream_pair()
    ws = WSConnection(ConnectionType.CLIENT)

    async def next_event() -> Any:
        while True:
            for event in ws.events():
                return event
            data = await client_stream.receive_some(65536)
            ws.receive_data(bytes(data) if data else None)

    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(app.serve_stream, server_stream)
            await client_stream.send_all(ws.send(Request(host="x", target="/ws")))
            await next_event()  # AcceptConnection
            pings = 0
            while not isinstance(event := await next_event(), CloseConnection):
                if isinstance(event, Ping):
                    pings += 1  # and no Pong: a dead peer
            nursery.cancel_scope.cancel()
    assert pings == 1
    assert event.code == 1011


# -- item 7: client text in log lines ----------------------------------------------------------


async def test_audit_log_forging_decoded_path_escaped(caplog: pytest.LogCaptureFixture) -> None:
    """``GET /engine.io/%0aWARNING pyserver.auth: ...`` (the decoded path holds a line
    feed) and a mount that fails on such a path: each log line stays one line."""
    caplog.set_level(logging.INFO)
    forged = "%0aWARNING%20pyserver.auth:%20forged"

    class Boom:
        async def handle_http(self, request: HttpRequest) -> Response:
            raise RuntimeError("boom")

        def check_websocket(self, request: HttpRequest) -> Response | None:
            return None

        async def handle_websocket(self, ws: WebSocket) -> None:
            pass

    async with engineio() as (_eio, port):
        with trio.fail_after(TIMEOUT):
            reply = await fetch(port, "GET", f"/engine.io/{forged}?EIO=4&transport=nope")
            assert reply.status == 400
    app = App(serve_client=False, health_path=None)
    app.mount("/boom", Boom())
    with trio.fail_after(TIMEOUT):
        async with serving(app) as port:
            assert (await fetch(port, "GET", f"/boom/{forged}")).status == 500
    lines = [r.getMessage() for r in caplog.records if "forged" in r.getMessage()]
    assert len(lines) == 2, lines
    for line in lines:
        assert "\n" not in line and "\r" not in line
        assert "\\nWARNING pyserver.auth: forged" in line


# -- the command line ------------------------------------------------------------------------

CLI_APP = hello_app()
CLI_SERVER = Server()


def test_audit_caps_cli_flags_reach_app_and_server(monkeypatch: pytest.MonkeyPatch) -> None:
    from pyserver import cli

    served: list[Any] = []
    monkeypatch.setattr(cli.trio, "run", lambda fn, app, *args: served.append(app))
    cli.main(["run", "test_audit_limits:CLI_APP", "--max-connections", "5"])
    cli.main(["run", "test_audit_limits:CLI_APP", "--max-connections-per-ip", "none"])
    assert served[-1] is CLI_APP
    assert (CLI_APP.max_connections, CLI_APP.max_connections_per_ip) == (5, None)
    argv = ["run", "test_audit_limits:CLI_SERVER", "--max-connections", "none"]
    cli.main([*argv, "--max-connections-per-ip", "4", "--max-sessions-per-ip", "3"])
    assert CLI_SERVER.app.max_connections is None
    assert CLI_SERVER.app.max_connections_per_ip == 4
    assert CLI_SERVER.eio.max_sessions_per_ip == 3
    with pytest.raises(SystemExit):
        cli.main(["run", "test_audit_limits:CLI_APP", "--max-sessions-per-ip", "3"])
    with pytest.raises(SystemExit):
        cli.main(["run", "test_audit_limits:CLI_APP", "--max-connections", "0"])

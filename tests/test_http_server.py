"""The HTTP/1.1 server over real loopback sockets (and memory streams for timeouts)."""

from __future__ import annotations

import json
import logging

import pytest
import trio
import trio.testing
from helpers.http_client import Client, fetch, raw_exchange, serving

from pyserver.http import Request, Response, WebSocket
from pyserver.trio.http.app import App

TIMEOUT = 10


def make_app(**options: object) -> App:
    app = App(**options)  # type: ignore[arg-type]

    @app.route("/hello")
    async def hello(request: Request) -> Response:
        return Response(200, [("Content-Type", "text/plain")], b"hello " + request.path.encode())

    @app.route("/echo", methods=["POST", "PUT"])
    async def echo(request: Request) -> Response:
        return Response(200, [], request.body)

    @app.route("/query")
    async def query(request: Request) -> Response:
        return Response(200, [], json.dumps(request.query).encode())

    @app.route("/boom")
    async def boom(request: Request) -> Response:
        raise RuntimeError("handler bug")

    @app.websocket("/ws")
    async def ws(ws: WebSocket) -> None:
        await ws.close()

    return app


async def test_keep_alive_two_requests_on_one_connection() -> None:
    with trio.fail_after(TIMEOUT):
        async with serving(make_app()) as port:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                client = Client(stream)
                first = await client.request("GET", "/hello")
                second = await client.request("POST", "/echo", body=b"payload")
                third = await client.request("GET", "/query?a=1&b=two&a=3")
    assert (first.status, first.body) == (200, b"hello /hello")
    assert first.headers["content-length"] == "12"
    assert (second.status, second.body) == (200, b"payload")
    assert json.loads(third.body) == {"a": "1", "b": "two"}


async def test_percent_decoded_path() -> None:
    with trio.fail_after(TIMEOUT):
        async with serving(make_app()) as port:
            reply = await fetch(port, "GET", "/hel%6Co")
    assert reply.body == b"hello /hello"


async def test_404_405_426() -> None:
    with trio.fail_after(TIMEOUT):
        async with serving(make_app()) as port:
            missing = await fetch(port, "GET", "/nope")
            wrong = await fetch(port, "DELETE", "/echo")
            plain = await fetch(port, "GET", "/ws")
    assert missing.status == 404
    assert wrong.status == 405
    assert wrong.headers["allow"] == "POST, PUT"
    assert plain.status == 426
    assert plain.headers["upgrade"] == "websocket"


async def test_head_on_get_route_has_no_body() -> None:
    with trio.fail_after(TIMEOUT):
        async with serving(make_app()) as port:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                client = Client(stream)
                head = await client.request("HEAD", "/hello")
                after = await client.request("GET", "/hello")
    assert head.status == 200
    assert head.body == b""
    assert head.headers["content-length"] == "12"
    assert after.body == b"hello /hello"


async def test_bad_request_is_400_and_closes() -> None:
    with trio.fail_after(TIMEOUT):
        async with serving(make_app()) as port:
            out = await raw_exchange(port, b"NONSENSE\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 ")
    assert b"connection: close" in out.lower()


async def test_header_too_large_is_431() -> None:
    with trio.fail_after(TIMEOUT):
        async with serving(make_app(max_header_size=4096)) as port:
            request = b"GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8000 + b"\r\n\r\n"
            out = await raw_exchange(port, request)
            ok = await fetch(port, "GET", "/hello", [("X-Fine", "a" * 1000)])
    assert out.startswith(b"HTTP/1.1 431 ")
    assert ok.status == 200


async def test_body_too_large_is_413() -> None:
    with trio.fail_after(TIMEOUT):
        async with serving(make_app(max_body_size=100)) as port:
            declared = await fetch(port, "POST", "/echo", body=b"x" * 101)
            fits = await fetch(port, "POST", "/echo", body=b"x" * 100)
            chunked = await raw_exchange(
                port,
                b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                + b"40\r\n"
                + b"y" * 64
                + b"\r\n"
                + b"40\r\n"
                + b"y" * 64
                + b"\r\n0\r\n\r\n",
            )
    assert declared.status == 413
    assert declared.headers["connection"] == "close"
    assert fits.status == 200
    assert chunked.startswith(b"HTTP/1.1 413 ")


async def test_handler_exception_is_500_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    with trio.fail_after(TIMEOUT):
        async with serving(make_app()) as port:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                client = Client(stream)
                failed = await client.request("GET", "/boom")
                after = await client.request("GET", "/hello")  # the connection survives
    assert failed.status == 500
    assert after.status == 200
    records = [r for r in caplog.records if r.name == "pyserver.http"]
    assert len(records) == 1
    assert records[0].exc_info is not None


async def test_health() -> None:
    with trio.fail_after(TIMEOUT):
        async with serving(make_app()) as port:
            reply = await fetch(port, "GET", "/healthz")
            post = await fetch(port, "POST", "/healthz")
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    assert json.loads(reply.body) == {"status": "ok"}
    assert post.status == 405


async def test_http10_closes_after_response() -> None:
    with trio.fail_after(TIMEOUT):
        async with serving(make_app()) as port:
            out = await raw_exchange(port, b"GET /hello HTTP/1.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 ")
    assert out.endswith(b"hello /hello")


async def test_expect_100_continue() -> None:
    with trio.fail_after(TIMEOUT):
        async with serving(make_app()) as port:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                await stream.send_all(
                    b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                    b"Expect: 100-continue\r\n\r\n"
                )
                interim = await stream.receive_some(1000)
                assert interim.startswith(b"HTTP/1.1 100 ")
                await stream.send_all(b"abc")
                final = await stream.receive_some(1000)
    assert final.startswith(b"HTTP/1.1 200 ")
    assert final.endswith(b"abc")


async def test_bad_connection_does_not_affect_others() -> None:
    app = make_app()
    with trio.fail_after(TIMEOUT):
        async with serving(app) as port:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                client = Client(stream)
                await stream.send_all(b"GET /hello HTTP/1.1\r\nHost: x\r\nContent-Le")  # stalls
                broken = await raw_exchange(port, b"\x00\x01\x02 garbage\r\n\r\n")
                other = await fetch(port, "GET", "/hello")
                await stream.send_all(b"ngth: 0\r\n\r\n")
                finished = await client.response()
    assert broken.startswith(b"HTTP/1.1 400 ")
    assert other.status == 200
    assert finished.status == 200


async def test_mount_and_longest_prefix() -> None:
    class Named:
        def __init__(self, name: str) -> None:
            self.name = name

        async def handle_http(self, request: Request) -> Response:
            return Response(200, [], f"{self.name} {request.path}".encode())

        def check_websocket(self, request: Request) -> Response | None:
            return None

        async def handle_websocket(self, ws: WebSocket) -> None:
            await ws.close()

    app = make_app()
    app.mount("/api/", Named("api"))
    app.mount("/api/v2", Named("v2"))
    with trio.fail_after(TIMEOUT):
        async with serving(app) as port:
            a = await fetch(port, "GET", "/api/x")
            b = await fetch(port, "POST", "/api/v2/y?z=1")
            c = await fetch(port, "GET", "/apix")
    assert a.body == b"api /api/x"
    assert b.body == b"v2 /api/v2/y"
    assert c.status == 404


# -- timeouts (memory streams + autojump clock: no real waiting) ------------------------------


async def test_idle_keep_alive_closed_quietly(autojump_clock: trio.testing.MockClock) -> None:
    app = make_app(read_timeout=5.0)
    client_stream, server_stream = trio.testing.memory_stream_pair()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(app.serve_stream, server_stream)
            client = Client(client_stream)
            reply = await client.request("GET", "/hello")
            assert reply.status == 200
            start = trio.current_time()
            assert await client_stream.receive_some(100) == b""  # closed, nothing sent
            assert trio.current_time() - start >= 5.0


async def test_slow_headers_get_408(autojump_clock: trio.testing.MockClock) -> None:
    app = make_app(read_timeout=5.0)
    client_stream, server_stream = trio.testing.memory_stream_pair()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(app.serve_stream, server_stream)
            await client_stream.send_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n")
            await trio.sleep(3)
            await client_stream.send_all(b"X-Drip: 1\r\n")  # still within the same deadline
            out = b""
            while chunk := await client_stream.receive_some(1000):
                out += chunk
    assert out.startswith(b"HTTP/1.1 408 ")


async def test_serve_listeners_with_socket_listener() -> None:
    app = make_app()
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            started = await nursery.start(app.serve_listeners, listeners)
            stream = await trio.testing.open_stream_to_socket_listener(started[0])
            async with stream:
                reply = await Client(stream).request("GET", "/hello")
            nursery.cancel_scope.cancel()
    assert reply.status == 200


def test_logger_names() -> None:
    assert logging.getLogger("pyserver.http").name == "pyserver.http"

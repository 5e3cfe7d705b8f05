"""TLS (https, wss): ``serve(..., ssl_context=...)`` with a certificate from a throwaway CA
(trustme), against clients nobody here wrote, each verifying the certificate against that CA:
the official socket.io-client under Node (``NODE_EXTRA_CA_CERTS``), python-socketio's
AsyncClient, and the ``websockets`` client on a raw WebSocket endpoint. Also: a client that
does not speak TLS gets its connection closed and one log line, and nobody else notices; a
broadcast reaches TLS and plain connections of one server alike (TLS connections are written
by their own tasks, plain ones by the Rust fan-out)."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio
import trio
import trustme
from helpers.server_thread import ServerThread
from websockets.sync.client import connect

from .conftest import SioSite, run_sio_client

pytestmark = pytest.mark.interop

WAIT = 10.0


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


def verifying_http(ca_file: Path) -> aiohttp.ClientSession:
    """For python-socketio's AsyncClient: its polling and its WebSocket verify our
    certificate against the CA. (Its sync ``Client`` is not used over TLS here: its reading
    and writing threads share one SSL socket and race, python-engineio issue #461, which
    drops the connection now and then whatever the server.)"""
    context = ssl.create_default_context(cafile=str(ca_file))
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context))


@pytest.fixture(scope="module")
def tls_site(ca: trustme.CA) -> Iterator[SioSite]:
    s = SioSite()
    s.start(ssl_context=server_context(ca))
    try:
        yield s
    finally:
        s.stop()


@pytest.mark.parametrize("transports", ["polling", "websocket", "both"])
def test_node_client_over_tls(
    node_sio: str, tls_site: SioSite, ca_file: Path, transports: str
) -> None:
    assert tls_site.url.startswith("https://")
    env = {"NODE_EXTRA_CA_CERTS": str(ca_file)}
    run = run_sio_client(node_sio, tls_site.url, "basic", transports=transports, env=env)
    problems = [e for e in run.events if e["event"] in ("timeout", "exception", "unparsed")]
    assert run.returncode == 0 and not problems and run.of("done"), str(run)
    echoes = run.of("echo")
    assert echoes and all(e["got"] == e["sent"] for e in echoes), str(run)
    assert run.one("done")["transport"] == ("polling" if transports == "polling" else "websocket")
    # the server's view: a secure handshake
    extras = run_sio_client(node_sio, tls_site.url, "extras", transports=transports, env=env)
    [hs] = [e["args"][0] for e in extras.of("ack") if e["name"] == "handshake"]
    assert hs["secure"] is True and hs["address"] == "127.0.0.1", str(extras)


def test_node_client_refuses_an_unknown_certificate(node_sio: str, tls_site: SioSite) -> None:
    """Without the CA, the client refuses the connection: the TLS is real."""
    run = run_sio_client(node_sio, tls_site.url, "basic", transports="websocket", timeout=8.0)
    assert not run.of("done") and not run.of("connect"), str(run)


@pytest.mark.parametrize("transports", ["polling", "websocket"])
def test_python_socketio_client_over_tls(tls_site: SioSite, ca_file: Path, transports: str) -> None:
    async def session() -> tuple[str, Any, Any]:
        async with verifying_http(ca_file) as http:
            client = socketio.AsyncClient(reconnection=False, http_session=http)
            await client.connect(
                tls_site.url, auth={"token": "tls"}, transports=[transports], wait_timeout=WAIT
            )
            try:
                echoed = await client.call("echo-ack", "over tls", timeout=WAIT)
                hs = await client.call("handshake", timeout=WAIT)
                return client.transport(), echoed, hs
            finally:
                await client.disconnect()

    transport, echoed, hs = asyncio.run(session())
    assert transport == transports and echoed == "over tls"
    assert hs["secure"] is True and hs["auth"] == {"token": "tls"}


def test_raw_websocket_and_plain_http_to_the_tls_port(
    ca: trustme.CA, ca_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An App's raw WebSocket endpoint over wss, verified; a client speaking plain HTTP to
    the TLS port is closed with one log line, and the server goes on serving."""
    from pyserver import App

    def build() -> Any:
        app = App()

        @app.websocket("/echo")
        async def echo(ws: Any) -> None:
            async for message in ws:
                await ws.send(message)

        return app

    server = ServerThread(build, ssl_context=server_context(ca))
    port = server.start()
    client_context = ssl.create_default_context(cafile=str(ca_file))
    try:
        with caplog.at_level(logging.INFO, logger="pyserver.http"):
            with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as plain:
                plain.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                assert plain.recv(1024) == b""  # closed, nothing in clear text
            with connect(f"wss://127.0.0.1:{port}/echo", ssl=client_context) as ws:
                for message in ("text", b"\x00binary" * 1000):
                    ws.send(message)
                    assert ws.recv(timeout=WAIT) == message
        handshakes = [r for r in caplog.records if "TLS handshake failed" in r.getMessage()]
        assert len(handshakes) == 1, caplog.text
    finally:
        server.stop()


def test_a_client_that_never_finishes_the_handshake_is_closed(ca: trustme.CA) -> None:
    """The handshake happens within the request's read timeout: a client that connects and
    sends nothing, or half a ClientHello, does not hold its connection."""
    from pyserver import App

    server = ServerThread(lambda: App(read_timeout=0.5), ssl_context=server_context(ca))
    port = server.start()
    try:
        for first in (b"", b"\x16\x03\x01\x02\x00\x01"):  # nothing; a ClientHello begun
            with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as silent:
                silent.sendall(first)
                # closed by the server at its read timeout (recv raises after WAIT if not)
                assert silent.recv(1024) == b""
    finally:
        server.stop()


def test_a_broadcast_reaches_tls_and_plain_connections(ca: trustme.CA, ca_file: Path) -> None:
    """One Server listening twice, plain and TLS: a room broadcast reaches both kinds."""
    from pyserver import Server

    got: dict[str, list[Any]] = {"plain": [], "tls": []}

    class TwoListeners:
        def __init__(self) -> None:
            self.sio = Server()
            self.ports: list[int] = []

        async def serve(self, host: str, port: int, *, task_status: Any) -> None:
            plain = await trio.open_tcp_listeners(0, host=host)
            tls = [
                trio.SSLListener(listener, server_context(ca), https_compatible=True)
                for listener in await trio.open_tcp_listeners(0, host=host)
            ]
            self.ports = [
                plain[0].socket.getsockname()[1],
                tls[0].transport_listener.socket.getsockname()[1],
            ]
            async with trio.open_nursery() as nursery:
                await nursery.start(self.sio.run)
                await nursery.start(self.sio.app.serve_listeners, [*plain, *tls])
                task_status.started(self.ports[0])

    holder = TwoListeners()

    @holder.sio.on("connection")
    async def joined(socket: Any) -> None:
        socket.join("room")

    @holder.sio.on("shout")
    async def shout(socket: Any, text: str) -> str:
        holder.sio.to("room").emit("heard", text)
        return "ok"

    server = ServerThread(lambda: holder)
    server.start()
    plain_port, tls_port = holder.ports

    async def shout_in_turns() -> None:
        async with aiohttp.ClientSession() as plain_http, verifying_http(ca_file) as tls_http:
            clients = {
                "plain": socketio.AsyncClient(reconnection=False, http_session=plain_http),
                "tls": socketio.AsyncClient(reconnection=False, http_session=tls_http),
            }
            urls = {
                "plain": f"http://127.0.0.1:{plain_port}",
                "tls": f"https://127.0.0.1:{tls_port}",
            }
            all_heard = asyncio.Event()
            for name, client in clients.items():

                def heard(text: int, name: str = name) -> None:
                    got[name].append(text)
                    if len(got["plain"]) == len(got["tls"]) == 20:
                        all_heard.set()

                client.on("heard", heard)
                await client.connect(urls[name], transports=["websocket"], wait_timeout=WAIT)
            try:
                for n in range(20):
                    sender = clients["plain" if n % 2 else "tls"]
                    assert await sender.call("shout", n, timeout=WAIT) == "ok"
                await asyncio.wait_for(all_heard.wait(), WAIT)
            finally:
                for client in clients.values():
                    await client.disconnect()

    try:
        asyncio.run(shout_in_turns())
        assert got == {"plain": list(range(20)), "tls": list(range(20))}
    finally:
        server.stop()

"""What keeps an idle connection small, and that it changes nothing on the wire: Engine.IO
over WebSocket reads in its handler task (no reader task), or in the run's reactor (which
holds no task per connection either), messages that arrive together
with the upgrade's ``5`` are not lost, the lazy ``socket.handshake``, and the bounded table
of shared header values."""

from __future__ import annotations

import time

import trio
from helpers.eio_client import WS, WsClient, handshake, running, waiting_poll
from wsproto.events import TextMessage

from pyserver.engineio.session import EioSid
from pyserver.http import Headers, Request
from pyserver.trio.http import server as http_server
from pyserver.trio.socketio.handshake import make_handshake
from pyserver.trio.websocket import reactor
from pyserver.trio.websocket.reader import Reading

TIMEOUT = 10


async def test_websocket_session_reads_in_its_handler_task() -> None:
    for memory in (False, True):
        with trio.fail_after(TIMEOUT):
            async with running(memory=memory) as r:
                ws = await WsClient.open(r.connect, WS)
                opened = await ws.recv()
                assert isinstance(opened, str) and opened.startswith("0{")
                await ws.send("4ping me")
                assert await ws.recv() == "4ping me"
                (session,) = r.eio.sessions.values()
                assert session._ws is not None
                # a socket goes to the reactor when there is one; a memory stream never
                read_by = Reading.REACTOR if reactor.ENABLED and not memory else Reading.INLINE
                assert session._ws._reading is read_by


async def test_messages_sent_with_the_upgrade_are_delivered_in_order() -> None:
    with trio.fail_after(TIMEOUT):
        async with running() as r:
            sid = await handshake(r.connect)
            session = r.eio.sessions[EioSid(sid)]
            async with waiting_poll(r, sid) as results:
                ws = await WsClient.open(r.connect, f"{WS}&sid={sid}")
                await ws.send("2probe")
                assert await ws.recv() == "3probe"
            assert results[0].status == 200
            # "5" and two messages in one write: the reader decodes them in one read
            burst = b"".join(ws.conn.send(TextMessage(text)) for text in ("5", "4first", "4second"))
            await ws.stream.send_all(burst)
            assert [await ws.recv(), await ws.recv()] == ["4first", "4second"]
            assert session.transport == "websocket"
            assert session._ws is not None
            await ws.send("4third")
            assert await ws.recv() == "4third"
            # the probe needed a reader task, which hands the reading to the reactor once
            # it waits with the callbacks in place
            read_by = Reading.REACTOR if reactor.ENABLED else Reading.TASK
            assert session._ws._reading is read_by


async def test_server_close_of_an_inline_reading_session() -> None:
    with trio.fail_after(TIMEOUT):
        async with running() as r:
            ws = await WsClient.open(r.connect, WS)
            await ws.recv()  # the open packet
            (session,) = r.eio.sessions.values()
            session.close()
            assert await ws.recv_until_closed() == ["1"]
            assert ws.close_code == 1000
            assert r.log.disconnected == [(session.sid, "forced close")]
            assert EioSid(session.sid) not in r.eio.sessions


def test_handshake_reads_the_request_lazily() -> None:
    request = Request(
        "GET",
        "/socket.io/",
        "EIO=4&transport=websocket&x=1",
        Headers([("Host", "example"), ("Origin", "http://o")]),
        remote_address=("10.0.0.1", 5555),
    )
    when = time.time()
    hs = make_handshake(request, {"token": "t"}, when)
    assert hs._headers is None and hs._query is None  # nothing copied before use
    assert hs.auth == {"token": "t"}
    assert hs.headers == {"host": "example", "origin": "http://o"}
    assert hs.headers is hs.headers  # built once, then kept (changes stay)
    assert hs.query == {"EIO": "4", "transport": "websocket", "x": "1"}
    assert hs.address == "10.0.0.1"
    assert hs.url == "/socket.io/?EIO=4&transport=websocket&x=1"
    assert hs.xdomain is True
    assert hs.secure is False
    assert hs.issued == int(when * 1000)
    assert hs.time == time.strftime(
        "%a %b %d %Y %H:%M:%S GMT%z", time.localtime(int(when * 1000) / 1000)
    )
    hs.extra["k"] = "v"
    assert hs.extra == {"k": "v"}
    assert make_handshake(request, None, when).auth == {}


def test_shared_header_values_are_one_copy_and_bounded() -> None:
    first = http_server._value(b"user-agent", b"agent/1.0 " + b"x" * 20)
    second = http_server._value(b"user-agent", b"agent/1.0 " + b"x" * 20)
    assert first == second and first is second
    key = http_server._value(b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ==")
    assert key not in http_server._SHARED  # unique per request: not kept
    for n in range(http_server._SHARED_MAX_COUNT * 2):
        http_server._value(b"x-made-up", b"value %d" % n)
        assert len(http_server._SHARED) <= http_server._SHARED_MAX_COUNT
    long = "v" * (http_server._SHARED_MAX_LENGTH + 1)
    assert http_server._shared(long) is long
    assert long not in http_server._SHARED


async def test_shutdown_says_going_away_without_a_close_packet() -> None:
    """A "1" would tell clients they were sent away (python-socketio's then stays away);
    the WebSocket's 1001 tells them to come back, as after a restart."""
    with trio.fail_after(TIMEOUT):
        async with running() as r:
            ws = await WsClient.open(r.connect, WS)
            await ws.recv()  # the open packet
            await ws.send("4hi")
            assert await ws.recv() == "4hi"
        assert await ws.recv_until_closed() == []
        assert ws.close_code == 1001

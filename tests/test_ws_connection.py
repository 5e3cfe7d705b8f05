"""The sans-IO WebSocket connection: bytes and ``now`` in, messages and frames out."""

from __future__ import annotations

import pytest

from pyserver import _frames
from pyserver._frames import _testing
from pyserver.errors import LocalProtocolError
from pyserver.ws.connection import ConnectionState, WebSocketConnection

client = _frames.Encoder(client=True)


def read_server(data: bytes) -> list[_frames.Message]:
    return _frames.Decoder(client=True).feed(data)


def take(conn: WebSocketConnection) -> bytes:
    out = b"".join(conn.pending)
    conn.pending.clear()
    return out


def test_data_messages_in_order() -> None:
    conn = WebSocketConnection()
    data = client.text("hello") + client.binary(b"\x00\x01") + client.text("wor")
    assert conn.receive_data(data[:5]) == []
    assert conn.receive_data(data[5:]) == ["hello", b"\x00\x01", "wor"]
    assert conn.pending == []
    assert conn.state is ConnectionState.OPEN


def test_send_encodes_unmasked_frames() -> None:
    conn = WebSocketConnection()
    assert read_server(conn.send("hi") + conn.send(b"\xff")) == ["hi", b"\xff"]


def test_ping_answered_with_pong_between_messages() -> None:
    conn = WebSocketConnection()
    got = conn.receive_data(client.text("a") + client.ping(b"xyz") + client.text("b"))
    assert got == ["a", "b"]
    (pong,) = read_server(take(conn))
    assert isinstance(pong, _frames.Pong)
    assert pong.payload == b"xyz"


def test_peer_close_is_echoed() -> None:
    conn = WebSocketConnection()
    got = conn.receive_data(client.text("last") + client.close(4001, "bye"))
    assert got == ["last"]
    assert conn.state is ConnectionState.CLOSED
    assert (conn.close_code, conn.close_reason) == (4001, "bye")
    (echo,) = read_server(take(conn))
    assert isinstance(echo, _frames.Close)
    assert echo.code == 4001
    assert conn.receive_data(client.text("ignored")) == []


def test_peer_close_without_code() -> None:
    conn = WebSocketConnection()
    conn.receive_data(client.close(None))
    assert conn.close_code == 1005
    (echo,) = read_server(take(conn))
    assert isinstance(echo, _frames.Close)
    assert echo.code is None


def test_local_close_handshake() -> None:
    conn = WebSocketConnection(close_timeout=3.0)
    conn.close(1000, "done", now=10.0)
    assert conn.state is ConnectionState.CLOSING
    (ours,) = read_server(take(conn))
    assert isinstance(ours, _frames.Close)
    assert (ours.code, ours.reason) == (1000, "done")
    assert conn.next_deadline() == 13.0
    with pytest.raises(LocalProtocolError):
        conn.send("too late")
    assert conn.receive_data(client.text("still delivered")) == ["still delivered"]
    conn.receive_data(client.close(1000))
    assert conn.state is ConnectionState.CLOSED
    assert conn.pending == []  # no echo of an echo
    assert conn.next_deadline() is None


def test_local_close_times_out() -> None:
    conn = WebSocketConnection(close_timeout=3.0)
    conn.close(1001, now=0.0)
    conn.handle_timeout(2.9)
    assert conn.state is ConnectionState.CLOSING
    conn.handle_timeout(3.0)
    assert conn.state is ConnectionState.CLOSED
    assert conn.close_code == 1001


def test_close_code_checked() -> None:
    conn = WebSocketConnection()
    for code in (999, 1005, 1006, 1015, 2000, 5000):
        with pytest.raises(LocalProtocolError):
            conn.close(code, now=0.0)
    with pytest.raises(LocalProtocolError):
        conn.close(1000, "x" * 124, now=0.0)
    assert conn.state is ConnectionState.OPEN


def test_unmasked_frame_is_1002() -> None:
    conn = WebSocketConnection()
    got = conn.receive_data(client.text("ok") + _testing.encode_frame(_frames.OP_TEXT, b"bad"))
    assert got == ["ok"]
    assert conn.state is ConnectionState.CLOSED
    assert conn.failure is not None
    assert conn.failure[0] == 1002
    (close,) = read_server(take(conn))
    assert isinstance(close, _frames.Close)
    assert close.code == 1002


def test_bad_utf8_is_1007() -> None:
    conn = WebSocketConnection()
    conn.receive_data(_testing.encode_frame(_frames.OP_TEXT, b"\xff\xfe", mask=b"abcd"))
    assert conn.failure is not None
    assert conn.failure[0] == 1007
    assert conn.close_code == 1007


def test_too_big_is_1009() -> None:
    conn = WebSocketConnection(max_message_size=1000)
    conn.receive_data(client.binary(b"x" * 1001))
    assert conn.failure is not None
    assert conn.failure[0] == 1009


def test_eof_is_1006() -> None:
    conn = WebSocketConnection()
    conn.receive_eof()
    assert conn.state is ConnectionState.CLOSED
    assert conn.close_code == 1006
    assert conn.pending == []


def test_keepalive_ping_and_pong() -> None:
    conn = WebSocketConnection(ping_interval=10.0, ping_timeout=5.0, now=0.0)
    assert conn.next_deadline() == 10.0
    conn.handle_timeout(9.0)
    assert conn.pending == []
    conn.handle_timeout(10.0)
    (ping,) = read_server(take(conn))
    assert isinstance(ping, _frames.Ping)
    assert conn.next_deadline() == 15.0
    conn.receive_data(client.pong(b""))
    assert conn.next_deadline() == 20.0
    conn.handle_timeout(20.0)
    assert isinstance(read_server(take(conn))[0], _frames.Ping)
    conn.handle_timeout(25.0)  # no pong in time
    assert conn.state is ConnectionState.CLOSED
    assert conn.failure == (1011, "keepalive ping timeout")
    (close,) = read_server(take(conn))
    assert isinstance(close, _frames.Close)
    assert close.code == 1011


def test_no_deadline_without_keepalive() -> None:
    conn = WebSocketConnection()
    assert conn.next_deadline() is None
    conn.handle_timeout(1e9)
    assert conn.pending == []


def test_deflate_round_trip() -> None:
    offer = _frames.Deflate(server_no_context_takeover=True)
    conn = WebSocketConnection(deflate=offer)
    peer = _frames.Encoder(client=True, deflate=offer)
    text = "compress me " * 50
    assert conn.receive_data(peer.text(text)) == [text]
    frame = conn.send(text)
    assert len(frame) < len(text)
    assert _frames.Decoder(client=True, deflate=offer).feed(frame) == [text]

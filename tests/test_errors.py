"""The one error tree of ``pyserver.errors`` (h11's split), held over every layer.

* Every layer's errors are :class:`~pyserver.errors.PyserverError`\\ s: the peer's faults
  under :class:`~pyserver.errors.RemoteProtocolError`, the API's misuse under
  :class:`~pyserver.errors.LocalProtocolError`, so ``except pyserver.LocalProtocolError``
  catches a Socket.IO misuse (``socket.emit("connect")``) on a real server as it catches a
  WebSocket one.
* A remote error carries its wire answer: a WebSocket close code, an HTTP status, the reason
  the Engine.IO session is closed with (Engine.IO and Socket.IO parse errors).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
from helpers.sio_client import RawClient, eventually, serving

import pyserver
from pyserver import _frames, errors
from pyserver._frames import _testing
from pyserver.engineio import packets as eio_packets
from pyserver.engineio.session import EioSid, Session, SessionConfig, Transport
from pyserver.redis import codec as redis_codec
from pyserver.redis import resp
from pyserver.socketio import binary, decoder
from pyserver.socketio import packets as sio_packets
from pyserver.trio.socketio import Socket
from pyserver.ws.connection import WebSocketConnection


@pytest.mark.parametrize(
    ("error", "side"),
    [
        (_frames.FrameError, errors.RemoteProtocolError),
        (eio_packets.PacketError, errors.RemoteProtocolError),
        (sio_packets.PacketError, errors.RemoteProtocolError),
        (sio_packets.RemoteProtocolError, errors.RemoteProtocolError),
        (resp.RespProtocolError, errors.RemoteProtocolError),
        (redis_codec.CodecError, errors.RemoteProtocolError),
        (sio_packets.LocalProtocolError, errors.LocalProtocolError),
        (sio_packets.PacketTooLarge, errors.LocalProtocolError),
        (binary.TooLarge, errors.LocalProtocolError),
        (errors.RemoteProtocolError, errors.ProtocolError),
        (errors.LocalProtocolError, errors.ProtocolError),
        (errors.ProtocolError, errors.PyserverError),
        (errors.ConnectionClosed, errors.PyserverError),
        (errors.ConnectionRefused, errors.PyserverError),
        (errors.SocketDisconnected, errors.PyserverError),
    ],
)
def test_every_layer_error_is_in_the_tree(error: type[Exception], side: type[Exception]) -> None:
    assert issubclass(error, side)


def test_old_names_are_the_tree_and_keep_their_other_bases() -> None:
    # one class per name: the Socket.IO layer's names are the tree's own classes
    assert sio_packets.LocalProtocolError is errors.LocalProtocolError
    assert sio_packets.RemoteProtocolError is errors.RemoteProtocolError
    assert sio_packets.ProtocolError is errors.ProtocolError
    assert pyserver.socketio.LocalProtocolError is pyserver.LocalProtocolError
    assert pyserver.PyserverError is errors.PyserverError
    assert pyserver.ProtocolError is errors.ProtocolError
    # ValueError stays where callers catch it
    for error in (
        sio_packets.PacketTooLarge,
        binary.TooLarge,
        eio_packets.PacketError,
        resp.RespProtocolError,
        redis_codec.CodecError,
    ):
        assert issubclass(error, ValueError), error
    # misuse is never the peer's fault, and the other way round
    assert not issubclass(errors.LocalProtocolError, errors.RemoteProtocolError)
    assert not issubclass(errors.RemoteProtocolError, errors.LocalProtocolError)


def test_every_layer_misuse_is_a_pyserver_local_protocol_error() -> None:
    raised: list[BaseException] = []

    def misuse(call: Any, *args: Any, **kwargs: Any) -> None:
        try:
            call(*args, **kwargs)
        except pyserver.LocalProtocolError as exc:
            raised.append(exc)

    ws = WebSocketConnection(now=0.0)
    misuse(ws.close, 1005, now=0.0)  # a code that never goes on the wire
    misuse(sio_packets.encode_event, "/", "connect", [])
    misuse(sio_packets.encode_event, "/", "big", ["x" * 100], max_bytes=10)
    config = SessionConfig(ping_interval=25.0, ping_timeout=20.0, upgrade_timeout=10.0)
    session = Session(EioSid("abc"), Transport.POLLING, config, 0.0)
    misuse(session.take_poll_payload)
    assert len(raised) == 4
    assert isinstance(raised[2], sio_packets.PacketTooLarge)


async def test_except_pyserver_local_protocol_error_catches_a_reserved_emit() -> None:
    sio = pyserver.Server()
    outcome: list[tuple[str, BaseException]] = []

    @sio.on("connection")
    async def connected(socket: Socket) -> None:
        try:
            try:
                socket.emit("connect")
            except pyserver.LocalProtocolError as exc:
                outcome.append(("caught", exc))
        except Exception as exc:
            outcome.append(("missed", exc))
        socket.emit("after", "still up")

    with trio.fail_after(10):
        async with serving(sio) as url:
            raw = await RawClient.open(url)
            await raw.join("/")
            await eventually(lambda: bool(outcome))
            assert await raw.recv_sio() == '2["after","still up"]'
            await raw.close()
    [(how, exc)] = outcome
    assert how == "caught", exc
    assert isinstance(exc, pyserver.PyserverError)
    assert "'connect' cannot be emitted" in str(exc)


def test_websocket_frame_error_carries_its_close_code() -> None:
    server = _frames.Decoder(client=False)
    unmasked = _testing.encode_frame(_frames.OP_TEXT, b"hi")  # a client must mask
    with pytest.raises(pyserver.RemoteProtocolError) as caught:
        server.feed(unmasked)
    assert isinstance(caught.value, pyserver.FrameError)
    assert caught.value.close_code == caught.value.code == 1002
    assert caught.value.close_reason == caught.value.reason
    with pytest.raises(pyserver.RemoteProtocolError) as caught:
        _testing.inflate_raw(b"\xff\xff\xff", max_size=100)
    assert caught.value.close_code == 1007


def test_engineio_parse_error_carries_its_http_status_and_close_reason() -> None:
    with pytest.raises(pyserver.RemoteProtocolError) as caught:
        eio_packets.decode_payload(b"\xff")  # not UTF-8
    assert caught.value.status == 400  # the polling POST's answer
    assert caught.value.close_reason == "parse error"
    assert caught.value.close_code is None


def test_socketio_parse_error_carries_its_close_reason() -> None:
    with pytest.raises(pyserver.RemoteProtocolError) as caught:
        decoder.PacketDecoder().receive_text("9")
    assert isinstance(caught.value, sio_packets.PacketError)
    assert caught.value.close_reason == "parse error"


def test_redis_errors_are_remote() -> None:
    reader = resp.RespReader(max_bulk=1024)
    with pytest.raises(pyserver.RemoteProtocolError):
        reader.feed(b"?nonsense\r\n")
        reader.replies()
    with pytest.raises(pyserver.RemoteProtocolError):
        redis_codec.decode_broadcast(json.dumps("x").encode())


def test_remote_protocol_error_keeps_its_fields() -> None:
    exc = errors.RemoteProtocolError(
        "no", status=426, headers=(("Sec-WebSocket-Version", "13"),), close_reason="why"
    )
    assert (exc.message, exc.status, exc.headers) == ("no", 426, (("Sec-WebSocket-Version", "13"),))
    assert (exc.close_code, exc.close_reason) == (None, "why")
    assert str(exc) == "no"

"""Issue 20, attachment amplification: one binary attachment referred to by many placeholders,
re-broadcast by the application, became one frame (and one copy) per placeholder.

Now: a placeholder number used twice is a parse error (the connection closes as for a missing
one, the other clients unaffected); encoding keeps one object per attachment however often it
appears (no copies; the broadcast builds one frame for it); and an emit, broadcast or ack
over ``max_emit_bytes`` raises :class:`PacketTooLarge` before anything is queued.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
from helpers.sio_client import RawClient, eventually, serving

from pyserver import Server
from pyserver.socketio.decoder import DecoderState, PacketDecoder
from pyserver.socketio.packets import (
    Event,
    PacketError,
    PacketTooLarge,
    encode_ack,
    encode_event,
)
from pyserver.socketio.session import DEFAULT_MAX_EMIT_BYTES, Session, SessionConfig
from pyserver.trio.socketio import Socket
from pyserver.trio.socketio.adapter import _messages

P0 = '{"_placeholder":true,"num":0}'
P1 = '{"_placeholder":true,"num":1}'
P2 = '{"_placeholder":true,"num":2}'


# ------------------------------------------------------------------ decoding (sans-IO)


def test_audit_attachment_repeated_placeholder_is_a_parse_error() -> None:
    decoder = PacketDecoder()
    assert decoder.receive_text('51-["relay",' + ",".join([P0] * 1000) + "]") is None
    with pytest.raises(PacketError, match="two placeholders"):
        decoder.receive_binary(b"x" * 1000)
    assert decoder.state is DecoderState.FAILED


def test_audit_attachment_repeat_beside_other_attachments_is_a_parse_error() -> None:
    decoder = PacketDecoder()
    # two attachments, each referred to: but num 1 twice (nested), so one is a repeat
    text = '62-/chat,7[{"a":' + P0 + ',"b":[' + P1 + "]}," + P1 + "]"
    assert decoder.receive_text(text) is None
    assert decoder.receive_binary(b"a") is None
    with pytest.raises(PacketError, match="two placeholders"):
        decoder.receive_binary(b"b")


def test_audit_attachment_each_number_once_still_decodes() -> None:
    # what the official clients send: every attachment once, in any order and nesting
    decoder = PacketDecoder()
    assert decoder.receive_text('52-["e",{"x":[' + P1 + "]}," + P0 + "]") is None
    assert decoder.receive_binary(b"zero") is None
    assert decoder.receive_binary(b"one") == Event("/", "e", [{"x": [b"one"]}, b"zero"])


def test_audit_attachment_session_reports_the_repeat_as_a_violation() -> None:
    session = Session(SessionConfig(), now=0.0)
    session.receive_message("0")
    session.accept_namespace("/", "sid")  # type: ignore[arg-type]
    assert session.receive_message('51-["e",' + P0 + "," + P0 + "]") is None
    violation = session.receive_message(b"\x00")
    assert type(violation).__name__ == "ProtocolViolation"


# ------------------------------------------------------------------ encoding (sans-IO)


def test_audit_attachment_reencoding_keeps_one_object_per_attachment() -> None:
    blob = b"\xff" * 100_000
    parts = encode_event("/", "relay", [blob] * 50)
    assert len(parts) == 51
    assert all(part is blob for part in parts[1:])  # references, never copies
    # a bytearray (mutable: copied, so a later change does not reach what was sent) is
    # copied once however often it appears, not once per place
    mutable = bytearray(blob)
    parts = encode_event("/", "relay", [mutable, {"again": mutable}, [mutable]])
    assert parts[1] == blob
    assert parts[1] is parts[2] is parts[3]
    view = memoryview(blob)
    parts = encode_ack("/", 3, [view, view])
    assert parts[1] == blob and parts[1] is parts[2]
    # the broadcast builds one Engine.IO message (one WebSocket frame) per distinct part
    for compress in (True, False):  # compress(False) builds plain messages, as sharing
        messages = _messages(encode_event("/", "relay", [blob, blob, b"other"]), compress)
        assert messages[1] is messages[2] and messages[3] is not messages[1]
        assert messages[1].frame() is messages[2].frame()


def test_audit_attachment_emit_over_the_bound_is_refused_early() -> None:
    blob = b"\x01" * 1000
    with pytest.raises(PacketTooLarge) as raised:
        encode_event("/", "relay", [blob] * 100_000, max_bytes=50_000)
    assert isinstance(raised.value, ValueError)
    assert len(str(raised.value)) < 100  # sizes, not the data
    with pytest.raises(PacketTooLarge):  # the text alone
        encode_event("/", "relay", ["x" * 60_000], max_bytes=50_000)
    with pytest.raises(PacketTooLarge):
        encode_event("/chat", "relay", ["x" * 60_000], 5, max_bytes=50_000)
    with pytest.raises(PacketTooLarge):
        encode_ack("/", 1, ["x" * 60_000], max_bytes=50_000)
    with pytest.raises(PacketTooLarge):
        encode_ack("/", 1, [blob] * 60, max_bytes=50_000)
    # at the bound: sent
    assert len(encode_event("/", "relay", [blob] * 40, max_bytes=50_000)) == 41
    assert encode_event("/", "e", ["x" * 60_000])  # no bound given: none
    assert SessionConfig().max_emit_bytes == DEFAULT_MAX_EMIT_BYTES
    with pytest.raises(ValueError):
        SessionConfig(max_emit_bytes=0)


def test_audit_attachment_session_sends_within_its_bound() -> None:
    session = Session(SessionConfig(max_emit_bytes=10_000), now=0.0)
    session.receive_message("0")
    session.accept_namespace("/", "sid")  # type: ignore[arg-type]
    with pytest.raises(PacketTooLarge):
        session.send_event("/", "e", [b"x" * 6000, b"y" * 6000])
    with pytest.raises(PacketTooLarge):
        session.send_event_with_ack("/", "e", [b"x" * 20_000], now=0.0)
    assert session.next_deadline() is None  # no ack was registered for the refused emit
    assert len(session.send_event("/", "e", [b"x" * 6000])) == 2


# ------------------------------------------------------------------ end to end


def relay_server(**options: Any) -> tuple[Server, list[str], list[str]]:
    """A server that re-broadcasts what it gets, the way the audit's app did."""
    sio = Server(**options)
    reasons: list[str] = []
    refused: list[str] = []

    @sio.on("relay")
    async def relay(socket: Socket, *args: Any) -> None:
        socket.broadcast.emit("relay", *args)

    @sio.on("relay-many")
    async def relay_many(socket: Socket, blob: bytes, times: int) -> str:
        try:
            socket.broadcast.emit("relay", *([blob] * times))
        except PacketTooLarge as exc:
            refused.append(str(exc))
            return "refused"
        return "sent"

    @sio.on("disconnect")
    async def gone(socket: Socket, reason: str) -> None:
        reasons.append(reason)

    return sio, reasons, refused


async def test_audit_attachment_repeated_placeholder_closes_only_the_sender(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sio, reasons, _ = relay_server()
    with trio.fail_after(15):
        async with serving(sio) as url:
            listener = await RawClient.open(url)
            await listener.join()
            sender = await RawClient.open(url)
            await sender.join()
            good = await RawClient.open(url)
            await good.join()
            with caplog.at_level(logging.WARNING, logger="pyserver.socketio"):
                await sender.send_sio('51-["relay",' + ",".join([P0] * 2000) + "]")
                await sender.send(b"\xab" * 4096)
                await sender.wait_closed()
                await eventually(lambda: reasons == ["parse error"])
            lines = [r for r in caplog.records if "malformed" in r.getMessage()]
            assert len(lines) == 1 and "two placeholders" in lines[0].getMessage()
            # the listener got nothing of it: its next packet is the good client's relay
            await good.send_sio('2["relay","ok"]')
            assert await listener.recv_sio() == '2["relay","ok"]'
            # a well-formed binary relay still goes through
            await good.send_sio('51-["relay",' + P0 + "]")
            await good.send(b"\x01\x02")
            assert await listener.recv_sio() == '51-["relay",' + P0 + "]"
            assert await listener.recv() == b"\x01\x02"
            await listener.close()
            await good.close()


async def test_audit_attachment_rebroadcast_over_max_emit_bytes_is_refused() -> None:
    sio, reasons, refused = relay_server(max_emit_bytes=100_000)
    with trio.fail_after(15):
        async with serving(sio) as url:
            listener = await RawClient.open(url)
            await listener.join()
            sender = await RawClient.open(url)
            await sender.join()
            # one 10 KB attachment (referred to once), re-broadcast 50 times by the app
            await sender.send_sio('51-1["relay-many",' + P0 + ",50]")
            await sender.send(b"\x07" * 10_000)
            assert await sender.recv_sio() == '31["refused"]'
            assert len(refused) == 1 and len(refused[0]) < 100
            # nothing was queued for the listener; under the bound it goes out
            await sender.send_sio('51-2["relay-many",' + P0 + ",3]")
            await sender.send(b"\x07" * 10_000)
            assert await sender.recv_sio() == '32["sent"]'
            head = await listener.recv_sio()
            assert head == '53-["relay",' + P0 + "," + P1 + "," + P2 + "]"
            for _ in range(3):
                assert await listener.recv() == b"\x07" * 10_000
            assert reasons == []
            await sender.close()
            await listener.close()

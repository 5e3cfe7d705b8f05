"""The codec's fast paths (EVENT and ACK in and out) against the general paths they shortcut.

Each fast path must give the same packet, the same error message and the same exception type
as the way it skips: the decoder's ``_decode_text`` with json's full ``decode``, and the
encoder's ``_header`` with ``json.JSONEncoder.encode``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from pyserver.socketio import decoder as decoder_module
from pyserver.socketio import packets as packets_module
from pyserver.socketio.binary import dumps_with_attachments
from pyserver.socketio.decoder import DecoderState, PacketDecoder
from pyserver.socketio.packets import (
    MAX_ACK_ID,
    Event,
    LocalProtocolError,
    PacketError,
    PacketType,
    Sid,
    encode_ack,
    encode_event,
)
from pyserver.socketio.session import (
    EventReceived,
    NamespaceNotJoined,
    ProtocolViolation,
    Session,
    SessionConfig,
)

DEEP = 100_000

TRICKY_TEXTS = [
    '2["a"]',
    '21["a"]',
    '21["a",1,{"b":[null,true]}]',
    '2 ["a"]',
    '2["a"] ',
    '2["a"]\n',
    '2\t["a"]',
    '21 ["a"]',
    '21["a"] ',
    '2 [ "a" ] ',
    "2",
    "21",
    "21 ",
    "2[",
    "21[",
    "2[]",
    "21[]",
    "2[1]",
    "21[null]",
    '2["connect"]',
    '21["disconnect",1]',
    '2{"a":1}',
    "21{}",
    '2"x"',
    "2null",
    "21null",
    '2["a",NaN]',
    '21["a",Infinity]',
    '2["a",-Infinity]',
    '2["a",1e400]',
    '2["a"]x',
    '21["a"]]',
    '2["a"][',
    '2["a",{"k":1,"k":2}]',
    "2" + "1" * 16 + '["a"]',
    "2" + "1" * 17 + '["a"]',
    "2" + "1" * 18 + '["a"]',
    "2" + "9" * 16 + '["a"]',
    "2" + str(MAX_ACK_ID) + '["a"]',
    "2" + str(MAX_ACK_ID + 1) + '["a"]',
    '20001["a"]',
    '2/nsp,5["a"]',
    '2/nsp,["a"]',
    '2/nsp["a"]',
    "2/nsp,5",
    '2\u0661["a"]',  # ARABIC-INDIC DIGIT ONE: a digit for str.isdigit, not for the protocol
    '2\u00b2["a"]',  # SUPERSCRIPT TWO
    '21a["a"]',
    '2-1["a"]',
    '2+1["a"]',
    '2["a","\\ud800"]',
    '21["a","\\udc00x"]',
    '2["a","\\ud83d\\ude00"]',
    '2["a","\\\\ud800"]',
    '21["a","\\uD800\\uDBFF"]',
    '2["a",' + "[" * DEEP + "]" * DEEP + "]",
    '21["a",' + "[" * DEEP + "]" * DEEP + "]",
    '2["a",' + "[" * 50 + "]" * 50 + "]",
    '2["a",' + '{"x":' * 50 + "1" + "}" * 50 + "]",
    '23-["a"]',
    '3["a"]',
    '31["a"]',
]


def _old_loads(text: str) -> Any:
    """The decoder's JSON step as it was: json's full decode, nothing skipped."""
    if "\\ud" in text or "\\uD" in text:
        text = decoder_module._LONE_SURROGATE.sub(decoder_module._keep_pairs, text)
    try:
        return decoder_module._DECODER.decode(text)
    except (ValueError, RecursionError):
        raise PacketError("invalid JSON payload") from None


def _outcome(call: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "ok", call(*args)
    except PacketError as exc:
        return "PacketError", str(exc)


def _slow_decode(text: str) -> tuple[str, Any]:
    """What the general path (``_decode_text``, full JSON decode) makes of ``text``."""
    original = decoder_module._loads
    decoder_module._loads = lambda text, pos=0: _old_loads(text[pos:])
    try:
        return _outcome(PacketDecoder()._decode_text, text)
    finally:
        decoder_module._loads = original


@pytest.mark.parametrize("text", TRICKY_TEXTS, ids=range(len(TRICKY_TEXTS)))
def test_receive_text_matches_the_general_path(text: str) -> None:
    expected = _slow_decode(text)
    decoder = PacketDecoder()
    got = _outcome(decoder.receive_text, text)
    assert got == expected
    failed = expected[0] == "PacketError"
    assert (decoder.state is DecoderState.FAILED) == failed


@pytest.mark.parametrize("text", TRICKY_TEXTS, ids=range(len(TRICKY_TEXTS)))
def test_loads_matches_json_decode(text: str) -> None:
    for pos in range(min(len(text), 3) + 1):
        assert _outcome(decoder_module._loads, text, pos) == _outcome(_old_loads, text[pos:])


def test_receive_text_event_gives_a_tuple_for_events_on_the_root_namespace() -> None:
    decoder = PacketDecoder()
    assert decoder.receive_text_event('21["a",1]') == ("a", [1], 1)
    assert decoder.receive_text_event('2["a"]') == ("a", [], None)
    assert decoder.receive_text_event('2/x,1["a"]') == Event("/x", "a", [], 1)


def test_fast_path_keeps_the_decoder_state_rules() -> None:
    decoder = PacketDecoder()
    assert decoder.receive_text('51-["a",{"_placeholder":true,"num":0}]') is None
    with pytest.raises(PacketError, match="text packet while attachments were expected"):
        decoder.receive_text('21["a"]')
    with pytest.raises(LocalProtocolError):
        decoder.receive_text('21["a"]')


def _open_session() -> Session:
    session = Session(SessionConfig(), now=0.0)
    session.receive_message("0")
    session.accept_namespace("/", Sid("s1"))
    return session


@pytest.mark.parametrize("text", TRICKY_TEXTS, ids=range(len(TRICKY_TEXTS)))
def test_session_fast_path_matches_the_general_path(text: str) -> None:
    expected = _slow_decode(text)
    session = _open_session()
    event = session.receive_message(text)
    if expected[0] == "ok" and type(expected[1]) is Event and expected[1].namespace == "/":
        packet = expected[1]
        assert event == EventReceived("/", Sid("s1"), packet.event, packet.args, packet.ack_id)
    elif expected[0] == "PacketError":
        assert isinstance(event, ProtocolViolation)
        assert event.detail == expected[1]


def test_session_event_on_root_before_connect_is_not_joined() -> None:
    session = Session(SessionConfig(), now=0.0)
    event = session.receive_message('21["a"]')
    assert event == NamespaceNotJoined("/", "EVENT")


# ------------------------------------------------------------------ encoding


_PLAIN_ENCODER = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=packets_module._refuse
)


def _old_dumps(data: Any) -> tuple[str, list[bytes]]:
    try:
        try:
            return _PLAIN_ENCODER.encode(data), []
        except packets_module._BinaryFound:
            return dumps_with_attachments(data)
    except (TypeError, ValueError, RecursionError) as exc:
        raise LocalProtocolError(f"data cannot be sent as JSON: {exc}") from exc


def _old_encode_event(
    namespace: str, event: str, args: Sequence[Any], ack_id: int | None
) -> list[str | bytes]:
    text, attachments = _old_dumps([event, *args])
    ptype = PacketType.BINARY_EVENT if attachments else PacketType.EVENT
    return [packets_module._header(ptype, namespace, ack_id, len(attachments)) + text, *attachments]


def _old_encode_ack(namespace: str, ack_id: int, args: Sequence[Any]) -> list[str | bytes]:
    text, attachments = _old_dumps(list(args))
    ptype = PacketType.BINARY_ACK if attachments else PacketType.ACK
    return [packets_module._header(ptype, namespace, ack_id, len(attachments)) + text, *attachments]


class _Seq(Sequence[Any]):
    def __init__(self, *items: Any) -> None:
        self._items = list(items)

    def __getitem__(self, index: Any) -> Any:
        return self._items[index]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._items)


def _deep(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


TRICKY_ARGS: list[Any] = [
    [],
    (),
    ["x" * 32],
    ("t", 1),
    _Seq("s", 2),
    [1, 2.5, None, True, {"k": [1, {"n": "\u00e9\u4e2d\U0001f600"}]}],
    ["\ud800", "a\udc00b"],
    [{1: "int key", None: "none key", 1.5: "float key"}],
    [float("nan")],
    [float("inf")],
    [b"bytes"],
    ["x", {"inner": [bytearray(b"ba"), memoryview(b"mv")]}],
    [object()],
    [{("tuple",): 1}],
    [_deep(50)],
    [_deep(DEEP)],
]


def _encode_outcome(call: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "ok", call(*args)
    except LocalProtocolError:
        return "LocalProtocolError", None


@pytest.mark.parametrize("args", TRICKY_ARGS, ids=range(len(TRICKY_ARGS)))
@pytest.mark.parametrize("namespace", ["/", "/chat"])
@pytest.mark.parametrize("ack_id", [None, 0, 7, MAX_ACK_ID])
def test_encode_event_matches_the_general_path(
    args: Any, namespace: str, ack_id: int | None
) -> None:
    got = _encode_outcome(encode_event, namespace, "ev", args, ack_id)
    assert got == _encode_outcome(_old_encode_event, namespace, "ev", args, ack_id)


@pytest.mark.parametrize("args", TRICKY_ARGS, ids=range(len(TRICKY_ARGS)))
@pytest.mark.parametrize("namespace", ["/", "/chat"])
@pytest.mark.parametrize("ack_id", [0, 7, MAX_ACK_ID])
def test_encode_ack_matches_the_general_path(args: Any, namespace: str, ack_id: int) -> None:
    got = _encode_outcome(encode_ack, namespace, ack_id, args)
    assert got == _encode_outcome(_old_encode_ack, namespace, ack_id, args)


@pytest.mark.parametrize("ack_id", [-1, MAX_ACK_ID + 1, True, 1.0, "1"])
def test_encode_ack_refuses_bad_ack_ids_on_the_fast_path(ack_id: Any) -> None:
    with pytest.raises(LocalProtocolError, match=re.escape(f"invalid ack id {ack_id!r}")):
        encode_ack("/", ack_id, ["x"])


@pytest.mark.parametrize("ack_id", [-1, MAX_ACK_ID + 1, True, 1.0, "1"])
def test_encode_event_refuses_bad_ack_ids_on_the_fast_path(ack_id: Any) -> None:
    with pytest.raises(LocalProtocolError, match=re.escape(f"invalid ack id {ack_id!r}")):
        encode_event("/", "e", ["x"], ack_id)


@pytest.mark.parametrize("call", ["event", "event_ack", "ack"])
def test_circular_data_is_a_local_error_on_the_fast_paths(call: str) -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(LocalProtocolError):
        if call == "event":
            encode_event("/", "e", [loop])
        elif call == "event_ack":
            encode_event("/", "e", [loop], 3)
        else:
            encode_ack("/", 3, [loop])
    circular: dict[str, Any] = {}
    circular["self"] = circular
    with pytest.raises(LocalProtocolError):
        encode_ack("/", 3, [circular])


def test_encoder_fallback_without_the_c_encoder_agrees() -> None:
    data = ["a", 1, {"b": [None, "\u00e9"]}]
    assert packets_module._encode_with_encoder(data, 0) == packets_module._ENCODE(data, 0)


def test_session_send_ack_checks_like_before() -> None:
    session = _open_session()
    assert session.send_ack("/", 5, ["x"]) == ['35["x"]']
    with pytest.raises(LocalProtocolError, match="not connected to '/other'"):
        session.send_ack("/other", 5, ["x"])
    session.connection_lost("transport close")
    with pytest.raises(LocalProtocolError, match="the session is closed"):
        session.send_ack("/", 5, ["x"])


def test_large_data_is_encoded_whole() -> None:
    """Python 3.11's C encoder returns its output in several chunks once it is large: every
    chunk must be sent, not only the first."""
    items = [f"item {n}" for n in range(300_000)]
    expected = json.dumps(["big", items], separators=(",", ":"), ensure_ascii=False)
    assert encode_event("/", "big", [items]) == ["2" + expected]
    assert encode_event("/", "big", [items], 5) == ["25" + expected]
    assert encode_event("/chat", "big", [items]) == ["2/chat," + expected]
    as_ack = json.dumps([items], separators=(",", ":"), ensure_ascii=False)
    assert encode_ack("/", 9, [items]) == ["39" + as_ack]
    assert encode_ack("/chat", 9, [items]) == ["3/chat,9" + as_ack]

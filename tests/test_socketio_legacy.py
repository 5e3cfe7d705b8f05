"""Socket.IO protocol v4 (``pyserver.socketio.legacy``, socket.io-client 2.x): plain sync
tests of what differs from v5, the namespace handshake; events and acks are v5's."""

from __future__ import annotations

import json

import pytest

from pyserver.socketio.legacy import (
    LegacyParserSession,
    LegacySession,
    connect_query,
    encode_legacy_connect,
    encode_legacy_error,
    legacy_allowed,
    legacy_session,
    legacy_socket_id,
)
from pyserver.socketio.packets import Sid
from pyserver.socketio.parsers import JSONParser
from pyserver.socketio.session import (
    EventReceived,
    NamespaceConnectRequested,
    ProtocolViolation,
    SessionConfig,
)

CONFIG = SessionConfig()


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("0", ("/", {})),
        ("0/chat,", ("/chat", {})),
        ("0/chat?token=abc,", ("/chat", {"token": "abc"})),
        ("0/a?x=1&y=&x=2,", ("/a", {"x": ["1", "2"], "y": ""})),
        ("0/a?q=%C3%BC%20z,", ("/a", {"q": "ü z"})),
        ("2[]", None),
        ("0chat,", None),
        ('0/chat,{"token":1}', None),  # a v5 CONNECT with auth is not a v4 one
    ],
)
def test_connect_query(text: str, found: object) -> None:
    assert connect_query(text) == found


def test_answers() -> None:
    assert encode_legacy_connect("/") == "0"
    assert encode_legacy_connect("/chat") == "0/chat,"
    assert encode_legacy_error("/", "not authorized") == '4"not authorized"'
    assert encode_legacy_error("/chat", "no", {"reason": "ü"}) == '4/chat,{"reason":"ü"}'
    assert encode_legacy_error("/chat", "no", object()) == '4/chat,"no"'  # not JSON: the message


def test_the_server_joins_main_then_the_client_asks_for_a_namespace() -> None:
    session = LegacySession(CONFIG, 0.0)
    assert session.join_main() == NamespaceConnectRequested("/", None)
    assert session.accept_namespace("/", Sid("s1"), "pid-ignored") == "0"
    assert session.sockets == {"/": "s1"}
    # the v4 client's CONNECT: the query is the auth
    assert session.receive_message("0/chat?token=t,") == NamespaceConnectRequested(
        "/chat", {"token": "t"}
    )
    assert session.receive_message("0/chat?token=t,") is None  # asked already
    assert session.refuse_namespace("/chat", "not authorized") == '4/chat,"not authorized"'
    # events are v5's
    assert session.receive_message('2["hi",1]') == EventReceived("/", Sid("s1"), "hi", [1], None)
    assert session.send_event("/", "x", [b"\x01"]) == [
        '51-["x",{"_placeholder":true,"num":0}]',
        b"\x01",
    ]


def test_a_malformed_connect_is_a_violation() -> None:
    session = LegacySession(CONFIG, 0.0)
    assert isinstance(session.receive_message("0oops"), ProtocolViolation)
    assert session.receive_message("0/chat,") is None  # closed


def test_with_a_json_codec_the_handshake_is_still_v4() -> None:
    session = legacy_session(CONFIG, 0.0, JSONParser(json))
    assert isinstance(session, LegacyParserSession)
    session.join_main()
    assert session.accept_namespace("/", Sid("s1")) == "0"
    assert isinstance(legacy_session(CONFIG, 0.0, None), LegacySession)


def test_allow_eio3_with_the_json_parsers_only() -> None:
    from pyserver.socketio.msgpack_parser import MsgpackParser

    assert legacy_allowed(True, None) is True
    assert legacy_allowed(True, JSONParser(json)) is True
    assert legacy_allowed(False, MsgpackParser()) is False
    with pytest.raises(ValueError, match="allow_eio3"):
        legacy_allowed(True, MsgpackParser())


def test_socket_ids_are_the_ones_the_client_computes() -> None:
    assert legacy_socket_id("/", "AbC") == "AbC"
    assert legacy_socket_id("/chat", "AbC") == "/chat#AbC"

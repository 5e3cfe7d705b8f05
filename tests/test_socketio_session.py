"""The per-connection Socket.IO state: plain functions, messages and ``now`` in, events out."""

from __future__ import annotations

import pytest

from pyserver.socketio import (
    AckReceived,
    AckTimedOut,
    ConnectTimedOut,
    EventReceived,
    LeaveReason,
    LocalProtocolError,
    NamespaceConnectRequested,
    NamespaceLeft,
    ProtocolViolation,
    Session,
    SessionConfig,
    SessionState,
    Sid,
)
from pyserver.socketio.session import NamespaceNotJoined

CONFIG = SessionConfig(connect_timeout=45.0)
S1, S2 = Sid("sock-1"), Sid("sock-2")


def connected(*namespaces: str) -> Session:
    session = Session(CONFIG, now=0.0)
    for i, namespace in enumerate(namespaces):
        prefix = "0" if namespace == "/" else f"0{namespace},"
        assert session.receive_message(prefix) == NamespaceConnectRequested(namespace, None)
        session.accept_namespace(namespace, Sid(f"sock-{i + 1}"))
    return session


def test_connect_accept_and_the_wire_answer() -> None:
    session = Session(CONFIG, now=0.0)
    assert session.state is SessionState.AWAITING_CONNECT
    assert session.receive_message('0{"token":"123"}') == NamespaceConnectRequested(
        "/", {"token": "123"}
    )
    assert session.accept_namespace("/", S1) == '0{"sid":"sock-1"}'
    assert session.state is SessionState.OPEN
    assert dict(session.sockets) == {"/": S1}
    assert session.next_deadline() is None


def test_connect_refused_keeps_the_connect_timeout() -> None:
    session = Session(CONFIG, now=10.0)
    session.receive_message("0/admin,")
    assert session.refuse_namespace("/admin", "Not authorized") == (
        '4/admin,{"message":"Not authorized"}'
    )
    assert session.state is SessionState.AWAITING_CONNECT
    assert session.next_deadline() == 55.0
    assert session.handle_timeout(54.9) == []
    assert session.handle_timeout(55.0) == [ConnectTimedOut()]
    assert session.state is SessionState.CLOSED
    assert session.receive_message('2["late"]') is None


def test_refused_namespace_can_be_requested_again() -> None:
    session = Session(CONFIG, now=0.0)
    session.receive_message("0/x,")
    session.refuse_namespace("/x", "Invalid namespace")
    assert session.receive_message("0/x,") == NamespaceConnectRequested("/x", None)


def test_duplicate_connect_is_dropped() -> None:
    session = Session(CONFIG, now=0.0)
    assert session.receive_message("0") is not None
    assert session.receive_message("0") is None  # still waiting for the shell's answer
    session.accept_namespace("/", S1)
    assert session.receive_message("0") is None  # already connected


def test_answering_a_request_never_made_is_misuse() -> None:
    session = Session(CONFIG, now=0.0)
    with pytest.raises(LocalProtocolError):
        session.accept_namespace("/", S1)
    with pytest.raises(LocalProtocolError):
        session.refuse_namespace("/", "no")


def test_events_on_connected_namespaces_only() -> None:
    session = connected("/", "/admin")
    assert session.receive_message('2["hello",1]') == EventReceived("/", S1, "hello", [1], None)
    assert session.receive_message('2/admin,456["project:delete",123]') == EventReceived(
        "/admin", S2, "project:delete", [123], 456
    )


@pytest.mark.parametrize(
    ("message", "namespace", "packet"),
    [
        ('2/other,["x"]', "/other", "EVENT"),
        ('51-/other,["up",{"_placeholder":true,"num":0}]', "/other", "EVENT"),
        ("3/other,0[]", "/other", "ACK"),
        ("1/other,", "/other", "DISCONNECT"),
    ],
)
def test_packet_for_a_namespace_not_joined_closes_the_session(
    message: str, namespace: str, packet: str
) -> None:
    # the reference server (Client.ondecoded): "invalid state", then the connection closes
    session = connected("/")
    session.send_event_with_ack("/", "ask", now=0.0, timeout=5.0)
    event = session.receive_message(message)
    if event is None:  # a binary event: complete once its attachment is in
        event = session.receive_message(b"\x01")
    assert event == NamespaceNotJoined(namespace, packet)
    assert session.state is SessionState.CLOSED
    assert session.receive_message('2["after"]') is None
    assert session.next_deadline() is None


@pytest.mark.parametrize("message", ['2["x"]', "30[]", "1"])
def test_packet_before_any_connect_closes_the_session(message: str) -> None:
    session = Session(CONFIG, now=0.0)
    assert isinstance(session.receive_message(message), NamespaceNotJoined)
    assert session.state is SessionState.CLOSED
    assert session.next_deadline() is None  # the connect timer stops too


def test_packet_while_the_connect_is_still_being_answered_closes_the_session() -> None:
    session = Session(CONFIG, now=0.0)
    assert session.receive_message("0/admin,") == NamespaceConnectRequested("/admin", None)
    assert session.receive_message('2/admin,["early"]') == NamespaceNotJoined("/admin", "EVENT")
    with pytest.raises(LocalProtocolError):
        session.accept_namespace("/admin", S1)


def test_binary_event_arrives_with_its_attachment() -> None:
    session = connected("/")
    assert session.receive_message('51-["up",{"_placeholder":true,"num":0}]') is None
    assert session.receive_message(b"\x01\x02") == EventReceived("/", S1, "up", [b"\x01\x02"], None)


def test_send_ack_answers_the_client() -> None:
    session = connected("/admin")
    assert session.send_ack("/admin", 456, []) == ["3/admin,456[]"]
    assert session.send_ack("/admin", 7, [b"\x01"]) == [
        '61-/admin,7[{"_placeholder":true,"num":0}]',
        b"\x01",
    ]


def test_send_event_with_ack_and_the_answer() -> None:
    session = connected("/")
    assert session.send_event("/", "hey", ["Jude"]) == ['2["hey","Jude"]']
    ack_id, messages = session.send_event_with_ack("/", "ask", [1], now=0.0)
    assert (ack_id, messages) == (0, ['20["ask",1]'])
    second, _ = session.send_event_with_ack("/", "ask", [], now=0.0)
    assert second == 1
    assert session.receive_message('30["ok"]') == AckReceived("/", S1, 0, ["ok"])
    assert session.receive_message('30["again"]') is None  # answered already
    assert session.receive_message("39[]") is None  # never sent
    assert session.receive_message('61-1[{"_placeholder":true,"num":0}]') is None
    assert session.receive_message(b"z") == AckReceived("/", S1, 1, [b"z"])


def test_ack_with_an_id_of_another_namespace_is_dropped() -> None:
    session = connected("/", "/admin")
    ack_id, _ = session.send_event_with_ack("/admin", "ask", now=0.0)
    assert session.receive_message(f"3{ack_id}[]") is None
    assert session.receive_message(f"3/admin,{ack_id}[]") == AckReceived("/admin", S2, ack_id, [])


def test_ack_timeout_reported_once_and_late_answer_dropped() -> None:
    session = connected("/")
    first, _ = session.send_event_with_ack("/", "a", now=1.0, timeout=5.0)
    second, _ = session.send_event_with_ack("/", "b", now=2.0, timeout=1.0)
    untimed, _ = session.send_event_with_ack("/", "c", now=2.0)
    assert session.next_deadline() == 3.0
    assert session.handle_timeout(3.0) == [AckTimedOut("/", S1, second)]
    assert session.next_deadline() == 6.0
    assert session.receive_message(f"3{first}[]") == AckReceived("/", S1, first, [])
    assert session.next_deadline() is None  # the answered ack's deadline is gone
    assert session.handle_timeout(100.0) == []
    assert session.receive_message(f"3{second}[]") is None
    assert session.receive_message(f"3{untimed}[]") == AckReceived("/", S1, untimed, [])


def test_many_answered_acks_do_not_grow_the_deadline_heap() -> None:
    session = connected("/")
    for _ in range(10_000):
        ack_id, _ = session.send_event_with_ack("/", "a", now=0.0, timeout=60.0)
        assert session.receive_message(f"3{ack_id}[]") is not None
    assert len(session._ack_deadlines) <= 100


def test_client_disconnect_leaves_and_abandons_acks() -> None:
    session = connected("/", "/admin")
    waiting, _ = session.send_event_with_ack("/admin", "a", now=0.0, timeout=1.0)
    session.send_event_with_ack("/", "b", now=0.0)
    assert session.receive_message("1/admin,") == NamespaceLeft(
        "/admin", S2, LeaveReason.CLIENT_NAMESPACE_DISCONNECT, (waiting,)
    )
    assert dict(session.sockets) == {"/": S1}
    assert session.handle_timeout(5.0) == []
    with pytest.raises(LocalProtocolError):
        session.send_event("/admin", "x")
    # the reference server closes the connection for anything more on /admin
    assert session.receive_message('2/admin,["late"]') == NamespaceNotJoined("/admin", "EVENT")
    assert session.state is SessionState.CLOSED


def test_server_disconnect() -> None:
    session = connected("/admin")
    packet, left = session.disconnect_namespace("/admin")
    assert packet == "1/admin,"
    assert left == NamespaceLeft("/admin", S1, LeaveReason.SERVER_NAMESPACE_DISCONNECT)
    with pytest.raises(LocalProtocolError):
        session.disconnect_namespace("/admin")
    # an event the client sent before our DISCONNECT reached it: the reference server closes
    # the connection anyway ("invalid state"), and so does this session
    assert session.receive_message('2/admin,["in flight"]') == NamespaceNotJoined("/admin", "EVENT")
    assert session.state is SessionState.CLOSED


def test_connection_lost_leaves_every_namespace() -> None:
    session = connected("/", "/admin")
    ack_id, _ = session.send_event_with_ack("/", "a", now=0.0)
    assert session.connection_lost("transport close") == [
        NamespaceLeft("/", S1, "transport close", (ack_id,)),
        NamespaceLeft("/admin", S2, "transport close"),
    ]
    assert session.state is SessionState.CLOSED
    assert session.connection_lost("transport close") == []
    with pytest.raises(LocalProtocolError):
        session.send_event("/", "x")


@pytest.mark.parametrize(
    "message",
    ["9", '2["connect"]', '4{"message":"x"}', b"\x00", '2["e"', "0[]"],
)
def test_violations_close_the_session(message: str | bytes) -> None:
    session = connected("/")
    event = session.receive_message(message)
    assert isinstance(event, ProtocolViolation)
    assert event.detail
    assert session.state is SessionState.CLOSED
    assert session.receive_message('2["after"]') is None
    assert session.next_deadline() is None


def test_violation_before_connect_stops_the_connect_timer() -> None:
    session = Session(CONFIG, now=0.0)
    assert isinstance(session.receive_message("x"), ProtocolViolation)
    assert session.next_deadline() is None
    assert session.handle_timeout(1000.0) == []


def test_attachment_limit_comes_from_the_config() -> None:
    session = Session(SessionConfig(max_attachments=1), now=0.0)
    session.receive_message("0")
    session.accept_namespace("/", S1)
    assert isinstance(session.receive_message('52-["e",{}]'), ProtocolViolation)


def test_config_is_validated() -> None:
    with pytest.raises(ValueError):
        SessionConfig(connect_timeout=0)
    with pytest.raises(ValueError):
        SessionConfig(max_attachment_bytes=-1)

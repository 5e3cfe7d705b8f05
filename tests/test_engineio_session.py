"""The Engine.IO session state machine: no trio, no clock; packets and ``now`` in, events out."""

from __future__ import annotations

import json
import subprocess
import sys

from pyserver.engineio.packets import Packet, PacketType, encode_payload
from pyserver.engineio.session import (
    CloseReason,
    EioSid,
    MessageReceived,
    PollState,
    ProbeFailed,
    Session,
    SessionClosed,
    SessionConfig,
    SessionState,
    Transport,
    UpgradeCompleted,
    UpgradeState,
)

CONFIG = SessionConfig(ping_interval=25.0, ping_timeout=20.0, upgrade_timeout=10.0)


def polling(now: float = 0.0, config: SessionConfig = CONFIG) -> Session:
    session = Session(EioSid("abc"), Transport.POLLING, config, now)
    session.start_poll()
    assert session.take_poll_payload() is not None  # the open packet
    return session


def poll(session: Session) -> str | None:
    """Start a GET and answer it if it can be answered now."""
    if session.poll_state is PollState.IDLE:
        session.start_poll()
    packets = session.take_poll_payload()
    return None if packets is None else encode_payload(packets)


def test_the_sans_io_core_does_not_import_trio() -> None:
    import pyserver.engineio.http_answers

    for name in (
        "pyserver.engineio.packets",
        "pyserver.engineio.session",
        pyserver.engineio.http_answers.__name__,
    ):
        module = sys.modules[name]
        source = open(module.__file__ or "").read()
        for banned in ("trio", "socket", "time", "asyncio"):
            assert f"import {banned}" not in source
            assert f"from {banned}" not in source


def test_importing_the_cores_does_not_load_trio() -> None:
    code = (
        "import sys, pyserver.engineio, pyserver.engineio.session, pyserver.engineio.packets\n"
        "assert 'trio' not in sys.modules and 'asyncio' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_open_packet_on_polling() -> None:
    session = Session(EioSid("abc"), Transport.POLLING, CONFIG, 0.0)
    session.start_poll()
    packets = session.take_poll_payload()
    assert packets is not None and packets[0].type is PacketType.OPEN
    assert isinstance(packets[0].data, str)
    assert json.loads(packets[0].data) == {
        "sid": "abc",
        "upgrades": ["websocket"],
        "pingInterval": 25000,
        "pingTimeout": 20000,
        "maxPayload": 1_000_000,
    }


def test_open_packet_on_websocket_has_no_upgrades() -> None:
    session = Session(EioSid("abc"), Transport.WEBSOCKET, CONFIG, 0.0)
    (packet,) = session.take_packets()
    assert isinstance(packet.data, str)
    assert json.loads(packet.data)["upgrades"] == []


def test_messages_in_a_payload() -> None:
    session = polling()
    events = session.receive_payload("4one\x1ebAQI=\x1e4two", 1.0)
    assert events == [
        MessageReceived("one"),
        MessageReceived(b"\x01\x02"),
        MessageReceived("two"),
    ]


def test_get_waits_until_something_is_queued() -> None:
    session = polling()
    assert poll(session) is None
    assert not session.poll_ready
    session.send_message("hi")
    session.send_message(b"\x01")
    assert session.poll_ready
    assert poll(session) == "4hi\x1ebAQ=="
    assert session.poll_state is PollState.IDLE


def test_heartbeat_ping_then_pong_rearms_the_interval() -> None:
    session = polling()
    assert session.next_deadline() == 25.0
    assert session.handle_timeout(24.9) == []
    assert session.handle_timeout(25.0) == []
    assert poll(session) == "2"
    assert session.next_deadline() == 45.0  # the pong deadline
    session.receive_payload("3", 30.0)
    assert session.next_deadline() == 55.0  # interval re-armed from the pong
    assert session.handle_timeout(45.0) == []
    assert session.state is SessionState.OPEN


def test_ping_timeout_closes_and_a_waiting_get_gets_close() -> None:
    session = polling()
    session.handle_timeout(25.0)
    assert poll(session) == "2"
    assert poll(session) is None
    events = session.handle_timeout(45.0)
    assert events == [SessionClosed(CloseReason.PING_TIMEOUT, "no pong in time")]
    assert session.state is SessionState.CLOSED
    assert session.next_deadline() is None
    assert poll(session) == "1"


def test_parse_error_closes() -> None:
    session = polling()
    (event,) = session.receive_payload("abc", 1.0)
    assert isinstance(event, SessionClosed) and event.reason is CloseReason.PARSE_ERROR
    assert session.receive_payload("4late", 2.0) == ()


def test_duplicate_get_closes_with_transport_error() -> None:
    session = polling()
    assert poll(session) is None
    (event,) = session.start_poll()
    assert event == SessionClosed(CloseReason.TRANSPORT_ERROR, "overlap from client")
    assert poll(session) == "1"  # the first GET is answered with close


def test_client_close_answers_the_waiting_get_with_noop() -> None:
    session = polling()
    assert poll(session) is None
    (event,) = session.receive_payload("1", 1.0)
    assert isinstance(event, SessionClosed) and event.reason is CloseReason.TRANSPORT_CLOSE
    assert poll(session) == "6"


def test_ping_from_the_client_is_a_transport_error() -> None:
    session = polling()
    (event,) = session.receive_payload("2", 1.0)
    assert isinstance(event, SessionClosed) and event.reason is CloseReason.TRANSPORT_ERROR


def test_local_close_on_polling_flushes_then_closes() -> None:
    session = polling()
    session.send_message("bye")
    assert session.close(now=1.0) == ()
    assert session.state is SessionState.CLOSING
    assert session.next_deadline() == 31.0
    session.send_message("dropped")
    assert poll(session) == "4bye\x1e1"
    (event,) = session.poll_finished()
    assert event == SessionClosed(CloseReason.FORCED_CLOSE, "closed by the server")


def test_local_close_times_out_without_a_get() -> None:
    session = polling()
    session.close(now=1.0)
    (event,) = session.handle_timeout(31.0)
    assert isinstance(event, SessionClosed) and event.reason is CloseReason.FORCED_CLOSE


def test_local_close_on_websocket_queues_close_packet() -> None:
    session = Session(EioSid("abc"), Transport.WEBSOCKET, CONFIG, 0.0)
    session.take_packets()
    session.send_message("last")
    (event,) = session.close(now=1.0)
    assert isinstance(event, SessionClosed) and event.reason is CloseReason.FORCED_CLOSE
    assert session.take_packets() == [
        Packet(PacketType.MESSAGE, "last"),
        Packet(PacketType.CLOSE),
    ]


def test_websocket_messages_and_transport_close() -> None:
    session = Session(EioSid("abc"), Transport.WEBSOCKET, CONFIG, 0.0)
    assert session.receive_data("4hello", 1.0) == (MessageReceived("hello"),)
    assert session.receive_data(b"\x00\xff", 1.0) == (MessageReceived(b"\x00\xff"),)
    (event,) = session.transport_closed()
    assert event == SessionClosed(CloseReason.TRANSPORT_CLOSE, "")
    assert session.transport_closed() == ()  # exactly one close event


def test_upgrade_probe_noop_and_switch() -> None:
    session = polling()
    assert poll(session) is None  # a GET is waiting
    assert session.start_upgrade(1.0)
    assert session.next_deadline() == 11.0  # the upgrade timeout
    assert session.receive_probe_data("2probe", 1.0) == ()
    assert session.take_probe_packets() == [Packet(PacketType.PONG, "probe")]
    assert session.poll_ready
    assert poll(session) == "6"  # the waiting GET ends with noop
    session.send_message("queued during upgrade")
    assert poll(session) == "4queued during upgrade"
    session.send_message("after")
    assert session.receive_probe_data("5", 2.0) == (UpgradeCompleted(),)
    assert session.transport is Transport.WEBSOCKET
    assert session.upgrade_state is UpgradeState.UPGRADED
    assert session.take_packets() == [Packet(PacketType.MESSAGE, "after")]
    assert not session.start_upgrade(3.0)  # only one upgrade
    assert session.receive_data("4over ws", 3.0) == (MessageReceived("over ws"),)


def test_upgrade_timeout_fails_the_probe_only() -> None:
    session = polling()
    assert session.start_upgrade(1.0)
    assert not session.start_upgrade(1.0)  # one probe at a time
    session.receive_probe_data("2probe", 1.0)
    events = session.handle_timeout(11.0)
    assert events == [ProbeFailed("upgrade timeout")]
    assert session.upgrade_state is UpgradeState.NONE
    assert session.state is SessionState.OPEN
    assert session.transport is Transport.POLLING


def test_unexpected_packet_on_the_probe_fails_it() -> None:
    session = polling()
    assert session.start_upgrade(1.0)
    (event,) = session.receive_probe_data("4hello", 1.0)
    assert isinstance(event, ProbeFailed)
    assert session.start_upgrade(2.0)  # the client may try again
    session.abort_upgrade()
    assert session.upgrade_state is UpgradeState.NONE


def test_outgoing_queue_is_bounded() -> None:
    session = polling(config=SessionConfig(max_queued_packets=3))
    assert session.send_message("1") == ()
    assert session.send_message("2") == ()
    assert session.send_message("3") == ()
    (event,) = session.send_message("4")
    assert event == SessionClosed(CloseReason.TRANSPORT_ERROR, "outgoing queue full")
    small = polling(config=SessionConfig(max_queued_bytes=10))
    (event,) = small.send_message("x" * 20)
    assert isinstance(event, SessionClosed)


def test_open_server_close_reasons() -> None:
    session = polling()
    (event,) = session.close(CloseReason.SERVER_SHUTTING_DOWN, now=1.0)
    assert isinstance(event, SessionClosed)
    assert event.reason == "server shutting down"
    assert poll(session) == "1"


def test_a_late_timer_does_not_stretch_the_heartbeat() -> None:
    session = polling()
    session.handle_timeout(26.0)  # the ping was due at 25
    assert session.next_deadline() == 45.0
    late = polling()
    late.handle_timeout(44.0)  # very late: the client still gets half the timeout
    assert late.next_deadline() == 54.0


def test_a_long_poll_answer_carries_at_most_max_packets_per_poll() -> None:
    """python-engineio's client refuses payloads of more than 16 packets: the rest of the
    queue answers the next GETs, in order, and the byte count follows what is left."""
    session = polling(config=SessionConfig(max_packets_per_poll=16))
    for i in range(40):
        session.send_message(f"m{i}")
    answers = []
    while (payload := poll(session)) is not None and payload != "6":
        answers.append(payload.split("\x1e"))
        session.poll_finished()
        if not session.has_packets:
            break
    assert [len(a) for a in answers] == [16, 16, 8]
    assert [p for a in answers for p in a] == [f"4m{i}" for i in range(40)]
    # The byte bound was released as packets left: the queue takes a full load again.
    for _ in range(1000):
        session.send_message("x" * 100)
    assert session.state is SessionState.OPEN

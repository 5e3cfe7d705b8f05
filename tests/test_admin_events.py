"""``pyserver.socketio.admin_events``, the Admin UI's wire without I/O: features, dates as
JavaScript writes them, credentials (plain, lists, Node's bcrypt form), the SerializedSocket,
the aggregated events and the stats payload."""

from __future__ import annotations

import bcrypt
import pytest

from pyserver.socketio.admin_events import (
    EventBuffer,
    check_auth_option,
    client_address,
    credentials_match,
    data_without_admin,
    iso_date,
    serialize_socket,
    server_stats,
    supported_features,
)


def test_supported_features() -> None:
    assert supported_features("production", True) == ["AGGREGATED_EVENTS"]
    assert supported_features("development", True) == ["AGGREGATED_EVENTS", "ALL_EVENTS"]
    assert supported_features("production", False) == [
        "EMIT",
        "JOIN",
        "LEAVE",
        "DISCONNECT",
        "MJOIN",
        "MLEAVE",
        "MDISCONNECT",
        "AGGREGATED_EVENTS",
    ]


def test_iso_date_is_javascripts() -> None:
    assert iso_date(0) == "1970-01-01T00:00:00.000Z"
    assert iso_date(1796563854.2559) == "2026-12-06T13:30:54.255Z"


def test_plain_credentials() -> None:
    auth = {"username": "admin", "password": "pw"}
    assert credentials_match(auth, {"username": "admin", "password": "pw"})
    assert not credentials_match(auth, {"username": "admin", "password": "pW"})
    assert not credentials_match(auth, {"username": "root", "password": "pw"})
    assert not credentials_match(auth, {"password": "pw"})
    assert not credentials_match(auth, None)
    assert not credentials_match(auth, {"username": "admin", "password": 1})
    both = [{"username": "a", "password": "1"}, {"username": "b", "password": "2"}]
    assert credentials_match(both, {"username": "b", "password": "2"})
    assert not credentials_match(both, {"username": "b", "password": "1"})


def test_bcrypt_credentials_as_node_takes_them() -> None:
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()
    auth = {"type": "basic", "username": "admin", "password": hashed}
    check_auth_option(auth)
    assert credentials_match(auth, {"username": "admin", "password": "s3cret"})
    assert not credentials_match(auth, {"username": "admin", "password": hashed})
    broken = {"type": "basic", "username": "admin", "password": "$2b$bad"}
    assert not credentials_match(broken, {"username": "admin", "password": "x"})


@pytest.mark.parametrize(
    "auth",
    [None, [], {"password": "x"}, {"type": "basic", "username": "a", "password": "plain"}, "pw"],
)
def test_unusable_auth_options_are_refused(auth: object) -> None:
    with pytest.raises(ValueError):
        check_auth_option(auth)


def test_usable_auth_options() -> None:
    for auth in (False, lambda given: True, {"username": "a", "password": "b"}):
        check_auth_option(auth)


def test_serialized_socket() -> None:
    handshake = {
        "headers": {"x-forwarded-for": "203.0.113.9, 10.0.0.1", "host": "h"},
        "query": {"EIO": "4"},
        "address": "10.0.0.1",
        "time": "Sun Dec 06 2026",
        "issued": 1,
        "secure": False,
        "url": "/socket.io/?EIO=4",
        "xdomain": False,
        "auth": {"token": "never shown"},
    }
    data = {"_admin": {"clientId": "abcdefabcdef", "transport": "polling"}, "user": "ann"}
    out = serialize_socket("sid1", "/chat", handshake, {"sid1", "lobby"}, data)
    assert out == {
        "id": "sid1",
        "clientId": "abcdefabcdef",
        "transport": "polling",
        "nsp": "/chat",
        "data": {"user": "ann"},
        "handshake": {
            "address": "203.0.113.9",
            "headers": handshake["headers"],
            "query": {"EIO": "4"},
            "issued": 1,
            "secure": False,
            "time": "Sun Dec 06 2026",
            "url": "/socket.io/?EIO=4",
            "xdomain": False,
        },
        "rooms": ["lobby", "sid1"],
    }
    assert serialize_socket("s", "/", {}, (), data, "own", "websocket")["transport"] == "websocket"


def test_client_address_and_data() -> None:
    assert client_address({"cf-connecting-ip": "198.51.100.1"}, "10.0.0.1") == "198.51.100.1"
    assert client_address({}, "10.0.0.1") == "10.0.0.1"
    assert data_without_admin({"_admin": {}, "a": 1}) == {"a": 1}
    assert data_without_admin({"when": object()}) is None  # not JSON: not shown


def test_event_buffer_counts_per_second_type_and_subtype() -> None:
    buffer = EventBuffer()
    buffer.push("rawConnection", 100.2)
    buffer.push("rawConnection", 100.9, count=2)
    buffer.push("rawDisconnection", 100.5, "transport close")
    buffer.push("rawDisconnection", 100.5, "ping timeout")
    buffer.push("packetsIn", 101.0, count=0)  # nothing happened: nothing sent
    assert sorted(buffer.drain(), key=str) == sorted(
        [
            {"timestamp": 100000, "type": "rawConnection", "count": 3},
            {
                "timestamp": 100000,
                "type": "rawDisconnection",
                "subType": "transport close",
                "count": 1,
            },
            {
                "timestamp": 100000,
                "type": "rawDisconnection",
                "subType": "ping timeout",
                "count": 1,
            },
        ],
        key=str,
    )
    assert buffer.drain() == []


def test_server_stats_payload() -> None:
    stats = server_stats(
        server_id="h#1",
        hostname="h",
        pid=1,
        uptime=2.5,
        clients=3,
        polling_clients=1,
        aggregated_events=[],
        namespaces={"/": 2, "/admin": 1},
    )
    assert stats["namespaces"] == [
        {"name": "/", "socketsCount": 2},
        {"name": "/admin", "socketsCount": 1},
    ]
    assert stats["clientsCount"] == 3 and stats["pollingClientsCount"] == 1

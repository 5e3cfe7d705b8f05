"""The official ``socket.io-client`` (npm, v4.8, under Node) against our Socket.IO server.

``sio_client.js`` runs one scenario (one or several clients in one Node process) and prints
what the clients observed as JSON lines; these tests assert on them. The server is ours,
in-process (a background thread with its own ``trio.run``), running the "test protocol" of
``conftest.SioSite``: handlers that echo, ack, join rooms, broadcast in a named form, ask the
client for an ack, and so on, on "/", "/chat" and the dynamic namespaces ``/dyn-<digits>``.

Transports: most scenarios run over WebSocket only; the basic one, binary and the rooms run
over polling only, WebSocket only and "both" (polling, then the upgrade to WebSocket).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import NodeRun, NodeStream, SioSite, run_sio_client, sio_argv

pytestmark = pytest.mark.interop

TRANSPORTS = ["polling", "websocket", "both"]
DISCONNECT_WAIT = 10.0


@pytest.fixture(scope="module")
def site() -> Iterator[SioSite]:
    s = SioSite()
    s.start()
    try:
        yield s
    finally:
        s.stop()


def assert_completed(run: NodeRun) -> None:
    """The script ran its scenario to the end: no timeout and no exception."""
    problems = [e for e in run.events if e["event"] in ("timeout", "exception", "unparsed")]
    assert run.returncode == 0 and not problems, f"the client did not complete:\n{run}"
    assert run.of("done"), f"no 'done' line:\n{run}"


def acks(run: NodeRun, name: str) -> list[Any]:
    found = [e for e in run.of("ack") if e["name"] == name]
    assert len(found) == 1, f"expected one ack {name!r}:\n{run}"
    return list(found[0]["args"])


def step(run: NodeRun, name: str) -> dict[str, Any]:
    found = [e for e in run.of("step") if e["name"] == name]
    assert len(found) == 1, f"expected one step {name!r}:\n{run}"
    return found[0]


def b(data: bytes) -> dict[str, str]:
    """How sio_client.js prints binary."""
    return {"$bin": data.hex()}


# --------------------------------------------------------------------------------------------
# Connection, auth, refusal, namespaces


@pytest.mark.parametrize("transports", TRANSPORTS)
def test_connect_with_auth_events_and_acks(node_sio: str, site: SioSite, transports: str) -> None:
    auth = {"token": "secret", "user": "ada"}
    run = run_sio_client(node_sio, site.url, "basic", transports=transports, auth=auth)
    assert_completed(run)
    connect = run.one("connect")
    assert connect["nsp"] == "/", str(run)
    # With "both" the upgrade can finish before the CONNECT answer: either transport is right.
    if transports != "both":
        assert connect["transport"] == transports, str(run)
    init = run.one("init")["data"]
    assert init == {"id": connect["id"], "nsp": "/", "auth": auth}, str(run)
    # The server's view of the same connection: same id, same auth.
    seen = site.wait_connected(connect["id"])
    assert seen == {"nsp": "/", "auth": auth}, (seen, run)
    # Events both ways, acks (several ack arguments).
    echoes = run.of("echo")
    assert echoes and all(e["got"] == e["sent"] for e in echoes), str(run)
    ack_args = [e["args"] for e in run.of("ack")]
    assert ack_args[0] == ["first", "second"], str(run)
    if transports == "both":
        assert run.one("upgrade")["transport"] == "websocket", str(run)
        assert len(echoes) == 2 and echoes[1]["transport"] == "websocket", str(run)
        assert ack_args[1] == ["after-upgrade", "second"], str(run)
    assert run.one("done")["transport"] == ("polling" if transports == "polling" else "websocket")
    # The client left with socket.disconnect(): both sides name it.
    assert run.one("disconnect")["reason"] == "io client disconnect", str(run)
    reason = site.wait_disconnect(connect["id"], DISCONNECT_WAIT)
    assert reason == "client namespace disconnect", (reason, str(run))


@pytest.mark.parametrize("transports", ["polling", "websocket"])
@pytest.mark.parametrize("namespace", ["/", "/chat"])
def test_middleware_refusal_reaches_connect_error(
    node_sio: str, site: SioSite, transports: str, namespace: str
) -> None:
    run = run_sio_client(node_sio, site.url, "refused", transports=transports, namespace=namespace)
    assert_completed(run)
    err = run.one("connect_error")
    assert err["message"] == "Authentication error", str(run)
    assert err["data"] == {"reason": "bad token"}, str(run)
    assert not run.of("connect"), str(run)
    assert run.one("done")["connected"] is False, str(run)


@pytest.mark.parametrize("transports", ["polling", "websocket"])
def test_invalid_namespace(node_sio: str, site: SioSite, transports: str) -> None:
    run = run_sio_client(node_sio, site.url, "invalid-namespace", transports=transports)
    assert_completed(run)
    err = run.one("connect_error")
    assert err["message"] == "Invalid namespace", str(run)
    assert not run.of("connect"), str(run)


@pytest.mark.parametrize("transports", ["polling", "websocket"])
def test_namespaces_static_and_dynamic(node_sio: str, site: SioSite, transports: str) -> None:
    run = run_sio_client(node_sio, site.url, "namespaces", transports=transports)
    assert_completed(run)
    by_client = {e["client"]: e for e in run.of("connect")}
    assert {c: e["nsp"] for c, e in by_client.items()} == {
        "main": "/",
        "chat": "/chat",
        "dyn": "/dyn-42",
    }, str(run)
    # A socket id per namespace, even on one connection.
    assert by_client["main"]["id"] != by_client["chat"]["id"], str(run)
    inits = {e["client"]: e["data"] for e in run.of("init")}
    assert inits["main"] == {"id": by_client["main"]["id"], "nsp": "/", "auth": {"token": "main"}}
    assert inits["chat"] == {
        "id": by_client["chat"]["id"],
        "nsp": "/chat",
        "auth": {"token": "chat"},
    }, str(run)
    assert inits["dyn"] == {
        "id": by_client["dyn"]["id"],
        "nsp": "/dyn-42",
        "auth": {"token": "dyn"},
    }, str(run)
    engines = step(run, "engines")
    assert engines["same"] is True, run  # "/" and "/chat" multiplexed on one Manager
    assert all(e["got"] == e["sent"] for e in run.of("echo")) and len(run.of("echo")) == 3, str(run)
    assert [e["args"] for e in run.of("ack") if e["name"] == "echo-ack"] == [
        ["in /", "second"],
        ["in /chat", "second"],
        ["in /dyn-42", "second"],
    ], str(run)
    isolation = step(run, "isolation")
    assert isolation["chat"] == [["chat-only"]] and isolation["main"] == [], str(run)
    # Leaving /chat keeps "/" alive on the same connection.
    assert acks(run, "after-chat-left") == ["main still here"], str(run)
    assert site.wait_disconnect(by_client["chat"]["id"]) == "client namespace disconnect"


# --------------------------------------------------------------------------------------------
# Acks, binary


def test_acks_both_ways(node_sio: str, site: SioSite) -> None:
    run = run_sio_client(node_sio, site.url, "acks", auth={"token": "acks"})
    assert_completed(run)
    # client -> server: the handler's return value; a tuple is several ack arguments.
    assert acks(run, "echo-ack") == ["one", 2, {"three": [3]}], str(run)
    assert acks(run, "echo-ack-promise") == ["single"], str(run)
    # server -> client: emit_with_ack gets the client's callback reply.
    assert acks(run, "ask") == [{"reply": [{"answer": ["what", 7], "from": "A"}]}], str(run)
    # several arguments in the client's answer (binary among them): a tuple on our side.
    assert acks(run, "ask-several") == [{"reply": ["two", b(b"\xbe\xef"), {"three": 3}]}]
    # the client never answers: a timeout error, not a hang; the socket still works.
    [silent] = acks(run, "ask-silent")
    assert "error" in silent and "Timeout" in silent["error"], str(run)
    assert [e for e in run.of("got") if e["name"] == "silent"], str(run)
    assert acks(run, "after") == ["still-alive"], str(run)


@pytest.mark.parametrize("transports", TRANSPORTS)
def test_binary_both_ways(node_sio: str, site: SioSite, transports: str) -> None:
    run = run_sio_client(node_sio, site.url, "binary", transports=transports)
    assert_completed(run)
    echoes = run.of("echo")
    assert echoes, str(run)
    for e in echoes:
        assert e["got"] == e["sent"], str(run)
    payload = echoes[0]["got"][0]
    assert payload["blob"] == b(bytes([0, 1, 2, 253, 254, 255])), str(run)
    assert payload["nested"]["list"][1] == b(b"nested bytes"), str(run)
    assert payload["nested"]["list"][2] == {"deeper": b(b"")}, str(run)
    assert echoes[0]["got"][1] == b(b"second arg"), str(run)
    # An ack carrying binary (BINARY_ACK), and a server ask answered with binary by the client.
    assert acks(run, "echo-ack") == [b(bytes([9, 8, 7])), {"b": b(b"ack me")}], str(run)
    assert acks(run, "ask") == [
        {"reply": [{"youSent": b(bytes([1, 2, 3])), "mine": b(bytes([0xCA, 0xFE]))}]}
    ], str(run)
    if transports == "both":
        assert len(echoes) == 2 and echoes[1]["transport"] == "websocket", str(run)


# --------------------------------------------------------------------------------------------
# Rooms and every broadcast form

# form label -> who receives it. A is in r1, B in r1 and r2, C in r2 (B leaves r1 at the end).
EXPECTED_FORMS: dict[str, set[str]] = {
    "all": {"A", "B", "C"},  # sio.emit: everyone, sender included
    "broadcast": {"B", "C"},  # socket.broadcast.emit: all but the sender (A)
    "to-r1": {"A", "B"},  # sio.to("r1"), sent by C (not in r1)
    "to-r1-r2-chained": {"A", "B", "C"},  # sio.to("r1").to("r2"): union, B only once
    "to-r1-r2-list": {"A", "B", "C"},  # sio.to(["r1", "r2"])
    "to-r2-except-r1": {"C"},  # sio.to("r2").except_("r1"): B is in r1
    "except-r2": {"A"},  # sio.except_("r2")
    "socket-to-r1": {"B"},  # socket.to("r1") by A: room minus the sender
    "socket-to-r2": {"B", "C"},  # socket.to("r2") by A, who is not in r2
    "socket-to-r1-r2": {"A", "C"},  # socket.to(["r1", "r2"]) by B
    "socket-broadcast-except-r2": {"A"},  # socket.broadcast.except_("r2") by B
    "to-own-id": {"B"},  # sio.to(<B's id>): the automatic room
    "compress-false": {"A", "B", "C"},  # sio.compress(False).emit
    "local": {"A", "B", "C"},  # sio.local.emit
    "binary-to-r2": {"B", "C"},  # binary in a room broadcast
    "to-r1-after-leave": {"A"},  # B left r1
}


@pytest.mark.parametrize("transports", TRANSPORTS)
def test_rooms_and_broadcast_forms(node_sio: str, site: SioSite, transports: str) -> None:
    run = run_sio_client(node_sio, site.url, "rooms", transports=transports, timeout=40)
    assert_completed(run)
    ids = step(run, "ids")["ids"]
    rooms = step(run, "rooms")["rooms"]
    assert rooms == {
        "A": sorted([ids["A"], "r1"]),
        "B": sorted([ids["B"], "r1", "r2"]),
        "C": sorted([ids["C"], "r2"]),
    }, str(run)
    members = step(run, "fetch-room")["members"]
    assert members == {"r1": sorted([ids["A"], ids["B"]]), "r2": sorted([ids["B"], ids["C"]])}
    left = step(run, "leave")["rooms"]
    assert left == sorted([ids["B"], "r2"]), str(run)

    forms = {e["form"]: e for e in run.of("form")}
    missing = set(EXPECTED_FORMS) - set(forms)
    assert not missing, f"forms not run: {missing}\n{run}"
    problems = []
    for label, expected in EXPECTED_FORMS.items():
        received = forms[label]["received"]
        assert forms[label]["reply"] == ["ok"], str(run)
        want_args = [label, b(f"bin:{label}".encode())] if label == "binary-to-r2" else [label]
        for name in ("A", "B", "C"):
            want = [want_args] if name in expected else []
            if received[name] != want:
                problems.append(f"{label}: {name} got {received[name]}, expected {want}")
    assert not problems, "\n".join(problems) + f"\n{run}"
    # Volatile: whatever it drops, it never duplicates nor reaches a stranger, nor breaks the
    # session (the forms after it went through).
    for name in ("A", "B", "C"):
        assert forms["volatile"]["received"][name] in ([], [["volatile"]]), str(run)


def test_room_emit_with_ack_collects_replies_and_times_out(node_sio: str, site: SioSite) -> None:
    run = run_sio_client(node_sio, site.url, "room-acks")
    assert_completed(run)
    [everyone] = acks(run, "ask-room-all")
    assert "replies" in everyone, str(run)
    replies = everyone["replies"]
    assert sorted(r["from"] for r in replies) == ["A", "B", "C"], str(run)
    assert all(r["data"] == "q1" for r in replies), str(run)
    [one_silent] = acks(run, "ask-room-one-silent")
    assert "error" in one_silent and "Timeout" in one_silent["error"], str(run)
    # C got the question (and stayed silent); every client got it once.
    polls = [(e["client"], e["args"][0]) for e in run.of("got") if e["name"] == "poll"]
    assert sorted(polls) == sorted([(n, q) for n in "ABC" for q in ("q1", "q2")]), str(run)
    assert acks(run, "after") == ["still-alive"], str(run)


# --------------------------------------------------------------------------------------------
# Volatile, disconnect reasons, reconnection


@pytest.mark.parametrize("transports", ["polling", "websocket"])
def test_volatile_breaks_nothing(node_sio: str, site: SioSite, transports: str) -> None:
    run = run_sio_client(node_sio, site.url, "volatile", transports=transports)
    assert_completed(run)
    received = run.one("done")["volatileReceived"]
    # Dropped or delivered, but never duplicated nor reordered.
    assert received == sorted(set(received)) and set(received) <= set(range(20)), str(run)
    assert acks(run, "after") == ["after volatile"], str(run)


@pytest.fixture(scope="module")
def recovering_site() -> Iterator[SioSite]:
    s = SioSite(connection_state_recovery=True)
    s.start()
    try:
        yield s
    finally:
        s.stop()


@pytest.mark.parametrize("transports", TRANSPORTS)
def test_connection_state_recovery(
    node_sio: str, recovering_site: SioSite, transports: str
) -> None:
    """socket.io-client's own recovery (it sends its pid and last offset on reconnecting)
    against ours: the socket comes back with its id, rooms and data, and gets what it
    missed while away, in order, before its "connect"."""
    run = run_sio_client(node_sio, recovering_site.url, "recovery", transports=transports)
    assert_completed(run)
    first = step(run, "first")
    assert first["recovered"] is False and first["rooms"] == [sorted([first["id"], "r1"])]
    away = step(run, "away")
    # every event carries its offset, a string the client keeps (and its listeners see)
    assert away["first"] == "before" and away["firstOffset"] == "string", str(run)
    done = run.one("done")
    assert done["id"] == done["firstId"] and done["recovered"] is True, str(run)
    assert done["order"] == [
        {"data": "away-room", "offset": "string"},
        {"data": "away-all", "offset": "string"},
        {"data": "away-direct", "offset": "string"},
        {"connect": done["id"], "recovered": True},
        {"data": "after", "offset": "string"},
    ], str(run)  # not the room A was not in, nor the volatile packet
    # data kept (the catch-all counted "join" before, then "whoami" itself), rooms kept
    who = done["who"]
    assert who["id"] == done["id"] and who["recovered"] is True, str(run)
    assert who["data"] == {"events": 2}, str(run)
    assert done["rooms"] == sorted([done["id"], "r1", "r2"]), str(run)
    # its second life ended by the client, which is final
    assert recovering_site.wait_disconnect(done["id"]) == "client namespace disconnect"


@pytest.mark.parametrize("transports", ["polling", "websocket"])
def test_server_disconnect_reason(node_sio: str, site: SioSite, transports: str) -> None:
    run = run_sio_client(node_sio, site.url, "server-disconnect", transports=transports)
    assert_completed(run)
    assert run.one("disconnect")["reason"] == "io server disconnect", str(run)
    done = run.one("done")
    assert done["connected"] is False and done["active"] is False, run  # no reconnection
    assert len(run.of("connect")) == 1, str(run)
    reason = site.wait_disconnect(run.one("connect")["id"])
    assert reason == "server namespace disconnect", (reason, str(run))


@pytest.mark.parametrize("transports", ["polling", "websocket"])
def test_client_disconnect_reason(node_sio: str, site: SioSite, transports: str) -> None:
    run = run_sio_client(node_sio, site.url, "client-disconnect", transports=transports)
    assert_completed(run)
    assert run.one("disconnect")["reason"] == "io client disconnect", str(run)
    reason = site.wait_disconnect(run.one("done")["id"])
    assert reason == "client namespace disconnect", (reason, str(run))


@pytest.mark.parametrize("transports", ["polling", "websocket", "both"])
def test_reconnects_after_server_restart(node_sio: str, transports: str) -> None:
    first = SioSite()
    port = first.start()
    second: SioSite | None = None
    stream = NodeStream(
        sio_argv(
            node_sio,
            first.url,
            "reconnect",
            transports=transports,
            timeout=40,
            auth={"token": "again"},
        )
    )
    try:
        ready = stream.wait_for("ready", 15)
        assert first.wait_connected(ready["id"]) is not None
        first.stop()
        gone = stream.wait_for("disconnect", 15)  # "/" or "/chat": the same reason
        assert gone["reason"] in ("transport close", "transport error"), stream.result()
        second = SioSite()
        assert second.start(port=port) == port
        stream.wait_for("done", 30)
        run = stream.finish(15)
    finally:
        stream.kill()
        first.stop()  # idempotent: a no-op once stopped
        if second is not None:
            second.stop()
    assert_completed(run)
    connects = [e for e in run.of("connect") if e["client"] == "A"]
    assert len(connects) == 2 and connects[0]["id"] != connects[1]["id"], str(run)
    chat = [e for e in run.of("connect") if e["client"] == "chat"]
    assert len(chat) == 2 and [e["nsp"] for e in chat] == ["/chat", "/chat"], str(run)
    assert acks(run, "chat-after") == ["chat after"], str(run)
    assert run.of("reconnect"), str(run)
    # The new server knows the new socket and its auth; the new session works.
    assert second.wait_connected(connects[1]["id"]) == {"nsp": "/", "auth": {"token": "again"}}
    assert acks(run, "after") == ["after"], str(run)
    assert run.one("done")["reason"] in ("transport close", "transport error"), str(run)


# --------------------------------------------------------------------------------------------
# Handshake, middleware per packet, catch-all, failing handlers, many acks, large payloads


@pytest.mark.parametrize("transports", ["polling", "websocket"])
def test_handshake_packet_middleware_on_any_and_failing_handler(
    node_sio: str, site: SioSite, transports: str
) -> None:
    run = run_sio_client(node_sio, site.url, "extras", transports=transports)
    assert_completed(run)
    [hs] = acks(run, "handshake")
    assert {k: hs["query"].get(k) for k in ("q", "n", "EIO", "transport")} == {
        "q": "v",
        "n": "1",
        "EIO": "4",
        "transport": transports,
    }, str(run)
    assert hs["header"] == "interop" and hs["address"] == "127.0.0.1", str(run)
    assert hs["auth"] == {"token": "extras"}, str(run)
    assert hs["secure"] is False, str(run)  # plain http (tests/interop/test_tls.py: https)
    # socket.use refused the packet: the ack carries the error, the handler never ran.
    assert acks(run, "forbidden") == [{"error": "forbidden event"}], str(run)
    # A handler that raises still answers a client waiting for its ack.
    [boom] = acks(run, "boom")
    assert isinstance(boom, dict) and "error" in boom, str(run)
    # on_any saw handshake, boom and whoami (not the refused packets); socket.data kept it.
    [who] = acks(run, "whoami")
    assert who["id"] == run.one("connect")["id"] and who["data"] == {"events": 3}, str(run)
    assert run.one("done")["others"] == [], str(run)  # nothing unexpected reached the client


def test_many_acks_in_flight(node_sio: str, site: SioSite) -> None:
    run = run_sio_client(node_sio, site.url, "parallel-acks")
    assert_completed(run)
    done = run.one("done")
    assert done["count"] == 100 and done["wrong"] == [], str(run)
    assert done["sample"] == [[0, b(b"\x00")], [1, "v1"], [2, "v2"], [3, b(b"\x03")]], str(run)


@pytest.mark.parametrize("transports", TRANSPORTS)
def test_large_text_and_binary(node_sio: str, site: SioSite, transports: str) -> None:
    run = run_sio_client(node_sio, site.url, "large", transports=transports, timeout=40)
    assert_completed(run)
    done = run.one("done")
    assert done["echoOk"] is True and done["ackOk"] is True, str(run)


# --------------------------------------------------------------------------------------------
# Server-side room operations and room nurseries


def test_sockets_join_leave_and_disconnect_sockets(node_sio: str, site: SioSite) -> None:
    run = run_sio_client(node_sio, site.url, "server-ops")
    assert_completed(run)
    joined = step(run, "h-after-join")
    assert joined["ids"] == joined["expect"], str(run)
    assert step(run, "h-after-leave")["ids"] == [], str(run)
    gone = step(run, "disconnected")
    assert gone["reasons"] == ["io server disconnect"] * 2, str(run)
    assert (gone["A"], gone["B"], gone["C"]) == (False, False, True), str(run)
    assert acks(run, "after") == ["C stays"], str(run)
    ids = {e["client"]: e["id"] for e in run.of("connect")}
    for name in ("A", "B"):
        assert site.wait_disconnect(ids[name]) == "server namespace disconnect", str(run)


def test_room_task_lives_as_long_as_the_room(node_sio: str, site: SioSite) -> None:
    run = run_sio_client(node_sio, site.url, "room-tasks", auth={"room": "game-node"})
    assert_completed(run)
    ticking = step(run, "ticking")
    assert ticking["A"] >= 3 and ticking["B"] >= 3, str(run)
    step(run, "one-left")  # one member left: the task still ran
    # The last member left: the room's task is cancelled (room_grace_period is 0).
    assert site.wait_ticker("game-node", "cancelled") == "cancelled", str(run)


# --------------------------------------------------------------------------------------------
# A server with a fast heartbeat, a short connect timeout and a rate limit

TIGHT = {
    "ping_interval": 0.2,
    "ping_timeout": 0.5,
    "connect_timeout": 0.5,
    "rate_limit": (20, 0.25),
}


@pytest.fixture(scope="module")
def tight_site() -> Iterator[SioSite]:
    s = SioSite(**TIGHT)
    s.start()
    try:
        yield s
    finally:
        s.stop()


@pytest.mark.parametrize("transports", ["polling", "websocket"])
def test_heartbeat_keeps_a_quiet_client(
    node_sio: str, tight_site: SioSite, transports: str
) -> None:
    run = run_sio_client(node_sio, tight_site.url, "heartbeat", transports=transports)
    assert_completed(run)
    done = run.one("done")
    # 1.5 s at a 0.2 s ping interval: several pings answered, the same session throughout.
    assert done["pings"] >= 2 and done["sameEngine"] is True, str(run)
    assert done["connected"] is True and done["reply"] == ["awake"], str(run)
    assert [e["reason"] for e in run.of("disconnect")] == ["io client disconnect"], str(run)


@pytest.mark.parametrize("transports", ["polling", "websocket"])
def test_ping_timeout_when_the_client_stops_answering(
    node_sio: str, tight_site: SioSite, transports: str
) -> None:
    run = run_sio_client(node_sio, tight_site.url, "no-pong", transports=transports)
    assert_completed(run)
    done = run.one("done")
    assert done["dropped"] >= 1, str(run)  # a ping came and its pong was withheld
    assert done["reason"] in ("transport close", "transport error", "ping timeout"), str(run)
    reason = tight_site.wait_disconnect(run.one("ready")["id"])
    assert reason == "ping timeout", (reason, str(run))


@pytest.mark.parametrize("transports", ["polling", "websocket"])
def test_connect_timeout_closes_a_connection_without_namespace(
    node_sio: str, tight_site: SioSite, transports: str
) -> None:
    run = run_sio_client(node_sio, tight_site.url, "connect-timeout", transports=transports)
    assert_completed(run)
    assert run.one("open")["error"] is None, str(run)
    assert run.one("done")["reason"] in ("transport close", "transport error"), str(run)


@pytest.mark.parametrize("transports", ["polling", "websocket"])
def test_rate_limit_refuses_then_disconnects_a_flood(
    node_sio: str, tight_site: SioSite, transports: str
) -> None:
    run = run_sio_client(node_sio, tight_site.url, "rate-limit", transports=transports)
    assert_completed(run)
    replies = step(run, "burst")["replies"]
    refused = [r for r in replies if r == [{"error": "rate limited"}]]
    allowed = [r for i, r in enumerate(replies) if r == [i]]
    assert len(refused) + len(allowed) == len(replies) == 40, str(run)
    assert refused and len(allowed) >= 20 and replies[0] == [0], str(run)
    flooded = step(run, "flooded")
    assert flooded["reason"] in ("transport close", "io server disconnect"), str(run)
    assert flooded["errorCount"] >= 1, str(run)
    assert flooded["errors"][0] == {"message": "rate limited", "event": "echo"}, str(run)
    assert acks(run, "after") == ["fresh"], str(run)  # the server serves others normally


# --------------------------------------------------------------------------------------------
# Traffic during the upgrade, waits that end when a client leaves, namespaces on one Manager


@pytest.mark.parametrize("transports", TRANSPORTS)
def test_traffic_during_upgrade_in_order(node_sio: str, site: SioSite, transports: str) -> None:
    run = run_sio_client(node_sio, site.url, "upgrade-burst", transports=transports, timeout=40)
    assert_completed(run)
    done = run.one("done")
    assert done["seqOk"] is True and done["seqCount"] == 400, str(run)
    assert done["wrongAcks"] == 0 and done["badBinary"] == 0, str(run)
    assert done["transport"] == ("polling" if transports == "polling" else "websocket"), str(run)


@pytest.mark.parametrize("transports", ["polling", "websocket"])
def test_waits_for_acks_end_when_the_client_leaves(
    node_sio: str, site: SioSite, transports: str
) -> None:
    tag = f"leave-{transports}"
    run = run_sio_client(
        node_sio, site.url, "leave-while-asked", transports=transports, auth={"tag": tag}
    )
    assert_completed(run)
    # socket.emit_with_ack without a timeout: the client left, the wait ends with an error.
    assert site.wait_ask(f"{tag}-socket") == "SocketDisconnected", str(run)
    # to(room).timeout(30).emit_with_ack: a member left without answering; the wait ends (a
    # timeout error) long before the 30 s (the client gives up after 15 s).
    [reply] = acks(run, "ask-room")
    assert "error" in reply and "Timeout" in reply["error"], str(run)
    assert site.wait_ask(f"{tag}-room") == reply["error"], str(run)


@pytest.mark.parametrize("transports", ["polling", "websocket"])
def test_refused_namespace_beside_an_accepted_one(
    node_sio: str, site: SioSite, transports: str
) -> None:
    run = run_sio_client(node_sio, site.url, "mixed-namespaces", transports=transports)
    assert_completed(run)
    refused = step(run, "refused")
    assert refused["message"] == "Authentication error", str(run)
    assert refused["data"] == {"reason": "bad token"}, str(run)
    assert acks(run, "main-after-refusal") == ["ok"], str(run)
    assert acks(run, "chat") == ["chat ok"], str(run)
    assert step(run, "engines")["same"] is True, str(run)


def test_dynamic_parent_broadcast_reaches_every_child(node_sio: str, site: SioSite) -> None:
    run = run_sio_client(node_sio, site.url, "dyn-parent")
    assert_completed(run)
    done = run.one("done")
    assert done["got"] == {
        "one": ["all-children", "room-r"],
        "two": ["all-children"],
        "main": [],
    }, str(run)
    assert done["counts"] == [2, 1], str(run)


def test_crowd_on_mixed_transports(node_sio: str, site: SioSite) -> None:
    """30 clients (polling, WebSocket, upgraded) in one room; 20 broadcasts, text and binary:
    each client gets all of them exactly once, in order, whatever its transport."""
    run = run_sio_client(node_sio, site.url, "crowd", timeout=60)
    assert_completed(run)
    done = run.one("done")
    assert done["clients"] == 30 and done["bad"] == [], str(run)
    assert set(done["transports"]) == {"polling", "websocket"}, str(run)
